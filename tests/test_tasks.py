"""Celery tasks are thin: the task body runs the same service function as the CLI."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.settings import Settings, get_settings
from service.store import Store
from tests.factories import NOW, TODAY, add_subscriber, make_paper
from workers.celery_app import app, make_celery_app, visibility_timeout
from workers.tasks import run_digest_day_task


@pytest.fixture
def env_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store and outbox named by environment variables, as a worker process sees them."""
    monkeypatch.setenv("PAPERWIRE_DATABASE_URL", f"sqlite:///{tmp_path / 'worker.db'}")
    monkeypatch.setenv("PAPERWIRE_MAIL_URL", f"file://{tmp_path / 'outbox'}")
    get_settings.cache_clear()
    store = Store(get_settings().database_url)
    store.upgrade()
    yield store
    store.close()
    get_settings.cache_clear()


def test_the_day_task_delivers_once_however_often_it_runs(env_store: Store, tmp_path: Path) -> None:
    env_store.upsert_papers([make_paper()], now=NOW - timedelta(hours=1))
    add_subscriber(env_store, "ada@example.org")

    first = run_digest_day_task.run(TODAY.isoformat())
    second = run_digest_day_task.run(TODAY.isoformat())

    assert first == {"sent": 1}
    assert second == {"already-handled": 1}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_redis_redelivers_only_after_the_longest_task_could_have_finished() -> None:
    configured = make_celery_app(Settings(task_time_limit_seconds=120))
    timeout = visibility_timeout(Settings(task_time_limit_seconds=120))
    assert configured.conf.task_soft_time_limit < configured.conf.task_time_limit < timeout
    assert configured.conf.broker_transport_options["visibility_timeout"] == timeout
    assert configured.conf.result_backend_transport_options["visibility_timeout"] == timeout
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert "paperwire.run_digest_day" in app.tasks
