"""What every part of the store works through: the engine and one transaction per call."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker


class Database:
    """The connection the store's parts share; `Store` (see `engine`) sets it up."""

    url: URL
    engine: Engine
    _sessions: sessionmaker[Session]

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


def insert_with_conflicts(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` that takes ON CONFLICT clauses, in the session's own dialect
    (both databases spell them alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
