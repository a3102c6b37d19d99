"""`python -m bench.daily_run`: the options, then the run's steps in order, then the report."""

import argparse
import os
import signal
import sys
import tempfile
import time
import types
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import bench.daily_run
from bench.daily_run.day import RunResult, run_day_through_workers, time_mark_enqueued
from bench.daily_run.harness import (
    log,
    seed_day,
    start_services,
    start_workers,
    subscriber_ids,
    worker_error_lines,
)
from bench.daily_run.history import HistoryCounts, seed_history
from bench.daily_run.machine import wait_for_quiet
from bench.daily_run.plan_only import print_plan_only, run_plan_only
from bench.daily_run.raw_limit import measure_raw_limit
from bench.daily_run.report import print_history_comparison, print_report
from bench.daily_run.stages import (
    LibraryProfile,
    StageProfile,
    measure_stages,
    plan_profile_issues,
    profile_libraries,
    time_stages,
)
from service.models import Frequency

# Bounds: a benchmark, not a load test.
MAX_SUBSCRIBERS = 200_000
MAX_PAPERS = 20_000
MAX_HISTORY_DAYS = 400
MAX_PLAN_ONLY_SUBSCRIBERS = 1_000_000


def _raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    # SIGTERM ends the run like Ctrl-C does: through every cleanup below.
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.daily_run",
        description=(bench.daily_run.__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (main + pool)")
    parser.add_argument(
        "--workers-concurrency",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="pool size of each (default: twice the CPUs, as PAPERWIRE_WORKER_CONCURRENCY)",
    )
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--batch-size", type=int, default=100, help="PAPERWIRE_BATCH_SIZE")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", type=int, default=200, help="subscribers timed per stage")
    parser.add_argument("--raw-messages", type=int, default=3000, help="most raw messages")
    parser.add_argument("--raw-seconds", type=float, default=15.0, help="longest raw sending")
    parser.add_argument(
        "--profile-batches", type=int, default=2, help="batches profiled per timer (0: none)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=300.0,
        help="longest wait for other work on the machine to stop before each measurement",
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="longest wait for the run (0: from N)"
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=0,
        help="earlier days written to the store first; then a day-1 run of the same size too",
    )
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help=f"only plan and enqueue (up to {MAX_PLAN_ONLY_SUBSCRIBERS} subscribers): no sending",
    )
    parser.add_argument(
        "--plan-deadline",
        type=float,
        default=270.0,
        help="with --plan-only: seconds after the start past which seeding and enqueueing stop",
    )
    args = parser.parse_args()
    args.history_days = max(0, min(args.history_days, MAX_HISTORY_DAYS))
    most = MAX_PLAN_ONLY_SUBSCRIBERS if args.plan_only else MAX_SUBSCRIBERS
    args.subscribers = max(1, min(args.subscribers, most))
    args.papers = max(1, min(args.papers, MAX_PAPERS))
    args.batch_size = max(1, min(args.batch_size, 1000))
    args.worker_list = range(max(1, min(args.workers, 8)))
    return args


def run_first_day(args: argparse.Namespace, *, timeout: float) -> RunResult:
    """The same day on a fresh store (no history), with services and workers of its own: what
    the day after the history is held against."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daily-run-")))
        services = start_services(stack, folder, database=args.database, batch_size=args.batch_size)
        seed_day(
            services.store,
            papers=args.papers,
            subscribers=args.subscribers,
            profile_subscribers=0,
            profile_weekday=0,
            seed=args.seed,
            now=datetime.now(UTC),
        )
        workers = start_workers(
            stack,
            services,
            folder,
            count=len(args.worker_list),
            concurrency=max(1, args.workers_concurrency),
        )
        wait_for_quiet(args.wait_quiet)
        log(f"day 1: running the day for {args.subscribers} subscribers on a fresh store")
        run = run_day_through_workers(
            services, workers=workers, expected=args.subscribers, timeout=timeout
        )
        log(f"day 1 done in {run.wall_seconds:.1f} s")
        for worker in workers:
            worker.stop(timeout=10.0)
        return run


def plan_only(args: argparse.Namespace) -> None:
    """--plan-only: the day planned and enqueued, no worker started, the figures printed."""
    stop_at = time.monotonic() + args.plan_deadline
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daily-run-")))
        services = start_services(stack, folder, database=args.database, batch_size=args.batch_size)
        result = run_plan_only(
            services, subscribers=args.subscribers, seed=args.seed, stop_at=stop_at
        )
    print_plan_only(args, result)


def main() -> None:
    args = parse_args()
    count = args.subscribers
    # Generous but bounded: 100 ms per subscriber on top of two minutes, at most 30 minutes.
    timeout = args.timeout or min(1800.0, 120.0 + 0.1 * count)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Set explicitly: a process started in the background by a script inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if args.plan_only:
        plan_only(args)
        return

    first_day = run_first_day(args, timeout=timeout) if args.history_days else None
    history: HistoryCounts | None = None

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daily-run-")))
        services = start_services(stack, folder, database=args.database, batch_size=args.batch_size)
        store, settings = services.store, services.settings
        now = datetime.now(UTC)
        # The profile's own subscribers: weekly on a day three days away, so never due now
        # (nor within the give-up window), and planned by hand after the run.
        profile_weekday = (now.weekday() + 3) % 7
        profile_count = 2 * max(0, args.profile_batches) * args.batch_size
        seed_day(
            store,
            papers=args.papers,
            subscribers=count,
            profile_subscribers=profile_count,
            profile_weekday=profile_weekday,
            seed=args.seed,
            now=now,
        )
        daily_ids = subscriber_ids(store, frequency=Frequency.DAILY)
        if args.history_days:
            history = seed_history(
                store,
                daily_ids,
                days=args.history_days,
                papers_per_day=args.papers,
                now=now,
                seed=args.seed,
            )

        # On an idle machine, before the workers start.
        busy_before = {"stage timing": wait_for_quiet(args.wait_quiet)}
        stages = measure_stages(store, daily_ids[: args.sample], now.date(), settings=settings)
        log(
            f"stages: rank {stages.rank_ms:.2f} ms, render {stages.render_ms:.2f} ms, "
            f"serialize {stages.serialize_ms:.2f} ms"
        )

        workers = start_workers(
            stack,
            services,
            folder,
            count=len(args.worker_list),
            concurrency=max(1, args.workers_concurrency),
        )
        busy_before["run"] = wait_for_quiet(args.wait_quiet)
        log(f"{len(workers)} worker(s) ready; running the day for {count} subscribers")

        run = run_day_through_workers(services, workers=workers, expected=count, timeout=timeout)
        log(f"run done in {run.wall_seconds:.1f} s; measuring the raw limit")
        busy_before["raw limit"] = wait_for_quiet(args.wait_quiet)
        raw = measure_raw_limit(
            services.sink,
            stages.payload,
            max_messages=args.raw_messages,
            max_seconds=args.raw_seconds,
        )

        stage_profile: StageProfile | None = None
        library_profile: LibraryProfile | None = None
        if profile_count:
            log("timing the task body's stages in this process")
            busy_before["task profile"] = wait_for_quiet(args.wait_quiet)
            batches = plan_profile_issues(
                store, now.date(), weekday=profile_weekday, now=now, settings=settings
            )
            half = len(batches) // 2
            stage_profile = time_stages(batches[:half])
            library_profile = profile_libraries(batches[half:])

        mark_enqueued_ms = time_mark_enqueued(
            store, daily_ids, now.date(), batch_size=args.batch_size
        )
        worker_errors = worker_error_lines(workers)
        for worker in workers:
            worker.stop(timeout=10.0)
        sink_final = services.sink.stop()

    print_report(
        args,
        database=args.database,
        stages=stages,
        run=run,
        raw=raw,
        stage_profile=stage_profile,
        library_profile=library_profile,
        mark_enqueued_ms=mark_enqueued_ms,
        busy_before=busy_before,
        sink_final=sink_final,
        worker_errors=worker_errors,
    )
    if first_day is not None and history is not None:
        print_history_comparison(history, day_after=run, first_day=first_day)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; the services, database and temporary folder were removed")
        sys.exit(130)
