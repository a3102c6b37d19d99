"""Ledger indexes that a day's claims cannot mistake: (issue date, subscriber) replaces the
single-column indexes on status and on issue date.

Right after a day's rows are planned, PostgreSQL's statistics still describe yesterday: it
then answered "these 100 issues of today" through the issue-date and status indexes, reading
every row of the day for each batch, and "this issue, if still sending" through the status
index, reading every row that had ever been sending. With only composite indexes on both key
columns, every plan of a claim or an outcome is a lookup by key, whatever the statistics say.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_index("ix_deliveries_issue_date", table_name="deliveries")
    op.create_index(
        "ix_deliveries_issue_date_subscriber_id", "deliveries", ["issue_date", "subscriber_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_issue_date_subscriber_id", table_name="deliveries")
    op.create_index("ix_deliveries_issue_date", "deliveries", ["issue_date"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
