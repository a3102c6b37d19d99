"""The day through the workers: planned and enqueued here as beat would, delivered by the
workers, timed from the ledger's own timestamps, with the CPU, memory, sink and PostgreSQL
counts around it."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sql_select

from bench.daily_run.harness import MAIL_FROM, Services, log, postgres_transactions
from bench.daily_run.machine import CpuSample, Memory, sample_cpu, worker_memory
from service.delivery.planning import plan_due_issues
from service.models import DeliveryStatus
from service.store import Store
from service.store.tables import DeliveryRow
from tests.support.services import CeleryWorker

UNRESOLVED = frozenset({DeliveryStatus.PLANNED, DeliveryStatus.SENDING, DeliveryStatus.RETRY})


@dataclass
class RunResult:
    planned: int
    plan_seconds: float
    enqueue_seconds: float
    wall_seconds: float
    steady_rate: float
    first_sent_seconds: float
    statuses: dict[DeliveryStatus, int]
    completed: bool
    cpu_before: CpuSample
    cpu_after: CpuSample
    memory: Memory
    sink_messages: int
    sink_bytes: int
    sink_sessions: int
    postgres_transactions: int | None
    other_databases_busy: bool


def ledger_times(store: Store, issue_date: date) -> tuple[datetime | None, list[datetime]]:
    """When the last row of the day changed, and every send time, from the ledger itself."""
    with store.engine.connect() as connection:
        last = connection.execute(
            sql_select(func.max(DeliveryRow.updated_at)).where(DeliveryRow.issue_date == issue_date)
        ).scalar()
        sent = [
            sent_at
            for (sent_at,) in connection.execute(
                sql_select(DeliveryRow.sent_at)
                .where(DeliveryRow.issue_date == issue_date, DeliveryRow.sent_at.is_not(None))
                .order_by(DeliveryRow.sent_at)
            )
            if sent_at is not None
        ]
    return last, sent


def wait_until_resolved(
    store: Store, issue_date: date, *, expected: int, timeout: float, stall_seconds: float
) -> tuple[dict[DeliveryStatus, int], bool]:
    """Poll the ledger until every planned issue has an outcome; give up after `timeout`, or
    once nothing has changed for `stall_seconds` (no beat runs here to sweep retries)."""
    deadline = time.monotonic() + timeout
    last_change = time.monotonic()
    last_resolved = -1
    next_report = time.monotonic() + 10.0
    counts: dict[DeliveryStatus, int] = {}
    while True:
        counts = store.delivery_counts(since=issue_date).get(issue_date, {})
        unresolved = sum(counts.get(status, 0) for status in UNRESOLVED)
        resolved = sum(counts.values()) - unresolved
        now = time.monotonic()
        if sum(counts.values()) >= expected and unresolved == 0:
            return counts, True
        if resolved != last_resolved:
            last_resolved, last_change = resolved, now
        if now >= next_report:
            log(f"  … {resolved}/{expected} issues resolved")
            next_report = now + 10.0
        if now >= deadline or now - last_change >= stall_seconds:
            log(f"  gave up waiting: {dict((s.value, n) for s, n in counts.items())}")
            return counts, False
        time.sleep(1.0)


def steady_rate(sent_times: Sequence[datetime]) -> float:
    """Sends per second between the 10th and 90th percentile of send times: the rate once
    workers are busy, without the start (planning) and the tail (the last batches finishing)."""
    if len(sent_times) < 20:
        return 0.0
    low, high = len(sent_times) // 10, (9 * len(sent_times)) // 10
    span = (sent_times[high] - sent_times[low]).total_seconds()
    return (high - low) / span if span > 0 else 0.0


def own_transactions(
    before: dict[str, int], after: dict[str, int], database_name: str | None
) -> tuple[int | None, bool]:
    """The bench database's transactions between two pg_stat_database readings, and whether
    another database was busy meanwhile; (None, False) with SQLite."""
    if not database_name:
        return None, False
    ours = after.get(database_name, 0) - before.get(database_name, 0)
    # Another database busy at the same time shares PostgreSQL's CPU figures with us.
    other_busy = any(
        count - before.get(name, 0) > 100
        for name, count in after.items()
        if name not in (database_name, "postgres")
    )
    return ours, other_busy


def run_day_through_workers(
    services: Services,
    *,
    workers: Sequence[CeleryWorker],
    expected: int,
    timeout: float,
) -> RunResult:
    # Imported here, not at the top: the Celery app reads the settings (Redis URL) once, at
    # import, and the private Redis only exists now.
    from workers.tasks import enqueue_batches

    store, settings, sink = services.store, services.settings, services.sink
    redis_pid = services.redis.pid
    assert redis_pid is not None
    database_name = services.database_name
    sink_before = sink.stats()
    transactions_before = postgres_transactions(services.database_url) if database_name else {}
    cpu_before = sample_cpu(workers, redis_pid, sink.pid)

    started_at = datetime.now(UTC)
    started = time.perf_counter()
    planned = plan_due_issues(store, now=started_at, settings=settings)
    planned_at = time.perf_counter()
    enqueue_batches(store, planned, settings=settings)
    enqueued_at = time.perf_counter()
    log(
        f"planned {len(planned)} issues in {planned_at - started:.2f} s, "
        f"enqueued in {enqueued_at - planned_at:.2f} s"
    )
    if len(planned) != expected:
        log(f"  warning: {expected} subscribers are due but {len(planned)} issues were planned")
    issue_date = planned[0][1] if planned else started_at.date()
    statuses, completed = wait_until_resolved(
        store,
        issue_date,
        expected=len(planned),
        timeout=timeout,
        stall_seconds=min(timeout, 120.0),
    )
    # Sampled before anything else runs: the workers are idle from here on.
    cpu_after = sample_cpu(workers, redis_pid, sink.pid)
    memory = worker_memory(workers)
    sink_after = sink.stats()
    transactions_after = postgres_transactions(services.database_url) if database_name else {}

    last_change, sent_times = ledger_times(store, issue_date)
    # Digests go out from VERP addresses at the sender's domain (`counting_sink.sender_key`).
    digest_sender = f"bounces@{MAIL_FROM.rpartition('@')[2]}"
    own_sender_before = sink_before.get("by_sender", {}).get(digest_sender, [0, 0])
    own_sender_after = sink_after.get("by_sender", {}).get(digest_sender, [0, 0])
    our_transactions, other_busy = own_transactions(
        transactions_before, transactions_after, database_name
    )
    return RunResult(
        planned=len(planned),
        plan_seconds=planned_at - started,
        enqueue_seconds=enqueued_at - planned_at,
        wall_seconds=(last_change - started_at).total_seconds() if last_change else 0.0,
        steady_rate=steady_rate(sent_times),
        first_sent_seconds=(sent_times[0] - started_at).total_seconds() if sent_times else 0.0,
        statuses=statuses,
        completed=completed,
        cpu_before=cpu_before,
        cpu_after=cpu_after,
        memory=memory,
        sink_messages=int(own_sender_after[0]) - int(own_sender_before[0]),
        sink_bytes=int(own_sender_after[1]) - int(own_sender_before[1]),
        sink_sessions=_count_change(sink_before, sink_after, "sessions"),
        postgres_transactions=our_transactions,
        other_databases_busy=other_busy,
    )


def _count_change(before: dict[str, Any], after: dict[str, Any], key: str) -> int:
    return int(after.get(key, 0)) - int(before.get(key, 0))


def time_mark_enqueued(
    store: Store, subscriber_ids: Sequence[int], issue_date: date, *, batch_size: int
) -> float:
    """What enqueue_batches spends on the ledger per batch (one UPDATE per issue), in ms, timed
    on rows of the finished day: marking them again changes nothing that matters now."""
    keys = [(subscriber_id, issue_date) for subscriber_id in subscriber_ids]
    sample_batches = [
        keys[start : start + batch_size]
        for start in range(0, min(len(keys), 10 * batch_size), batch_size)
    ]
    started = time.perf_counter()
    for batch in sample_batches:
        store.mark_enqueued(batch, now=datetime.now(UTC))
    return 1000 * (time.perf_counter() - started) / max(1, len(sample_batches))
