"""Celery tasks are thin: the task body runs the same service function as the CLI."""

import os
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import redis
from celery.schedules import crontab

from service.settings import Settings, get_settings
from service.store import Store
from tests.support.factories import NOW, TODAY, add_subscriber, make_paper
from workers.celery_app import app, beat_schedule, make_celery_app, visibility_timeout
from workers.tasks import (
    enqueue_due_digests_task,
    fetch_papers_task,
    run_digest_day_task,
    sweep_deliveries_task,
)


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


@pytest.fixture
def broker(
    redis_url: str, postgres_url: str, pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Store, redis.Redis]]:
    """Tasks run here, as beat's would, against a private Redis with no worker taking from it."""
    monkeypatch.setenv("PAPERWIRE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("PAPERWIRE_REDIS_URL", redis_url)
    # Every planned issue is old enough to sweep, the moment it is enqueued.
    monkeypatch.setenv("PAPERWIRE_REQUEUE_AFTER_SECONDS", "0.001")
    get_settings.cache_clear()
    client = redis.Redis.from_url(redis_url)
    yield pg_store, client
    client.close()
    get_settings.cache_clear()


def test_the_sweep_leaves_a_long_queue_alone_and_refills_a_lost_one(
    broker: tuple[Store, redis.Redis],
) -> None:
    store, client = broker
    now = datetime.now(UTC)
    for number in range(250):
        add_subscriber(
            store, f"reader{number}@example.org", time_zone="UTC", delivery_hour=now.hour, now=now
        )
    assert enqueue_due_digests_task.run() == 250
    assert client.llen("celery") == 3  # batches of 100, 100 and 50, waiting: no worker runs

    # Still in the broker, only slow: nothing is enqueued twice.
    assert sweep_deliveries_task.run() == 0
    assert client.llen("celery") == 3

    # Taken by a worker killed before it could say so: once the queue is empty, nothing of
    # what is still planned can be waiting in it.
    client.delete("celery")
    assert sweep_deliveries_task.run() == 250
    assert client.llen("celery") == 3
    assert sweep_deliveries_task.run() == 0

    client.flushall()  # the broker lost everything (a restart without persistence)
    assert sweep_deliveries_task.run() == 250
    assert client.llen("celery") == 3
    assert sweep_deliveries_task.run() == 0


def test_the_daily_fetch_imports_the_configured_papers_file(
    env_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    papers = tmp_path / "today.jsonl"
    papers.write_text(
        '{"id": "2511.00001", "title": "Consistency models", "upvotes": 3}\n'
        '{"id": "2511.00002", "title": "Discrete diffusion"}\n'
        '{"title": "a line without an id"}\n',
        encoding="utf-8",
    )
    assert fetch_papers_task.run() == {}  # no source configured: a normal, quiet day

    monkeypatch.setenv("PAPERWIRE_PAPERS_FILE", str(papers))
    get_settings.cache_clear()
    source = str(papers)
    assert fetch_papers_task.run() == {source: {"new": 2, "updated": 0, "rejected": 1}}
    papers.write_text('{"id": "2511.00001", "title": "Consistency models", "upvotes": 40}\n')
    assert fetch_papers_task.run() == {source: {"new": 0, "updated": 1, "rejected": 0}}
    paper = env_store.get_paper("2511.00001")
    assert paper is not None and paper.upvotes == 40


def test_beat_fetches_papers_daily_at_the_configured_time_before_planning() -> None:
    schedule = beat_schedule(Settings(fetch_papers_at=time(4, 45)))
    fetch = schedule["fetch-papers"]
    assert fetch["task"] == "paperwire.fetch_papers" and "paperwire.fetch_papers" in app.tasks
    crontab_entry = fetch["schedule"]
    assert isinstance(crontab_entry, crontab)
    assert crontab_entry.hour == {4} and crontab_entry.minute == {45}
    assert set(schedule) == {
        "fetch-papers",
        "enqueue-due-digests",
        "sweep-deliveries",
        "prune-pending-signups",
        "prune-deliveries",
        "beat-heartbeat",
    }
    prune = schedule["prune-deliveries"]
    assert prune["task"] == "paperwire.prune_deliveries" and prune["task"] in app.tasks
    assert isinstance(prune["schedule"], crontab) and prune["schedule"].hour == {3}
    heartbeat = schedule["beat-heartbeat"]
    assert heartbeat["task"] == "paperwire.beat_heartbeat" and heartbeat["task"] in app.tasks


def test_a_worker_runs_twice_as_many_processes_as_cpus_unless_told() -> None:
    cpus = os.cpu_count() or 1
    assert make_celery_app(Settings()).conf.worker_concurrency == 2 * cpus
    assert make_celery_app(Settings(worker_concurrency=3)).conf.worker_concurrency == 3
