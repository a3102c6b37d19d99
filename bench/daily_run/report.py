"""The daily run's report: the figures on stdout, section by section, and the targets they are
held against."""

import argparse
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from bench.daily_run.day import RunResult
from bench.daily_run.harness import PROJECT_ROOT
from bench.daily_run.history import HistoryCounts
from bench.daily_run.raw_limit import RawResult
from bench.daily_run.stages import LibraryProfile, StageProfile, StageTimes
from service.models import DeliveryStatus

# Targets of the throughput issue, on a 2-core machine that also runs the sink.
TARGET_SECONDS_FOR_100K = 8 * 60
TARGET_RAW_RATIO = 0.7
TARGET_CPU_MS_PER_DIGEST = 5.0
TARGET_RSS_MB = 300.0


def code_version() -> str:
    """The commit measured, and the files of the service with changes not yet committed: the
    figures belong to that code."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "service", "workers", "templates"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    dirty = [line[3:] for line in changed if line.strip()]
    return head + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")


@dataclass
class RunFigures:
    """What the report's sections share: the run's rate and its CPU per digest sent."""

    sent: int
    rate: float  # digests/s over the run's wall time
    ratio: float  # of `rate` to the raw limit
    elapsed: float  # seconds between the two CPU samples
    cores: int
    busy_share: float  # of the machine's CPU, all work included
    cpu_rows: list[tuple[str, float]]  # ms per digest by process; everything else last
    accounted: float  # ms per digest of the run's own processes
    machine_busy: float  # ms per digest of all busy CPU
    worker_cpu: float  # ms per digest of the workers, main and pool


def run_figures(run: RunResult, raw: RawResult, *, database: str) -> RunFigures:
    sent = run.statuses.get(DeliveryStatus.SENT, 0)
    rate = sent / run.wall_seconds if run.wall_seconds > 0 else 0.0
    before, after = run.cpu_before, run.cpu_after
    per_digest = max(1, sent)

    def ms_per_digest(start: float, end: float) -> float:
        return 1000 * (end - start) / per_digest

    cpu_rows = [
        ("worker pool processes", ms_per_digest(before.worker_pool, after.worker_pool)),
        ("worker main process(es)", ms_per_digest(before.worker_main, after.worker_main)),
        ("SMTP sink", ms_per_digest(before.sink, after.sink)),
        ("Redis", ms_per_digest(before.redis, after.redis)),
        (
            "this process (plan, enqueue, poll)",
            ms_per_digest(before.this_process, after.this_process),
        ),
    ]
    if database == "postgresql":
        postgres = ("PostgreSQL (all backends)", ms_per_digest(before.postgres, after.postgres))
        cpu_rows.insert(2, postgres)
    accounted = sum(value for _, value in cpu_rows)
    machine_busy = ms_per_digest(before.machine_busy, after.machine_busy)
    cpu_rows.append(("everything else on the machine", machine_busy - accounted))
    return RunFigures(
        sent=sent,
        rate=rate,
        ratio=rate / raw.rate if raw.rate > 0 else 0.0,
        elapsed=after.at - before.at,
        cores=os.cpu_count() or 1,
        busy_share=(after.machine_busy - before.machine_busy)
        / max(1e-9, after.machine_total - before.machine_total),
        cpu_rows=cpu_rows,
        accounted=accounted,
        machine_busy=machine_busy,
        worker_cpu=ms_per_digest(
            before.worker_pool + before.worker_main, after.worker_pool + after.worker_main
        ),
    )


def print_report(
    args: argparse.Namespace,
    *,
    database: str,
    stages: StageTimes,
    run: RunResult,
    raw: RawResult,
    stage_profile: StageProfile | None,
    library_profile: LibraryProfile | None,
    mark_enqueued_ms: float,
    busy_before: dict[str, float],
    sink_final: dict[str, Any] | None,
    worker_errors: list[str],
) -> None:
    figures = run_figures(run, raw, database=database)
    print_run(
        args,
        database=database,
        run=run,
        figures=figures,
        mark_enqueued_ms=mark_enqueued_ms,
        busy_before=busy_before,
    )
    print_stage_means(stages, batch_size=args.batch_size)
    print_cpu(run, figures)
    print_raw_limit(raw, figures)
    if stage_profile is not None:
        print_stage_profile(stage_profile)
    if library_profile is not None:
        print_library_profile(library_profile)
    print_bounds(args, run, figures)
    print_targets(run, figures)
    print_ending(sink_final, worker_errors)


def print_run(
    args: argparse.Namespace,
    *,
    database: str,
    run: RunResult,
    figures: RunFigures,
    mark_enqueued_ms: float,
    busy_before: dict[str, float],
) -> None:
    sent, rate = figures.sent, figures.rate
    statuses = ", ".join(
        f"{status.value} {count}" for status, count in sorted(run.statuses.items())
    )
    print()
    print(
        f"Daily run through Celery: {run.planned} subscribers, {args.papers} papers, {database}, "
        f"{len(args.worker_list)} worker(s) x concurrency {args.workers_concurrency}, "
        f"batches of {args.batch_size}, {figures.cores} cores"
    )
    print(f"  code: {code_version()}")
    print(
        "  machine busy with other work just before each measurement: "
        + ", ".join(f"{what} {100 * share:.0f} %" for what, share in busy_before.items())
    )
    print(f"  ledger: {statuses}{'' if run.completed else '  (NOT COMPLETE: timed out)'}")
    print(
        f"  sink counted: {run.sink_messages} messages, {run.sink_bytes / 1e6:.1f} MB "
        f"({run.sink_bytes / max(1, run.sink_messages) / 1024:.1f} KiB each), "
        f"{run.sink_sessions} SMTP sessions; "
        f"{'equals' if run.sink_messages == sent else 'DOES NOT EQUAL'} the {sent} sent"
    )
    print(
        f"  wall time: {run.wall_seconds:.2f} s (plan start → last ledger update) "
        f"= {rate:.1f} digests/s; steady rate (10th→90th percentile of sends) "
        f"{run.steady_rate:.1f} digests/s; first message sent after {run.first_sent_seconds:.2f} s"
    )
    print(
        f"  plan stage: {run.plan_seconds + run.enqueue_seconds:.2f} s "
        f"(plan_due_issues {run.plan_seconds:.2f} s, enqueue_batches "
        f"{run.enqueue_seconds:.2f} s, of which mark_enqueued ≈ {mark_enqueued_ms:.0f} ms "
        f"per batch of {args.batch_size} measured afterwards)"
    )


def print_stage_means(stages: StageTimes, *, batch_size: int) -> None:
    print(
        f"\nper-stage means in this process, {stages.sample} subscribers, the same day's "
        f"papers (wall / CPU):"
    )
    print(
        f"  load_day_papers (papers, corpus statistics): {stages.load_ms:.0f} ms once per task "
        f"= {stages.load_ms / batch_size:.2f} ms per digest at batches of {batch_size} "
        f"(first call in a process: {stages.first_load_ms:.0f} ms)"
    )
    print(f"  rank:      {stages.rank_ms:.2f} / {stages.rank_cpu_ms:.2f} ms")
    print(f"  render:    {stages.render_ms:.2f} / {stages.render_cpu_ms:.2f} ms")
    print(f"  serialize: {stages.serialize_ms:.2f} / {stages.serialize_cpu_ms:.2f} ms")
    print(
        f"  message size {stages.mean_size / 1024:.1f} KiB on average; "
        f"{stages.empty} of {stages.sample} digests empty (skipped)"
    )


def print_cpu(run: RunResult, figures: RunFigures) -> None:
    print(
        f"\nCPU per digest sent during the run ({figures.elapsed:.1f} s; the machine's "
        f"{figures.cores} cores {100 * figures.busy_share:.0f} % busy):"
    )
    for name, value in figures.cpu_rows:
        print(f"  {name:<36} {value:7.2f} ms")
    print(f"  {'total busy CPU of the machine':<36} {figures.machine_busy:7.2f} ms")
    if run.postgres_transactions is not None:
        print(
            f"  PostgreSQL transactions in the database: {run.postgres_transactions} "
            f"= {run.postgres_transactions / max(1, figures.sent):.1f} per digest"
        )
    if run.other_databases_busy:
        print("  note: other databases were busy at the same time; PostgreSQL's CPU is shared")
    print(f"  worker CPU (main + pool): {figures.worker_cpu:.2f} ms per digest")
    mem = run.memory
    print(
        f"  peak RSS (VmHWM): worker main {mem.main_peak_mb:.0f} MB, largest of "
        f"{mem.children} pool process(es) {mem.child_peak_mb:.0f} MB"
    )


def print_raw_limit(raw: RawResult, figures: RunFigures) -> None:
    print(
        f"\nraw limit: one aiosmtplib connection sending the same {raw.size / 1024:.1f} KiB "
        f"pre-serialized digest to the same sink: {raw.messages} messages in "
        f"{raw.seconds:.2f} s = {raw.rate:.0f} messages/s "
        f"(sender CPU {1000 * raw.sender_cpu_seconds / max(1, raw.messages):.2f} ms, "
        f"sink CPU {1000 * raw.sink_cpu_seconds / max(1, raw.messages):.2f} ms per message)"
    )
    print(
        f"  digests/s ÷ raw messages/s = {figures.rate:.1f} / {raw.rate:.0f} = {figures.ratio:.2f}"
    )


def print_stage_profile(profile: StageProfile) -> None:
    digests = max(1, profile.digests)
    print(
        f"\nwhere a delivery task's time goes (its body run in this process, each stage's own "
        f"time, {profile.digests} digests; ms per digest):"
    )
    print(f"  {'stage':<44} {'CPU':>7} {'wall':>7}  CPU share  calls per digest")
    groups: dict[str, float] = {}
    labels = sorted(set(profile.cpu) | set(profile.wall), key=lambda k: -profile.wall.get(k, 0))
    for label in labels:
        cpu, wall = profile.cpu.get(label, 0.0), profile.wall.get(label, 0.0)
        group = label.split(":")[0]
        groups[group] = groups.get(group, 0.0) + cpu
        if wall * 1000 / digests < 0.005:
            continue
        print(
            f"  {label:<44} {1000 * cpu / digests:7.2f} {1000 * wall / digests:7.2f}  "
            f"{100 * cpu / max(1e-9, profile.cpu_seconds):5.1f} %    "
            f"{profile.calls.get(label, 0) / digests:6.2f}"
        )
    other_cpu = profile.cpu_seconds - sum(profile.cpu.values())
    other_wall = profile.wall_seconds - sum(profile.wall.values())
    groups["other"] = other_cpu
    other_share = 100 * other_cpu / max(1e-9, profile.cpu_seconds)
    print(
        f"  {'other (task, asyncio.run, event loop)':<44} {1000 * other_cpu / digests:7.2f} "
        f"{1000 * other_wall / digests:7.2f}  {other_share:5.1f} %"
    )
    print(
        f"  {'total':<44} {1000 * profile.cpu_seconds / digests:7.2f} "
        f"{1000 * profile.wall_seconds / digests:7.2f}"
    )
    print(
        "  CPU by stage: "
        + ", ".join(
            f"{group} {100 * seconds / max(1e-9, profile.cpu_seconds):.0f} %"
            for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1])
        )
    )


def print_library_profile(profile: LibraryProfile) -> None:
    digests = max(1, profile.digests)
    print(
        f"\ncProfile (wall clock, profiler overhead included) of the task body, "
        f"{profile.digests} digests: {1000 * profile.total_seconds / digests:.2f} ms per digest; "
        f"own time by package:"
    )
    for library, seconds in sorted(profile.by_library.items(), key=lambda kv: -kv[1]):
        share = 100 * seconds / max(1e-9, profile.total_seconds)
        if share >= 0.5:
            print(f"  {library:<32} {1000 * seconds / digests:7.2f} ms  {share:5.1f} %")
    print("  hottest functions (own time):")
    for name, seconds in profile.top:
        print(f"    {1000 * seconds / digests:6.2f} ms  {name[:100]}")


def print_bounds(args: argparse.Namespace, run: RunResult, figures: RunFigures) -> None:
    rate, cores, busy_share = figures.rate, figures.cores, figures.busy_share
    accounted, machine_busy = figures.accounted, figures.machine_busy
    print("\nwhat bounds throughput:")
    ranked = sorted(figures.cpu_rows[:-1], key=lambda row: -row[1])
    ceiling = 1000 * cores / max(1e-9, accounted)
    pool_processes = len(args.worker_list) * max(1, args.workers_concurrency)
    pool_seconds = run.cpu_after.worker_pool - run.cpu_before.worker_pool
    pool_busy = pool_seconds / max(1e-9, figures.elapsed) / pool_processes
    print(
        f"  CPU per digest of the run's own processes: {accounted:.1f} ms, a ceiling of "
        f"≈{ceiling:.0f} digests/s on {cores} cores; the run reached {rate:.1f} "
        f"({100 * rate / max(1e-9, ceiling):.0f} % of it; machine {100 * busy_share:.0f} % busy)"
    )
    other = machine_busy - accounted
    if other > 0.1 * machine_busy:
        print(
            f"  warning: other work on the machine took {100 * other / machine_busy:.0f} % of "
            f"the busy CPU during the run; on a quiet machine the run would be faster"
        )
    print(
        "  CPU per digest by process: "
        + ", ".join(
            f"{name} {value:.1f} ms ({100 * value / max(1e-9, accounted):.0f} %)"
            for name, value in ranked[:4]
        )
    )
    print(
        f"  each of the {pool_processes} pool processes was on a CPU {100 * pool_busy:.0f} % of "
        f"the run, waiting the rest (DB commits, SMTP replies, the next task)"
    )
    if rate >= 0.75 * ceiling or busy_share >= 0.9:
        print(
            f"  → bound by CPU ({100 * rate / max(1e-9, ceiling):.0f} % of the ceiling), and "
            f"{ranked[0][0]} take the most of it (stage table above); the gap to the ceiling "
            f"is the pool processes' waiting"
        )
    else:
        print(
            "  → bound by waiting more than by CPU: more pool processes (--workers-concurrency) "
            "could use the idle CPU; see the wall column of the stage table above"
        )


def print_targets(run: RunResult, figures: RunFigures) -> None:
    n, rate = run.planned, figures.rate
    target_seconds = run.plan_seconds + run.enqueue_seconds
    if n:
        per_issue = (run.plan_seconds + run.enqueue_seconds) / n
        send_rate = run.steady_rate or rate
        target_seconds = 100_000 * per_issue + (100_000 / send_rate if send_rate else 0.0)
    label = "measured" if n >= 100_000 else f"EXTRAPOLATED linearly from N={n}"
    print("\ntargets:")
    print(
        f"  100,000 subscribers in ≤ {TARGET_SECONDS_FOR_100K / 60:.0f} min: "
        + (
            f"{run.wall_seconds / 60:.1f} min measured"
            if n >= 100_000
            else f"≈{target_seconds / 60:.1f} min ({label}: plan time scaled, steady rate)"
        )
    )
    print(f"  ≥ {TARGET_RAW_RATIO}x the raw limit: {figures.ratio:.2f}x")
    print(f"  ≤ {TARGET_CPU_MS_PER_DIGEST:g} ms worker CPU per digest: {figures.worker_cpu:.2f} ms")
    mem = run.memory
    print(
        f"  ≤ {TARGET_RSS_MB:.0f} MB RSS per worker process: "
        f"{max(mem.main_peak_mb, mem.child_peak_mb):.0f} MB"
    )


def print_ending(sink_final: dict[str, Any] | None, worker_errors: list[str]) -> None:
    if sink_final is not None:
        print(
            f"\nsink totals at the end (run + raw + profile): {sink_final['messages']} messages, "
            f"{sink_final['bytes'] / 1e6:.1f} MB, {sink_final['sessions']} sessions, "
            f"sink CPU {sink_final['cpu_seconds']:.1f} s"
        )
    if worker_errors:
        print(f"\nworker log: {len(worker_errors)} error line(s); first ones:")
        for line in worker_errors[:5]:
            print(f"  {line}")


def _ratio(after: float, first: float) -> str:
    return f"{after / first:.2f}" if first > 0 else "n/a"


def print_history_comparison(
    history: HistoryCounts, *, day_after: RunResult, first_day: RunResult
) -> None:
    """The day after the history next to a first day of the same size, each on a store of its
    own in this invocation."""
    day = history.days + 1
    print(
        f"\nhistory: {history.days} earlier days written in {history.seconds:.1f} s: "
        f"{history.papers} papers, {history.ledger_rows} ledger rows, {history.votes} votes, "
        f"{history.bounces} bounces"
    )
    rows = []
    for label, run in ((f"day {day}", day_after), ("day 1", first_day)):
        sent = run.statuses.get(DeliveryStatus.SENT, 0)
        rate = sent / run.wall_seconds if run.wall_seconds > 0 else 0.0
        rows.append((label, sent, run.wall_seconds, rate, run.steady_rate, run.plan_seconds))
        before, after = run.cpu_before, run.cpu_after
        worker_ms = 1000 * (
            after.worker_pool + after.worker_main - before.worker_pool - before.worker_main
        )
        postgres_ms = 1000 * (after.postgres - before.postgres)
        print(
            f"  {label:>8}: {sent} sent in {run.wall_seconds:.1f} s, {rate:.1f} digests/s "
            f"(steady {run.steady_rate:.1f}), plan {run.plan_seconds:.2f} s, "
            f"enqueue {run.enqueue_seconds:.2f} s; CPU per digest: workers "
            f"{worker_ms / max(1, sent):.2f} ms, PostgreSQL {postgres_ms / max(1, sent):.2f} ms; "
            f"peak RSS of a pool process {run.memory.child_peak_mb:.0f} MB"
        )
    (_, _, _, rate_after, steady_after, plan_after) = rows[0]
    (_, _, _, rate_first, steady_first, plan_first) = rows[1]
    print(f"day {day} / day 1 rate = {_ratio(rate_after, rate_first)}")
    print(f"day {day} / day 1 steady rate = {_ratio(steady_after, steady_first)}")
    print(f"day {day} / day 1 plan time = {_ratio(plan_after, plan_first)}")
