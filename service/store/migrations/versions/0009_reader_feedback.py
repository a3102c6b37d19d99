"""What a reader teaches the ranking: authors to follow, topics to leave out, and the papers
they liked (seeds and 👍) and disliked (👎), as JSON lists on the subscriber's row.

Added with `ALTER TABLE … ADD COLUMN` on both databases: on SQLite a rebuild of `subscribers`
would delete the ledger through ON DELETE CASCADE (see 0007). The `[]` defaults stay, which
also fill the rows of a subscriber added by code from before this revision.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("followed_authors", "excluded_topics", "liked_papers", "disliked_papers")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column(
            "subscribers", sa.Column(name, sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
