"""What the archive, the feed and the richer email need: each issue's papers with the why-line
the reader saw and the section it was in, a reader's choice of the feed instead of email, and
the code repository a source gives for a paper.

Added with `ALTER TABLE … ADD COLUMN` on both databases (see 0009 for why `subscribers` is
never rebuilt on SQLite). Issues sent before this revision keep an empty list of items: their
archived copies show their papers without why-lines, as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("items", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column(
        "subscribers",
        sa.Column("feed_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("papers", sa.Column("github_repo", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("papers", recreate="never") as batch:
        batch.drop_column("github_repo")
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.drop_column("feed_only")
    with op.batch_alter_table("deliveries", recreate="never") as batch:
        batch.drop_column("items")
