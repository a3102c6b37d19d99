"""`paperwire db`: the database schema."""

from typing import TYPE_CHECKING

import typer

from service.cli.common import open_store, out

if TYPE_CHECKING:
    from service.store import Store

app = typer.Typer(help="The database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    with open_store() as store:
        before = _schema_revision(store)
        store.upgrade()
        after = _schema_revision(store)
        where = store.url.render_as_string(hide_password=True)
    if before is None:
        out.print(f"created the schema at revision {after} ({where})")
    elif before == after:
        out.print(f"already at revision {after}, nothing to do ({where})")
    else:
        out.print(f"migrated the schema from revision {before} to {after} ({where})")


def _schema_revision(store: "Store") -> str | None:
    """The Alembic revision of the store's schema; None before there is one."""
    # Imported here, as in Store.upgrade: only this command needs Alembic.
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
