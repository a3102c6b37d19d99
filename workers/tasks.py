"""Thin tasks: parse arguments, build dependencies from settings, call service functions.

Only ids and ISO dates cross the broker. Whether an issue is sent is decided by its ledger row,
so a task delivered twice (a lost ack, a killed worker, a second beat) sends nothing twice.
"""

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

from celery.signals import task_received
from celery.worker.request import Request
from redis.exceptions import RedisError

from service.delivery.day_papers import DayPapersCache
from service.delivery.pipeline import deliver_batch, run_day
from service.delivery.planning import (
    batches,
    issues_to_sweep,
    plan_due_issues,
    prune_pending_signups,
)
from service.delivery.retention import prune_ledger, retention_cutoff
from service.models import IssueKey
from service.settings import Settings, get_settings
from service.sources.fetch import fetch_papers
from service.store import Store
from workers.celery_app import app
from workers.queued import QueuedIssues

log = logging.getLogger(__name__)

# A worker process delivers many batches of the same day: it analyses the day's papers once.
DAY_PAPERS = DayPapersCache()


@contextmanager
def task_store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.database_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def queued_issues(settings: Settings) -> Iterator[QueuedIssues]:
    queued = QueuedIssues(settings.redis_url, queue=app.conf.task_default_queue)
    try:
        yield queued
    finally:
        queued.close()


def enqueue_batches(store: Store, keys: list[IssueKey], *, settings: Settings) -> int:
    """Hand the issues to workers in batches; note each batch once the broker has it.

    The batches and the set of queued issues go to the same Redis, named by the settings.
    """
    with (
        app.connection_for_write(settings.redis_url) as connection,
        queued_issues(settings) as queued,
    ):
        for batch in batches(keys, size=settings.batch_size):
            items = [[subscriber_id, day.isoformat()] for subscriber_id, day in batch]
            # Marked first: a worker quick to take the batch unmarks it after this, not before.
            queued.add(batch)
            send_digest_batch_task.apply_async((items,), connection=connection)
            store.mark_enqueued(batch, now=datetime.now(UTC))
    return len(keys)


@task_received.connect  # type: ignore[untyped-decorator]
def _batch_left_the_queue(request: Request, **_: object) -> None:
    """A worker has taken a batch from the queue (in its main process, before running it):
    from here its issues are the ledger's to track, not the broker's. A worker killed with
    the batch still unstarted leaves them planned, and the sweep enqueues them again."""
    if request.name != send_digest_batch_task.name:
        return
    try:
        with queued_issues(get_settings()) as queued:
            queued.discard(_issue_keys(request.args[0]))
    except RedisError as exc:
        # The sweep then waits for the visibility timeout before enqueueing them again.
        log.warning("could not unmark a received batch in Redis: %s", exc)


def _issue_keys(items: list[list[int | str]]) -> list[IssueKey]:
    return [(int(subscriber_id), date.fromisoformat(str(day))) for subscriber_id, day in items]


@app.task(name="paperwire.fetch_papers")  # type: ignore[untyped-decorator]
def fetch_papers_task() -> dict[str, dict[str, int]]:
    """Bring in the day's papers from every configured source.

    Not retried by Celery: the pages read before a failure are stored, and the next day's run
    reads yesterday's list again. A failure raises `FetchFailed`, so the task shows as failed.
    """
    settings = get_settings()
    with task_store(settings) as store:
        summaries = fetch_papers(store, settings=settings, now=datetime.now(UTC))
    return {
        s.source: {"new": s.new, "updated": s.updated, "rejected": s.rejected} for s in summaries
    }


@app.task(name="paperwire.enqueue_due_digests")  # type: ignore[untyped-decorator]
def enqueue_due_digests_task() -> int:
    """Plan every issue due now and enqueue it; a second tick finds nothing new."""
    settings = get_settings()
    with task_store(settings) as store:
        planned = plan_due_issues(store, now=datetime.now(UTC), settings=settings)
        return enqueue_batches(store, planned, settings=settings)


@app.task(name="paperwire.send_digest_batch")  # type: ignore[untyped-decorator]
def send_digest_batch_task(items: list[list[int | str]]) -> dict[str, int]:
    """Deliver a batch of planned issues, each `[subscriber_id, "YYYY-MM-DD"]`."""
    keys = _issue_keys(items)
    settings = get_settings()
    with task_store(settings) as store:
        summary = asyncio.run(deliver_batch(store, keys, settings=settings, day_papers=DAY_PAPERS))
    return {outcome.value: count for outcome, count in summary.outcomes.items()}


@app.task(name="paperwire.sweep_deliveries")  # type: ignore[untyped-decorator]
def sweep_deliveries_task() -> int:
    """Enqueue again what a lost message, a dead worker or a retry time left waiting."""
    settings = get_settings()
    with task_store(settings) as store, queued_issues(settings) as queued:
        due = issues_to_sweep(
            store, now=datetime.now(UTC), settings=settings, waiting_in_broker=queued.waiting
        )
        return enqueue_batches(store, due, settings=settings)


@app.task(name="paperwire.prune_pending_signups")  # type: ignore[untyped-decorator]
def prune_pending_signups_task() -> int:
    settings = get_settings()
    with task_store(settings) as store:
        return prune_pending_signups(store, now=datetime.now(UTC))


@app.task(name="paperwire.prune_deliveries")  # type: ignore[untyped-decorator]
def prune_deliveries_task() -> int:
    """Delete ledger rows older than `PAPERWIRE_LEDGER_RETENTION_DAYS`."""
    settings = get_settings()
    today = datetime.now(UTC).date()
    before = retention_cutoff(today, settings.ledger_retention_days)
    if before is None:
        return 0
    with task_store(settings) as store:
        return prune_ledger(store, before=before, today=today)


@app.task(name="paperwire.beat_heartbeat")  # type: ignore[untyped-decorator]
def beat_heartbeat_task() -> None:
    """Nothing to do: beat handing it to the broker is the heartbeat (workers.process_signals)."""


@app.task(name="paperwire.run_digest_day")  # type: ignore[untyped-decorator]
def run_digest_day_task(issue_date: str) -> dict[str, int]:
    """Deliver one day's issues in one task (small installations, `digest run`)."""
    settings = get_settings()
    with task_store(settings) as store:
        summary = asyncio.run(
            run_day(store, issue_date=date.fromisoformat(issue_date), settings=settings)
        )
    return {outcome.value: count for outcome, count in summary.outcomes.items()}
