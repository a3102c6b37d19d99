"""Running the installed `paperwire` command as a person does, in a subprocess: the fixtures
of the CLI tests (`paperwire`, `seeded`), loaded as a plugin by conftest."""

import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from service.sources.jsonl import read_papers_file
from service.store import Store

PAPERWIRE = str(Path(sys.executable).parent / "paperwire")
SAMPLE = Path(__file__).parents[2] / "service" / "sample_data" / "papers.jsonl"

Run = Callable[..., subprocess.CompletedProcess[str]]

# The day every test runs, whatever the clock says: papers are imported as seen that morning,
# so an issue of that day finds them on any date the suite runs (CI also runs it 400 days on).
ISSUE_DATE = "2026-11-25"
SEEN_AT = f"{ISSUE_DATE}T06:00:00+00:00"


@pytest.fixture
def paperwire(tmp_path: Path) -> Run:
    """Run `paperwire ARGS…` in a scratch folder with its own SQLite store and outbox."""
    env = {
        **os.environ,
        "PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PAPERWIRE_MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "PAPERWIRE_PUBLIC_BASE_URL": "https://paperwire.test",
        "COLUMNS": "200",
    }

    def run(
        *args: str, check_exit: int | None = 0, typed: str | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        with _stdin(typed) as stdin:
            result = subprocess.run(
                [PAPERWIRE, *args],
                cwd=tmp_path,
                env={**env, **extra_env},
                capture_output=True,
                text=True,
                stdin=stdin,
                timeout=120,
            )
        assert "Traceback" not in result.stderr, result.stderr
        if check_exit is not None:
            assert result.returncode == check_exit, (result.stdout, result.stderr)
        return result

    return run


@contextmanager
def _stdin(typed: str | None) -> Iterator[int]:
    """No terminal (as in CI and cron), or a terminal where `typed` waits to be read."""
    if typed is None:
        yield subprocess.DEVNULL
        return
    terminal, stdin = pty.openpty()
    try:
        os.write(terminal, typed.encode())
        yield stdin
    finally:
        os.close(stdin)
        os.close(terminal)


@pytest.fixture
def seeded(paperwire: Run, tmp_path: Path) -> Run:
    """`paperwire` over a migrated store holding the sample papers, seen on the morning of
    ISSUE_DATE. Set up in-process, as `db upgrade` and `papers import --seen-at` would (those
    commands have tests of their own): two fewer subprocesses for every test that uses it."""
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        store.upgrade()
        papers = read_papers_file(SAMPLE).papers
        store.upsert_papers(papers, now=datetime.fromisoformat(SEEN_AT))
    finally:
        store.close()
    return paperwire
