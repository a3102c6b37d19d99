"""Shared fixtures: stores on SQLite and PostgreSQL, settings, the SMTP sink."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.settings import ENV_FILE_VARIABLE, Settings
from service.store import Store
from service.store.tables import Base
from tests.support.factories import make_settings

pytest_plugins = [
    "tests.support.smtp_sink",
    "tests.support.services",
    "tests.support.browser",
    "tests.support.paper_server",
    "tests.support.cli_runner",
]

# The server holding the test databases; trust auth on 127.0.0.1 in development and CI.
POSTGRES_ADMIN_URL = os.environ.get(
    "PAPERWIRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"

# No test reads a .env file: the one a developer keeps in the checkout (README has operators
# write one) would change what the tests see. Set here, before any test module is imported,
# since some read settings on import (workers.celery_app); every subprocess inherits it.
os.environ[ENV_FILE_VARIABLE] = ""


@pytest.fixture(autouse=True)
def _no_live_paper_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read from the environment fetch from no live source, and a source a test turns
    on by hand without its own base URL gets a closed local port, never the public network."""
    monkeypatch.setenv("PAPERWIRE_PAPER_SOURCES", "none")
    monkeypatch.setenv("PAPERWIRE_HF_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PAPERWIRE_ARXIV_BASE_URL", "http://127.0.0.1:9")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private, migrated PostgreSQL database for this test session."""
    admin = make_url(POSTGRES_ADMIN_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"paperwire_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {admin.render_as_string()} is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = admin.set(database=name).render_as_string(hide_password=False)
    store = Store(url)
    store.upgrade()
    store.close()
    yield url
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'paperwire.db'}")
        store.upgrade()
    else:
        store = Store(request.getfixturevalue("postgres_url"))
        _empty_all_tables(store)
    yield store
    store.close()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    """The PostgreSQL store alone (the one workers started by a test share), emptied."""
    store = Store(postgres_url)
    _empty_all_tables(store)
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'paperwire.db'}")
    store.upgrade()
    yield store
    store.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        database_url=f"sqlite:///{tmp_path / 'paperwire.db'}",
        mail_url=f"file://{tmp_path / 'outbox'}",
    )


def _empty_all_tables(store: Store) -> None:
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with store.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
