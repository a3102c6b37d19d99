"""What every part of the store works through: the engine and one transaction per call."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
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
