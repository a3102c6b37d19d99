"""Links bound to their subscriber: a random link key per subscriber, and subscriber ids that
are never given again.

On SQLite `subscribers.id` was `INTEGER PRIMARY KEY`, which gives the highest id again once its
row is deleted; the table is rebuilt with AUTOINCREMENT, which never does. PostgreSQL's
sequence never gives an id twice, so there only the column is added.

Rows from before keep a NULL link key: the links already in their mailboxes stay readable
(their unsubscribe links must keep working), and `service.signup.links` accepts such a link
only if it was made after the row was created, which is what an old link of an erased person
reused by a later row would fail.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("subscribers", sa.Column("link_key", sa.String(length=32), nullable=True))
        return
    # Rebuilding drops `subscribers`. Foreign keys are on, and cannot be turned off inside the
    # migration's transaction, so the drop would delete every ledger row through ON DELETE
    # CASCADE: the ledger is put aside first and put back after, ids and all.
    op.execute("CREATE TEMP TABLE deliveries_aside AS SELECT * FROM deliveries")
    with op.batch_alter_table(
        "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("link_key", sa.String(length=32), nullable=True))
    op.execute("INSERT INTO deliveries SELECT * FROM deliveries_aside")
    op.execute("DROP TABLE deliveries_aside")


def downgrade() -> None:
    # The SQLite table keeps AUTOINCREMENT: giving ids again is never wanted.
    with op.batch_alter_table("subscribers", recreate="never") as batch:
        batch.drop_column("link_key")
