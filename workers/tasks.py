"""Thin tasks: parse arguments, build dependencies from settings, call service functions.

Only ids and ISO dates cross the broker. Whether an issue is sent is decided by its ledger row,
so a task delivered twice (a lost ack, a killed worker, a second beat) sends nothing twice.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

from service.digest import DayPapersCache, deliver_batch, run_day
from service.planning import (
    IssueKey,
    batches,
    issues_to_sweep,
    plan_due_issues,
    prune_pending_signups,
)
from service.settings import Settings, get_settings
from service.store import Store
from workers.celery_app import app

# A worker process delivers many batches of the same day: it analyses the day's papers once.
DAY_PAPERS = DayPapersCache()


@contextmanager
def task_store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.database_url)
    try:
        yield store
    finally:
        store.close()


def enqueue_batches(store: Store, keys: list[IssueKey], *, settings: Settings) -> int:
    """Hand the issues to workers in batches; note each batch once the broker has it."""
    for batch in batches(keys, size=settings.batch_size):
        send_digest_batch_task.delay(
            [[subscriber_id, day.isoformat()] for subscriber_id, day in batch]
        )
        store.mark_enqueued(batch, now=datetime.now(UTC))
    return len(keys)


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
    keys = [(int(subscriber_id), date.fromisoformat(str(day))) for subscriber_id, day in items]
    settings = get_settings()
    with task_store(settings) as store:
        summary = asyncio.run(deliver_batch(store, keys, settings=settings, day_papers=DAY_PAPERS))
    return {outcome.value: count for outcome, count in summary.outcomes.items()}


@app.task(name="paperwire.sweep_deliveries")  # type: ignore[untyped-decorator]
def sweep_deliveries_task() -> int:
    """Enqueue again what a lost message, a dead worker or a retry time left waiting."""
    settings = get_settings()
    with task_store(settings) as store:
        due = issues_to_sweep(store, now=datetime.now(UTC), settings=settings)
        return enqueue_batches(store, due, settings=settings)


@app.task(name="paperwire.prune_pending_signups")  # type: ignore[untyped-decorator]
def prune_pending_signups_task() -> int:
    settings = get_settings()
    with task_store(settings) as store:
        return prune_pending_signups(store, now=datetime.now(UTC))


@app.task(name="paperwire.run_digest_day")  # type: ignore[untyped-decorator]
def run_digest_day_task(issue_date: str) -> dict[str, int]:
    """Deliver one day's issues in one task (small installations, `digest run`)."""
    settings = get_settings()
    with task_store(settings) as store:
        summary = asyncio.run(
            run_day(store, issue_date=date.fromisoformat(issue_date), settings=settings)
        )
    return {outcome.value: count for outcome, count in summary.outcomes.items()}
