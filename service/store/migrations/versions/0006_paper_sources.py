"""Live paper sources: a machine-written summary, keywords, categories and a Hugging Face link
per paper, and the history of each paper's trending signals.

The signals in `papers` are the latest totals; `paper_signals` keeps every observation, one
row per paper and fetch, so "trending" can later mean growth since yesterday, not only totals.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("keywords", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("categories", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("hf_url", sa.Text(), nullable=True))
    # The defaults filled the existing rows; new rows always get values from the store.
    with op.batch_alter_table("papers") as batch:
        batch.alter_column("summary", server_default=None)
        batch.alter_column("keywords", server_default=None)
        batch.alter_column("categories", server_default=None)
    op.create_table(
        "paper_signals",
        sa.Column("paper_id", sa.String(length=64), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("upvotes", sa.Integer(), nullable=True),
        sa.Column("comments", sa.Integer(), nullable=True),
        sa.Column("github_stars", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_paper_signals_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("paper_id", "observed_at", name=op.f("pk_paper_signals")),
    )


def downgrade() -> None:
    op.drop_table("paper_signals")
    with op.batch_alter_table("papers") as batch:
        batch.drop_column("hf_url")
        batch.drop_column("categories")
        batch.drop_column("keywords")
        batch.drop_column("summary")
