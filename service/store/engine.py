"""The store: one SQL database (SQLite or PostgreSQL) behind one object, `Store`, made of its
parts: papers, subscribers, interest profiles, notices and the delivery ledger."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from service.store.corpus import CorpusStore
from service.store.deliveries import DeliveryStore
from service.store.ledger import Ledger
from service.store.mail_events import MailEventStore
from service.store.notices import NoticeStore
from service.store.papers import PaperStore
from service.store.profiles import ProfileStore
from service.store.subscribers import SubscriberStore


class Store(
    PaperStore,
    CorpusStore,
    SubscriberStore,
    ProfileStore,
    NoticeStore,
    DeliveryStore,
    MailEventStore,
):
    """Papers, subscribers with their interest profiles, the delivery ledger and what came
    back after sending (bounces, complaints, unsubscribes) in one SQL database."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # Several processes (CLI, web, workers) share the file: wait for locks, don't fail.
            connect_args["timeout"] = 30
        self.url = url
        self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _configure_sqlite)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with Alembic (the only way the schema changes)."""
        # Imported here: Alembic is a tenth of a second of start-up that only this call needs.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", "service.store:migrations")
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        # Once, after 0013 or a change of text analysis: count the stored papers' terms now
        # rather than in the first digest run.
        if revision == "head" and self.corpus_counts_stale():
            self.recount_corpus()

    def ping(self) -> None:
        """Raise if the database cannot be reached (health checks)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    @contextmanager
    def ledger(self) -> Iterator[Ledger]:
        """The ledger on one connection for a run of claims and outcomes; what is still
        pending is written on the way out, also when the run ends in an exception."""
        with self.engine.connect() as connection:
            ledger = Ledger(connection)
            try:
                yield ledger
            finally:
                ledger.flush()


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (web, CLI) work while a digest run writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Deleted rows are overwritten with zeros: an erased subscriber's address must not stay
    # readable in free pages of the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
