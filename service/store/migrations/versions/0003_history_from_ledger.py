"""Reading history comes from the ledger's own paper ids: drop the copy in `sent_papers`.

Every sent issue's row already lists its papers; writing each paper again as a row of its own
cost a third of the database work of a sent message.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("sent_papers")


def downgrade() -> None:
    sent_papers = op.create_table(
        "sent_papers",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.String(length=64), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_sent_papers_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "paper_id", name=op.f("pk_sent_papers")),
    )
    # Rebuilt from the ledger, earliest issue first, so each paper keeps its first send.
    deliveries = sa.table(
        "deliveries",
        sa.column("subscriber_id", sa.Integer()),
        sa.column("issue_date", sa.Date()),
        sa.column("status", sa.String()),
        sa.column("paper_ids", sa.JSON()),
    )
    rows = op.get_bind().execute(
        sa.select(deliveries.c.subscriber_id, deliveries.c.issue_date, deliveries.c.paper_ids)
        .where(deliveries.c.status == "sent")
        .order_by(deliveries.c.issue_date)
    )
    seen: set[tuple[int, str]] = set()
    history = []
    for subscriber_id, issue_date, paper_ids in rows:
        for paper_id in paper_ids or []:
            if (subscriber_id, paper_id) not in seen:
                seen.add((subscriber_id, paper_id))
                history.append(
                    {"subscriber_id": subscriber_id, "paper_id": paper_id, "issue_date": issue_date}
                )
    if history:
        op.bulk_insert(sent_papers, history)
