"""Web signup: confirmation nonce, preferences awaiting confirmation, the consent record, and
hashed suppression entries for erased addresses.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Never a rebuilt table: on SQLite a rebuild drops `subscribers`, and with foreign keys
    # on that deletes every ledger row through ON DELETE CASCADE. Adding columns (and, since
    # SQLite 3.35, dropping them) works in place on both backends.
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.add_column(sa.Column("confirm_nonce", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("requested_preferences", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("consent", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    op.create_table(
        "suppressed_addresses",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_suppressed_addresses")),
    )


def downgrade() -> None:
    op.drop_table("suppressed_addresses")
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.drop_column("consent")
        batch.drop_column("requested_preferences")
        batch.drop_column("confirm_nonce")
