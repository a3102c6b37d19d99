"""Delivery that loses less: the in-doubt history of each issue, permanent refusals told apart
from failures worth retrying, and one-off emails stored before they are sent.

- `deliveries.in_doubt_count`: attempts that ended with the relay perhaps holding the message.
- Issues `failed` by a permanent SMTP refusal (5xx but 552) or an unusable address become
  `refused`, which `deliveries retry` leaves alone unless asked.
- `notices`: confirmation and manage-link emails, kept until sent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# How the ledger words a permanent refusal and an address that cannot be written in a header.
REFUSED_FAILURES = (
    "status = 'failed' AND ((last_error LIKE 'SMTP 5%' AND last_error NOT LIKE 'SMTP 552%')"
    " OR last_error LIKE 'cannot address mail to %')"
)


def upgrade() -> None:
    # In place on both backends (never a rebuilt table: see migration 0005).
    with op.batch_alter_table("deliveries", recreate="never") as batch:
        batch.add_column(
            sa.Column("in_doubt_count", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(f"UPDATE deliveries SET status = 'refused' WHERE {REFUSED_FAILURES}")
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_notices_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    op.create_index(op.f("ix_notices_subscriber_id"), "notices", ["subscriber_id"])
    op.create_index(op.f("ix_notices_next_attempt_at"), "notices", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_notices_next_attempt_at"), table_name="notices")
    op.drop_index(op.f("ix_notices_subscriber_id"), table_name="notices")
    op.drop_table("notices")
    op.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'refused'")
    with op.batch_alter_table("deliveries", recreate="never") as batch:
        batch.drop_column("in_doubt_count")
