"""Ledger for scheduled delivery: retry time, give-up deadline, when a row was last enqueued,
when its message started going out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("data_started_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_deliveries_issue_date", "deliveries", ["issue_date"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_issue_date", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("data_started_at")
        batch.drop_column("enqueued_at")
        batch.drop_column("expires_at")
        batch.drop_column("next_attempt_at")
