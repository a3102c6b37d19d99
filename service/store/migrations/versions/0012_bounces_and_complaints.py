"""Bounces, complaints and unsubscribes after the send: a `mail_events` table (each bounce,
complaint and unsubscribe), Mailman's bounce score on `subscribers` in place of the count of
hard bounces, the operator's `inbound_messages` and the `webhook_receipts` that make relay
webhooks idempotent.

A subscriber's count of hard bounces becomes their score, as of the upgrade (the count kept no
dates); the column is dropped with `ALTER TABLE … DROP COLUMN`, never a table rebuild on SQLite,
which would delete the ledger through ON DELETE CASCADE (see 0011). The downgrade counts each
subscriber's hard bounce events back into `hard_bounces`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("status_code", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_mail_events_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_mail_events_at"), "mail_events", ["at"])
    op.create_index("ix_mail_events_subscriber_id_at", "mail_events", ["subscriber_id", "at"])
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mail_from", sa.String(length=320), nullable=False),
        sa.Column("rcpt_to", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    op.create_index(op.f("ix_inbound_messages_received_at"), "inbound_messages", ["received_at"])
    op.create_table(
        "webhook_receipts",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("receipt_id", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "receipt_id", name=op.f("pk_webhook_receipts")),
    )
    op.create_index(op.f("ix_webhook_receipts_received_at"), "webhook_receipts", ["received_at"])
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.add_column(sa.Column("bounce_score", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_bounce_at", sa.DateTime(timezone=True), nullable=True))
    now = sa.bindparam("now", datetime.now(UTC), type_=sa.DateTime(timezone=True))
    op.execute(
        sa.text(
            "UPDATE subscribers SET bounce_score = hard_bounces, last_bounce_at = :now"
            " WHERE hard_bounces > 0"
        ).bindparams(now)
    )
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.drop_column("hard_bounces")


def downgrade() -> None:
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.add_column(
            sa.Column("hard_bounces", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        sa.text(
            "UPDATE subscribers SET hard_bounces = (SELECT COUNT(*) FROM mail_events e"
            " WHERE e.subscriber_id = subscribers.id AND e.kind = 'hard_bounce')"
        )
    )
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.drop_column("last_bounce_at")
        batch.drop_column("bounce_score")
    op.drop_table("webhook_receipts")
    op.drop_table("inbound_messages")
    op.drop_table("mail_events")
