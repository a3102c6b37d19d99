"""Corpus statistics kept in the store: `corpus_terms` (how many papers hold each stem) and the
one row of `corpus_totals`. A day's run then reads them instead of analysing every paper ever
stored in each worker. And an index on `papers.updated_at`, which `papers_version` asks for
before every batch.

The totals row starts at analysis version 0, which no code counts with: `Store.upgrade` counts
the papers already stored after migrating (`store.corpus`), so this migration needs no text
analysis of its own.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "corpus_terms",
        sa.Column("stem", sa.Text(), nullable=False),
        sa.Column("papers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("stem", name=op.f("pk_corpus_terms")),
    )
    totals = op.create_table(
        "corpus_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_version", sa.Integer(), nullable=False),
        sa.Column("papers", sa.Integer(), nullable=False),
        sa.Column("title_terms", sa.Integer(), nullable=False),
        sa.Column("abstract_terms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corpus_totals")),
    )
    op.create_index(op.f("ix_papers_updated_at"), "papers", ["updated_at"])
    op.bulk_insert(
        totals,
        [{"id": 1, "analysis_version": 0, "papers": 0, "title_terms": 0, "abstract_terms": 0}],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_papers_updated_at"), table_name="papers")
    op.drop_table("corpus_totals")
    op.drop_table("corpus_terms")
