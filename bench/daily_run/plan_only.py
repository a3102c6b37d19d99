"""`--plan-only`: the beat tick's own cost at a size no day through the workers reaches here.

N confirmed daily subscribers due this hour are written in chunks; then this process plans
their issues (`plan_due_issues`) and hands them to Redis (`enqueue_batches`) as beat's
`enqueue-due-digests` does, with no worker consuming and nothing sent. Printed: the plan and
enqueue times, this process's peak RSS during them (VmHWM, reset just before planning, so the
seeding's memory is not counted) and Redis's memory with every batch waiting in it.

Bounded: seeding and enqueueing go in chunks and stop at --plan-deadline seconds from the start
of the run (planning is one statement, and is not cut short), reporting how far they got; the
services and database are removed as in a full run."""

import argparse
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.daily_run.harness import (
    Services,
    insert_subscribers,
    interest_drawer,
    log,
)
from bench.daily_run.machine import status_kib
from service.delivery.planning import plan_due_issues
from service.models import Frequency

# Subscribers per insert_subscribers call: bounds the seeding's own memory.
SEED_CHUNK = 20_000
# Issues per enqueue_batches call, between which the deadline is checked.
ENQUEUE_SLICE = 20_000


@dataclass(frozen=True)
class PlanOnlyResult:
    subscribers: int
    seed_seconds: float
    planned: int
    plan_seconds: float
    enqueued: int
    enqueue_seconds: float
    stopped_early: bool
    peak_rss_mb: float  # this process, during plan + enqueue
    redis_used_mb: float
    redis_peak_mb: float
    queue_length: int


def reset_peak_rss() -> None:
    """Start VmHWM afresh from the current RSS (Linux: 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        log("could not reset the peak RSS: it includes the seeding")


def run_plan_only(
    services: Services, *, subscribers: int, seed: int, stop_at: float
) -> PlanOnlyResult:
    """`stop_at`: the time.monotonic() past which no further chunk is started."""
    # Imported here: the Celery app reads the Redis URL from the settings at import.
    from workers.tasks import enqueue_batches

    store, settings = services.store, services.settings
    now = datetime.now(UTC)
    draw = interest_drawer(seed)
    started = time.perf_counter()
    seeded = 0
    for first in range(0, subscribers, SEED_CHUNK):
        if time.monotonic() > stop_at:
            log(f"  stopped seeding at the deadline with {seeded} of {subscribers} subscribers")
            break
        seeded += min(SEED_CHUNK, subscribers - first)
        insert_subscribers(
            store,
            min(SEED_CHUNK, subscribers - first),
            first_number=first,
            draw=draw,
            delivery_hour=now.hour,
            frequency=Frequency.DAILY,
            weekday=0,
            now=now,
        )
    seed_seconds = time.perf_counter() - started
    log(f"{seeded} subscribers added in {seed_seconds:.1f} s; planning")

    reset_peak_rss()
    started = time.perf_counter()
    planned = plan_due_issues(store, now=datetime.now(UTC), settings=settings)
    planned_at = time.perf_counter()
    log(f"planned {len(planned)} issues in {planned_at - started:.1f} s; enqueueing")
    enqueued = 0
    stopped_early = False
    for first in range(0, len(planned), ENQUEUE_SLICE):
        if time.monotonic() > stop_at:
            stopped_early = True
            log(f"  stopped at the deadline with {enqueued} of {len(planned)} enqueued")
            break
        enqueued += enqueue_batches(
            store, planned[first : first + ENQUEUE_SLICE], settings=settings
        )
    enqueued_at = time.perf_counter()
    peak_rss_kib = status_kib(os.getpid(), "VmHWM")

    client = services.redis.client()
    memory = client.info("memory")
    queue_length = int(client.llen("celery"))
    client.close()
    return PlanOnlyResult(
        subscribers=seeded,
        seed_seconds=seed_seconds,
        planned=len(planned),
        plan_seconds=planned_at - started,
        enqueued=enqueued,
        enqueue_seconds=enqueued_at - planned_at,
        stopped_early=stopped_early,
        peak_rss_mb=peak_rss_kib / 1024,
        redis_used_mb=int(memory["used_memory"]) / 2**20,
        redis_peak_mb=int(memory["used_memory_peak"]) / 2**20,
        queue_length=queue_length,
    )


def print_plan_only(args: argparse.Namespace, result: PlanOnlyResult) -> None:
    total = result.plan_seconds + result.enqueue_seconds
    rate = result.enqueued / result.enqueue_seconds if result.enqueue_seconds > 0 else 0.0
    print(
        f"plan only: {result.subscribers} subscribers of {args.subscribers} asked "
        f"({args.database}), batches of "
        f"{args.batch_size}; seeded in {result.seed_seconds:.1f} s (not counted)"
    )
    print(f"  plan: {result.planned} issues in {result.plan_seconds:.1f} s")
    print(
        f"  enqueue: {result.enqueued} issues in {result.enqueue_seconds:.1f} s "
        f"({rate:.0f} issues/s), {result.queue_length} batches waiting in Redis"
        + (" — STOPPED at the deadline" if result.stopped_early else "")
    )
    print(f"  plan + enqueue: {total:.1f} s")
    print(f"  peak RSS of this process during plan + enqueue: {result.peak_rss_mb:.0f} MB")
    print(
        f"  Redis memory: {result.redis_used_mb:.0f} MB used, "
        f"{result.redis_peak_mb:.0f} MB at its peak"
    )
