"""Named interest profiles: a subscriber's interests move to a `profiles` table, one row per
profile, each with its own mix of trending and relevance and its own number of papers.

Each subscriber's interest columns and trending weight become their first profile, named
"My interests", with 10 papers per issue (the default digest size until now); then the moved
columns are dropped from `subscribers` with `ALTER TABLE … DROP COLUMN` on both databases. On
SQLite `subscribers` is never rebuilt: the rebuild would delete the ledger through ON DELETE
CASCADE (see 0007 and 0009).

`profiles` ids are never given again (AUTOINCREMENT on SQLite, a sequence on PostgreSQL): a
feedback link naming a removed profile must not reach a later one.

The downgrade copies each subscriber's first profile back (and an empty interest where none
is left) and drops `profiles`; the columns come back with server defaults, which SQLite needs
to add a NOT NULL column.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_PROFILE_NAME = "My interests"
PAPERS_PER_ISSUE = 10
DEFAULT_TRENDING_WEIGHT = "0.3"

# The moved columns, with the server default each one gets back in a downgrade.
JSON_COLUMNS = (
    "keywords",
    "followed_authors",
    "excluded_topics",
    "liked_papers",
    "disliked_papers",
)
MOVED = (*JSON_COLUMNS, "interests_text", "trending_weight")


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        *(sa.Column(name, sa.JSON(), nullable=False, server_default="[]") for name in JSON_COLUMNS),
        sa.Column("interests_text", sa.Text(), nullable=False, server_default=""),
        sa.Column("trending_weight", sa.Float(), nullable=False),
        sa.Column("papers_per_issue", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_profiles_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
        sa.UniqueConstraint("subscriber_id", "name", name=op.f("uq_profiles_subscriber_id")),
        sqlite_autoincrement=True,
    )
    columns = ", ".join(MOVED)
    op.execute(
        sa.text(
            f"INSERT INTO profiles (subscriber_id, position, name, {columns}, papers_per_issue,"
            f" created_at, updated_at) SELECT id, 0, :name, {columns}, :papers, created_at,"
            " created_at FROM subscribers ORDER BY id"
        ).bindparams(name=FIRST_PROFILE_NAME, papers=PAPERS_PER_ISSUE)
    )
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        for name in MOVED:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        for name in JSON_COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("interests_text", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column(
                "trending_weight",
                sa.Float(),
                nullable=False,
                server_default=DEFAULT_TRENDING_WEIGHT,
            )
        )
    first = (
        "SELECT p.{column} FROM profiles p WHERE p.subscriber_id = subscribers.id"
        " ORDER BY p.position, p.id LIMIT 1"
    )
    assignments = ", ".join(
        f"{column} = COALESCE(({first.format(column=column)}), {column})" for column in MOVED
    )
    op.execute(sa.text(f"UPDATE subscribers SET {assignments}"))
    op.drop_table("profiles")
