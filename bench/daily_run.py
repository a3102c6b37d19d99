"""A whole day through Celery workers on Redis, PostgreSQL and SMTP: throughput, CPU, memory.

Run from the project root (needs the test extras: aiosmtpd, and the service helpers of the tests):

    .venv/bin/python -m bench.daily_run --subscribers 10000 --papers 500 \
        [--workers-concurrency 2] [--database postgresql|sqlite]

Everything runs on 127.0.0.1 and in a temporary folder, and is removed at the end, on error and
on Ctrl-C too: a private redis-server; a fresh PostgreSQL database `paperwire_bench_<random>` on
127.0.0.1:5432 (user postgres, trust auth), dropped afterwards (or a SQLite file with
--database sqlite); a counting SMTP sink in a process of its own (bench/counting_sink.py);
and the Celery worker(s).

The day: the 375 sample papers plus re-id'd copies up to --papers, first seen an hour ago, and
N confirmed subscribers due this hour (time zone UTC, delivery hour = the current UTC hour)
with 1-3 interest phrases of 1-3 content words of the sample titles and varied trending weights,
all drawn from a fixed seed. This process plans and enqueues the day as beat's
`enqueue-due-digests` would (`plan_due_issues` + `enqueue_batches`), and the workers deliver it;
the run ends when no ledger row is planned, sending or retry.

Figures: wall time and digests/s (from the ledger's own timestamps); plan time; rank, render and
serialize means measured in this process on a sample; CPU per digest of every process on the
machine that takes part (worker main process and pool, PostgreSQL, Redis, the sink, this
process) and of everything else, from /proc; the workers' peak RSS; the raw limit (one
connection sending the same pre-serialized digest over and over to the same sink with
aiosmtplib) and the ratio to it; what the sink counted; and where a delivery task's time goes:
its body run in this process on batches of extra subscribers, with the CPU and wall time of
each stage (DB calls by Store method, rank, render, serialize, SMTP, garbage collection), then
under cProfile for the own time of each package.

The machine is shared: before each measurement the script waits (up to --wait-quiet seconds)
for other work to stop, and the report shows how busy the machine was with other work.
"""

import argparse
import asyncio
import cProfile
import functools
import gc
import inspect
import json
import os
import random
import secrets
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import create_engine, func, insert, text
from sqlalchemy import select as sql_select
from sqlalchemy.engine import make_url

from bench.ranking_speed import make_candidates
from service.delivery.day_papers import build_digest, load_day_papers
from service.delivery.planning import plan_due_issues
from service.delivery.schedule import Schedule
from service.mail.compose import compose_digest
from service.models import (
    DeliveryStatus,
    Frequency,
    Interests,
    Paper,
    ReadingHistory,
    SubscriptionStatus,
)
from service.settings import Settings, get_settings
from service.sources.jsonl import read_papers_file
from service.store import Ledger, Store, new_link_key
from service.store.tables import DeliveryRow, SubscriberRow
from tests.support.factories import draw_title_phrases, title_phrases
from tests.support.services import CeleryWorker, RedisServer, group_pids

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PAPERS = PROJECT_ROOT / "service" / "sample_data" / "papers.jsonl"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MAIL_FROM = "digest@bench.paperwire.test"
RAW_FROM = "raw@bench.paperwire.test"
RAW_TO = "raw-reader@example.org"
SECRET_KEY = "daily-run-benchmark-secret"
TRENDING_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
UNRESOLVED = frozenset({DeliveryStatus.PLANNED, DeliveryStatus.SENDING, DeliveryStatus.RETRY})
# Bounds: a benchmark, not a load test.
MAX_SUBSCRIBERS = 200_000
MAX_PAPERS = 20_000
INSERT_CHUNK = 5_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the figures."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes and CPU, read from /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces; fields[0] is field 3 (state).
    return stat[stat.rindex(")") + 2 :].split()


def own_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` alone."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def reaped_children_cpu_seconds(pid: int) -> float:
    """cutime + cstime: the CPU of children `pid` has waited for (e.g. pool processes replaced,
    or PostgreSQL backends of connections since closed)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU of these processes and of every child they reaped; a child that exits between two
    samples moves from its own counters to its parent's, so differences stay right."""
    return sum(own_cpu_seconds(pid) + reaped_children_cpu_seconds(pid) for pid in pids)


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                comm = Path(entry.path, "comm").read_text().strip()
            except OSError:
                continue
            if comm == name:
                found.append(int(entry.name))
    return found


def status_kib(pid: int, key: str) -> int:
    """A `VmHWM`/`VmRSS` line of /proc/PID/status in KiB (0 if the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def wait_for_quiet(max_wait: float, *, threshold: float = 0.15, window: float = 3.0) -> float:
    """Wait (at most `max_wait` s) until the machine is mostly idle, since other work on it
    takes CPU from the run; return the busy share of the last window."""
    deadline = time.monotonic() + max_wait
    while True:
        busy_before, total_before = machine_cpu_seconds()
        time.sleep(window)
        busy_after, total_after = machine_cpu_seconds()
        share = (busy_after - busy_before) / max(1e-9, total_after - total_before)
        if share <= threshold or time.monotonic() >= deadline:
            return share
        log(f"  the machine is {100 * share:.0f} % busy with other work; waiting for quiet")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) core-seconds since boot, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # guest time is already inside user time
    idle = values[3] + values[4]  # idle + iowait
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


# ---------------------------------------------------------------------------------------------
# The SMTP sink, in a process of its own


class SinkProcess:
    """bench/counting_sink.py: started, asked for counts over its stdin, stopped."""

    def __init__(self, *, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.counting_sink", "--host", HOST],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # A session of its own: Ctrl-C in the terminal must not stop it before it reports.
            start_new_session=True,
        )
        self.final: dict[str, Any] | None = None
        self.port = int(self._read_json()["port"])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def stats(self) -> dict[str, Any]:
        if self.final is not None:
            return self.final
        assert self.process.stdin is not None
        self.process.stdin.write(b"stats\n")
        self.process.stdin.flush()
        return self._read_json()

    def stop(self) -> dict[str, Any] | None:
        """Close its stdin (it prints its counts a last time and exits); kill it if it hangs."""
        if self.final is not None or self.process.poll() is not None:
            return self.final
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.final = self._read_json()
            self.process.wait(timeout=self.timeout)
        except (OSError, RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError):
            self.process.kill()
            self.process.wait(timeout=self.timeout)
        return self.final

    def _read_json(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], self.timeout)
        line = stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"the SMTP sink did not answer within {self.timeout:g} s")
        result: dict[str, Any] = json.loads(line)
        return result


# ---------------------------------------------------------------------------------------------
# Database


@contextmanager
def bench_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database for this run; dropped (or deleted with the folder) after."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/bench.db"
        return
    admin_url = make_url(POSTGRES_ADMIN_URL)
    name = f"paperwire_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                # FORCE: a worker killed mid-run can leave a backend behind for a moment.
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def postgres_transactions(url: str) -> dict[str, int]:
    """Committed + rolled back transactions per database, from pg_stat_database."""
    engine = create_engine(make_url(url).set(database="postgres"))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT datname, xact_commit + xact_rollback FROM pg_stat_database "
                    "WHERE datname IS NOT NULL"
                )
            )
            return {str(name): int(count) for name, count in rows}
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# The day's data


def day_papers(count: int) -> list[Paper]:
    """The sample papers, then copies of them under new ids until there are `count`."""
    return make_candidates(read_papers_file(SAMPLE_PAPERS).papers, count)


def interest_drawer(seed: int) -> Callable[[], tuple[Interests, float]]:
    """Interests of 1-3 phrases of 1-3 consecutive content words of a sample title, and a
    trending weight; the same seed gives the same readers."""
    chooser = random.Random(seed)
    sample = read_papers_file(SAMPLE_PAPERS).papers
    titles = title_phrases(sample)

    def draw() -> tuple[Interests, float]:
        phrases = draw_title_phrases(chooser, titles)
        # Through the model, so phrases are cleaned and deduplicated as the store's own are.
        return Interests(keywords=tuple(phrases)), chooser.choice(TRENDING_WEIGHTS)

    return draw


def insert_subscribers(
    store: Store,
    count: int,
    *,
    first_number: int,
    draw: Callable[[], tuple[Interests, float]],
    delivery_hour: int,
    frequency: Frequency,
    weekday: int,
    now: datetime,
) -> None:
    """Confirmed subscribers, in bulk: one executemany per chunk instead of a transaction each."""
    rows: list[dict[str, Any]] = []
    for number in range(first_number, first_number + count):
        interests, trending_weight = draw()
        rows.append(
            {
                "email": f"reader{number}@example.org",
                "status": SubscriptionStatus.CONFIRMED.value,
                "keywords": list(interests.keywords),
                "interests_text": interests.text,
                "time_zone": "UTC",
                "delivery_hour": delivery_hour,
                "frequency": frequency.value,
                "weekday": weekday,
                "trending_weight": trending_weight,
                "hard_bounces": 0,
                "created_at": now,
                "confirmed_at": now,
                "unsubscribed_at": None,
                # As the store makes them: links are bound to their subscriber.
                "link_key": new_link_key(),
            }
        )
    with store.engine.begin() as connection:
        for start in range(0, len(rows), INSERT_CHUNK):
            connection.execute(insert(SubscriberRow), rows[start : start + INSERT_CHUNK])


def subscriber_ids(store: Store, *, frequency: Frequency) -> list[int]:
    query = (
        sql_select(SubscriberRow.id)
        .where(SubscriberRow.frequency == frequency.value)
        .order_by(SubscriberRow.id)
    )
    with store.engine.connect() as connection:
        return [int(row[0]) for row in connection.execute(query)]


# ---------------------------------------------------------------------------------------------
# Stage costs in this process


@dataclass
class StageTimes:
    sample: int
    first_load_ms: float
    load_ms: float
    rank_ms: float
    render_ms: float
    serialize_ms: float
    rank_cpu_ms: float
    render_cpu_ms: float
    serialize_cpu_ms: float
    mean_size: float
    empty: int
    payload: bytes


def measure_stages(
    store: Store, ids: Sequence[int], issue_date: date, *, settings: Settings
) -> StageTimes:
    """Rank, render and serialize for a sample of the day's subscribers, as a worker does it,
    with the day's papers; wall and CPU means. Also picks the raw sender's message."""
    subscribers = store.get_subscribers(ids)
    # Twice: the first call in a process also fills caches (stems, templates) that a pool
    # process keeps from one task to the next; every task pays the second figure.
    started = time.perf_counter()
    load_day_papers(store, issue_date)
    first_load_ms = 1000 * (time.perf_counter() - started)
    started = time.perf_counter()
    day = load_day_papers(store, issue_date)
    load_ms = 1000 * (time.perf_counter() - started)
    wall = {"rank": 0.0, "render": 0.0, "serialize": 0.0}
    cpu = dict(wall)
    payloads: list[bytes] = []
    empty = 0

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(stage: str, since: tuple[float, float]) -> tuple[float, float]:
        now = clock()
        wall[stage] += now[0] - since[0]
        cpu[stage] += now[1] - since[1]
        return now

    for subscriber_id in ids:
        subscriber = subscribers[subscriber_id]
        mark = clock()
        digest = build_digest(
            subscriber,
            day,
            issue_date=issue_date,
            history=ReadingHistory(),
            limit=settings.digest_size,
        )
        mark = add("rank", mark)
        if not digest.papers:
            empty += 1
            continue
        mail = compose_digest(digest, settings=settings)
        mark = add("render", mark)
        payloads.append(mail.data)  # written as bytes while composing: nothing left to do
        add("serialize", mark)
    rendered = max(1, len(payloads))
    mean_size = statistics.fmean(len(p) for p in payloads) if payloads else 0.0
    # The raw sender sends one real digest: the one closest to the mean size.
    payload = min(payloads, key=lambda p: abs(len(p) - mean_size)) if payloads else b""
    return StageTimes(
        sample=len(ids),
        first_load_ms=first_load_ms,
        load_ms=load_ms,
        rank_ms=1000 * wall["rank"] / max(1, len(ids)),
        render_ms=1000 * wall["render"] / rendered,
        serialize_ms=1000 * wall["serialize"] / rendered,
        rank_cpu_ms=1000 * cpu["rank"] / max(1, len(ids)),
        render_cpu_ms=1000 * cpu["render"] / rendered,
        serialize_cpu_ms=1000 * cpu["serialize"] / rendered,
        mean_size=mean_size,
        empty=empty,
        payload=payload,
    )


# ---------------------------------------------------------------------------------------------
# The raw limit


@dataclass
class RawResult:
    messages: int
    seconds: float
    sender_cpu_seconds: float
    sink_cpu_seconds: float
    size: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


async def _send_raw(port: int, payload: bytes, *, max_messages: int, max_seconds: float) -> int:
    client = aiosmtplib.SMTP(
        hostname=HOST,
        port=port,
        # Given explicitly: aiosmtplib would otherwise call socket.getfqdn(), which can stall.
        local_hostname="bench.paperwire.test",
        timeout=30.0,
        start_tls=False,
    )
    await client.connect()
    # The options the service's transport gives the same message.
    options = [f"SIZE={len(payload)}"]
    if not payload.isascii():
        options.append("BODY=8BITMIME")
    sent = 0
    deadline = time.perf_counter() + max_seconds
    try:
        while sent < max_messages and time.perf_counter() < deadline:
            refused, _ = await client.sendmail(RAW_FROM, [RAW_TO], payload, mail_options=options)
            if refused:
                raise RuntimeError(f"the sink refused the raw message: {refused}")
            sent += 1
    finally:
        await client.quit()
    return sent


def measure_raw_limit(
    sink: SinkProcess, payload: bytes, *, max_messages: int, max_seconds: float
) -> RawResult:
    """Pre-serialized bytes over one connection, as fast as one aiosmtplib client can."""
    sink_before = own_cpu_seconds(sink.pid)
    cpu_before = time.process_time()
    started = time.perf_counter()
    sent = asyncio.run(
        _send_raw(sink.port, payload, max_messages=max_messages, max_seconds=max_seconds)
    )
    seconds = time.perf_counter() - started
    return RawResult(
        messages=sent,
        seconds=seconds,
        sender_cpu_seconds=time.process_time() - cpu_before,
        sink_cpu_seconds=own_cpu_seconds(sink.pid) - sink_before,
        size=len(payload),
    )


# ---------------------------------------------------------------------------------------------
# CPU of everything taking part


@dataclass
class CpuSample:
    at: float
    worker_main: float
    worker_pool: float
    postgres: float
    redis: float
    sink: float
    this_process: float
    machine_busy: float
    machine_total: float


def sample_cpu(workers: Sequence[CeleryWorker], redis_pid: int, sink_pid: int) -> CpuSample:
    main = pool = 0.0
    for worker in workers:
        if worker.pid is None:
            continue
        main += own_cpu_seconds(worker.pid)
        # Pool children: the live ones, and the ones the main process has reaped.
        pool += reaped_children_cpu_seconds(worker.pid)
        pool += tree_cpu_seconds([pid for pid in group_pids(worker.pid) if pid != worker.pid])
    busy, total = machine_cpu_seconds()
    usage = os.times()
    return CpuSample(
        at=time.perf_counter(),
        worker_main=main,
        worker_pool=pool,
        # Backends that exited are in the postmaster's reaped-children counters.
        postgres=tree_cpu_seconds(pids_named("postgres")),
        redis=tree_cpu_seconds([redis_pid]),
        sink=tree_cpu_seconds([sink_pid]),
        this_process=usage.user + usage.system,
        machine_busy=busy,
        machine_total=total,
    )


@dataclass
class Memory:
    main_peak_mb: float
    child_peak_mb: float
    children: int


def worker_memory(workers: Sequence[CeleryWorker]) -> Memory:
    main = child = 0.0
    children = 0
    for worker in workers:
        if worker.pid is None:
            continue
        main = max(main, status_kib(worker.pid, "VmHWM") / 1024)
        for pid in group_pids(worker.pid):
            if pid != worker.pid:
                children += 1
                child = max(child, status_kib(pid, "VmHWM") / 1024)
    return Memory(main_peak_mb=main, child_peak_mb=child, children=children)


# ---------------------------------------------------------------------------------------------
# The run through the workers


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


def run_day_through_workers(
    store: Store,
    settings: Settings,
    *,
    workers: Sequence[CeleryWorker],
    redis: RedisServer,
    sink: SinkProcess,
    database_url: str,
    database_name: str | None,
    expected: int,
    timeout: float,
) -> RunResult:
    # Imported here, not at the top: the Celery app reads the settings (Redis URL) once, at
    # import, and the private Redis only exists now.
    from workers.tasks import enqueue_batches

    assert redis.pid is not None
    sink_before = sink.stats()
    transactions_before = postgres_transactions(database_url) if database_name else {}
    cpu_before = sample_cpu(workers, redis.pid, sink.pid)

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
    cpu_after = sample_cpu(workers, redis.pid, sink.pid)
    memory = worker_memory(workers)
    sink_after = sink.stats()
    transactions_after = postgres_transactions(database_url) if database_name else {}

    last_change, sent_times = ledger_times(store, issue_date)
    wall = (last_change - started_at).total_seconds() if last_change else 0.0
    steady = 0.0
    if len(sent_times) >= 20:
        # Between the 10th and 90th percentile of send times: the rate once workers are busy,
        # without the start (planning) and the tail (the last batches finishing).
        low, high = len(sent_times) // 10, (9 * len(sent_times)) // 10
        span = (sent_times[high] - sent_times[low]).total_seconds()
        steady = (high - low) / span if span > 0 else 0.0
    first_sent = (sent_times[0] - started_at).total_seconds() if sent_times else 0.0

    def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
        return int(after.get(key, 0)) - int(before.get(key, 0))

    own_sender_before = sink_before.get("by_sender", {}).get(MAIL_FROM, [0, 0])
    own_sender_after = sink_after.get("by_sender", {}).get(MAIL_FROM, [0, 0])
    other_busy = False
    our_transactions: int | None = None
    if database_name:
        our_transactions = transactions_after.get(database_name, 0) - transactions_before.get(
            database_name, 0
        )
        # Another database busy at the same time shares PostgreSQL's CPU figures with us.
        other_busy = any(
            count - transactions_before.get(name, 0) > 100
            for name, count in transactions_after.items()
            if name not in (database_name, "postgres")
        )
    return RunResult(
        planned=len(planned),
        plan_seconds=planned_at - started,
        enqueue_seconds=enqueued_at - planned_at,
        wall_seconds=wall,
        steady_rate=steady,
        first_sent_seconds=first_sent,
        statuses=statuses,
        completed=completed,
        cpu_before=cpu_before,
        cpu_after=cpu_after,
        memory=memory,
        sink_messages=int(own_sender_after[0]) - int(own_sender_before[0]),
        sink_bytes=int(own_sender_after[1]) - int(own_sender_before[1]),
        sink_sessions=delta(sink_after, sink_before, "sessions"),
        postgres_transactions=our_transactions,
        other_databases_busy=other_busy,
    )


# ---------------------------------------------------------------------------------------------
# Where a batch's time goes: the task body run in this process, timed per stage


class StageClock:
    """Exclusive CPU and wall time per stage: a stage called inside another (a store call in a
    send, serialize in a send) counts for itself only. Wrapping a handful of functions costs
    next to nothing, unlike a profiler, so the figures are those of an unprofiled run."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        # Per open stage: CPU and wall time of the stages nested in it so far.
        self._stack: list[list[float]] = []

    def _enter(self) -> tuple[float, float]:
        self._stack.append([0.0, 0.0])
        return time.process_time(), time.perf_counter()

    def _leave(self, label: str, started: tuple[float, float]) -> None:
        cpu = time.process_time() - started[0]
        wall = time.perf_counter() - started[1]
        nested = self._stack.pop()
        self.cpu[label] = self.cpu.get(label, 0.0) + cpu - nested[0]
        self.wall[label] = self.wall.get(label, 0.0) + wall - nested[1]
        self.calls[label] = self.calls.get(label, 0) + 1
        if self._stack:
            self._stack[-1][0] += cpu
            self._stack[-1][1] += wall

    def timed(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                # One delivery at a time in a task, so while this awaits, the event loop only
                # does this send's I/O: its CPU belongs here.
                started = self._enter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self._leave(label, started)

            return functools.wraps(function)(timed_async)

        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            started = self._enter()
            try:
                return function(*args, **kwargs)
            finally:
                self._leave(label, started)

        return functools.wraps(function)(timed_sync)


# (label, module or class, attribute): what a delivery task calls, by stage.
def _stage_targets() -> list[tuple[str, Any, str]]:
    import service.delivery.day_papers
    import service.delivery.pipeline
    import service.mail.smtp
    import service.mail.wire

    targets: list[tuple[str, Any, str]] = [
        ("rank: day's papers (load_day_papers)", service.delivery.day_papers, "load_day_papers"),
        ("rank: build_digest", service.delivery.pipeline, "build_digest"),
        ("render: compose_digest", service.delivery.pipeline, "compose_digest"),
        (
            "serialize: seven_bit_data (relays without 8BITMIME)",
            service.mail.wire.OutgoingMail,
            "seven_bit_data",
        ),
        ("SMTP: send (aiosmtplib)", service.mail.smtp.SmtpTransport, "send"),
        ("SMTP: close (QUIT)", service.mail.smtp.SmtpTransport, "close"),
    ]
    # Every Store method, so whatever the delivery path calls is seen, by name; each is
    # wrapped on the part of the store that defines it.
    for part in Store.__mro__:
        if not part.__module__.startswith("service.store."):
            continue
        for name, member in vars(part).items():
            if inspect.isfunction(member) and (name == "__init__" or not name.startswith("_")):
                label = "DB: Store() (engine per task)" if name == "__init__" else f"DB: {name}"
                targets.append((label, part, name))
    # And every Ledger method: the claims and outcome writes of a batch.
    for name, member in vars(Ledger).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            targets.append((f"DB: ledger.{name}", Ledger, name))
    return targets


@contextmanager
def instrumented(clock: StageClock) -> Iterator[None]:
    """Wrap the stage functions for the duration; always put the originals back. The cyclic
    garbage collector is a stage of its own: it runs inside whatever allocates when a
    generation fills up, and would otherwise be charged to that."""
    saved: list[tuple[Any, str, Any]] = []
    collecting: list[tuple[float, float]] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting.append(clock._enter())
        elif collecting:
            clock._leave(
                f"GC: generation {info.get('generation', '?')} collections", collecting.pop()
            )

    gc.callbacks.append(on_gc)
    try:
        for label, owner, name in _stage_targets():
            original = getattr(owner, name, None)
            if original is None:
                continue
            saved.append((owner, name, original))
            setattr(owner, name, clock.timed(label, original))
        yield
    finally:
        gc.callbacks.remove(on_gc)
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


@dataclass
class StageProfile:
    digests: int
    cpu_seconds: float
    wall_seconds: float
    cpu: dict[str, float]
    wall: dict[str, float]
    calls: dict[str, int]


def _run_batches(batches: Sequence[Sequence[tuple[int, date]]]) -> int:
    from workers.tasks import send_digest_batch_task

    sent = 0
    for batch in batches:
        items = [[subscriber_id, day.isoformat()] for subscriber_id, day in batch]
        outcome = send_digest_batch_task.run(items)
        sent += int(outcome.get("sent", 0))
    return sent


def time_stages(batches: Sequence[Sequence[tuple[int, date]]]) -> StageProfile:
    """The delivery task's body on these batches, with each stage's exclusive time."""
    clock = StageClock()
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    with instrumented(clock):
        sent = _run_batches(batches)
    return StageProfile(
        digests=sent,
        cpu_seconds=time.process_time() - cpu_started,
        wall_seconds=time.perf_counter() - wall_started,
        cpu=clock.cpu,
        wall=clock.wall,
        calls=clock.calls,
    )


# Where each function's own time goes, by the package its code lives in.
LIBRARIES = (
    ("sqlalchemy", "/sqlalchemy/"),
    ("psycopg", "/psycopg"),
    ("jinja2 + markupsafe", "/jinja2/"),
    ("jinja2 + markupsafe", "/markupsafe/"),
    ("jinja2 + markupsafe", "<template>"),
    ("css_inline", "css_inline"),
    ("email (stdlib)", "/email/"),
    ("aiosmtplib", "/aiosmtplib/"),
    ("asyncio + selectors", "/asyncio/"),
    ("asyncio + selectors", "selectors.py"),
    ("pydantic", "pydantic"),
    ("snowballstemmer", "snowballstemmer"),
    ("service/ranking/", "service/ranking/"),
    ("service/mail/", "service/mail/"),
    ("service/store/", "service/store/"),
    ("service/delivery/", "service/delivery/"),
)


@dataclass
class LibraryProfile:
    digests: int
    total_seconds: float
    by_library: dict[str, float]
    top: list[tuple[str, float]]


def _library_of(code: object) -> str:
    where = code.co_filename if isinstance(code, types.CodeType) else str(code)
    for library, marker in LIBRARIES:
        if marker in where:
            return library
    if "select.epoll" in where:
        return "waiting on sockets (epoll)"
    if isinstance(code, types.CodeType):
        return "other Python"
    return "other built-ins (C)"


def profile_libraries(batches: Sequence[Sequence[tuple[int, date]]]) -> LibraryProfile:
    """cProfile (wall clock) of the task body: own time of each function, by package."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        sent = _run_batches(batches)
    finally:
        profiler.disable()
    total = time.perf_counter() - started
    by_library: dict[str, float] = {}
    functions: list[tuple[str, float]] = []
    for entry in profiler.getstats():
        library = _library_of(entry.code)
        by_library[library] = by_library.get(library, 0.0) + entry.inlinetime
        code = entry.code
        if isinstance(code, types.CodeType):
            where = "/".join(Path(code.co_filename).parts[-2:])
            name = f"{code.co_name} ({where}:{code.co_firstlineno})"
        else:
            name = str(code)
        functions.append((name, entry.inlinetime))
    functions.sort(key=lambda item: -item[1])
    return LibraryProfile(
        digests=sent, total_seconds=total, by_library=by_library, top=functions[:12]
    )


def plan_profile_issues(
    store: Store, issue_date: date, *, weekday: int, now: datetime, settings: Settings
) -> list[list[tuple[int, date]]]:
    """Planned rows for the profile's own subscribers (weekly, not due today), in batches."""
    schedule = Schedule(
        time_zone="UTC", delivery_hour=0, frequency=Frequency.WEEKLY, weekday=weekday
    )
    ids = store.plan_issues(schedule, issue_date, now=now, expires_at=None)
    keys = [(subscriber_id, issue_date) for subscriber_id in ids]
    size = settings.batch_size
    return [keys[start : start + size] for start in range(0, len(keys), size)]


# ---------------------------------------------------------------------------------------------
# Report


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
    n = run.planned
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
    elapsed = after.at - before.at
    cores = os.cpu_count() or 1
    busy_share = (after.machine_busy - before.machine_busy) / max(
        1e-9, after.machine_total - before.machine_total
    )
    worker_cpu = ms_per_digest(
        before.worker_pool + before.worker_main, after.worker_pool + after.worker_main
    )
    ratio = rate / raw.rate if raw.rate > 0 else 0.0
    statuses = ", ".join(
        f"{status.value} {count}" for status, count in sorted(run.statuses.items())
    )

    print()
    print(
        f"Daily run through Celery: {n} subscribers, {args.papers} papers, {database}, "
        f"{len(args.worker_list)} worker(s) x concurrency {args.workers_concurrency}, "
        f"batches of {args.batch_size}, {cores} cores"
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
    print(
        f"\nper-stage means in this process, {stages.sample} subscribers, the same day's "
        f"papers (wall / CPU):"
    )
    print(
        f"  load_day_papers (papers, corpus statistics): {stages.load_ms:.0f} ms once per task "
        f"= {stages.load_ms / args.batch_size:.2f} ms per digest at batches of {args.batch_size} "
        f"(first call in a process: {stages.first_load_ms:.0f} ms)"
    )
    print(f"  rank:      {stages.rank_ms:.2f} / {stages.rank_cpu_ms:.2f} ms")
    print(f"  render:    {stages.render_ms:.2f} / {stages.render_cpu_ms:.2f} ms")
    print(f"  serialize: {stages.serialize_ms:.2f} / {stages.serialize_cpu_ms:.2f} ms")
    print(
        f"  message size {stages.mean_size / 1024:.1f} KiB on average; "
        f"{stages.empty} of {stages.sample} digests empty (skipped)"
    )
    print(
        f"\nCPU per digest sent during the run ({elapsed:.1f} s; the machine's {cores} cores "
        f"{100 * busy_share:.0f} % busy):"
    )
    for name, value in cpu_rows:
        print(f"  {name:<36} {value:7.2f} ms")
    print(f"  {'total busy CPU of the machine':<36} {machine_busy:7.2f} ms")
    if run.postgres_transactions is not None:
        print(
            f"  PostgreSQL transactions in the database: {run.postgres_transactions} "
            f"= {run.postgres_transactions / per_digest:.1f} per digest"
        )
    if run.other_databases_busy:
        print("  note: other databases were busy at the same time; PostgreSQL's CPU is shared")
    print(f"  worker CPU (main + pool): {worker_cpu:.2f} ms per digest")
    mem = run.memory
    print(
        f"  peak RSS (VmHWM): worker main {mem.main_peak_mb:.0f} MB, largest of "
        f"{mem.children} pool process(es) {mem.child_peak_mb:.0f} MB"
    )

    print(
        f"\nraw limit: one aiosmtplib connection sending the same {raw.size / 1024:.1f} KiB "
        f"pre-serialized digest to the same sink: {raw.messages} messages in "
        f"{raw.seconds:.2f} s = {raw.rate:.0f} messages/s "
        f"(sender CPU {1000 * raw.sender_cpu_seconds / max(1, raw.messages):.2f} ms, "
        f"sink CPU {1000 * raw.sink_cpu_seconds / max(1, raw.messages):.2f} ms per message)"
    )
    print(f"  digests/s ÷ raw messages/s = {rate:.1f} / {raw.rate:.0f} = {ratio:.2f}")

    if stage_profile is not None:
        print_stage_profile(stage_profile)
    if library_profile is not None:
        print_library_profile(library_profile)

    print("\nwhat bounds throughput:")
    ranked = sorted(cpu_rows[:-1], key=lambda row: -row[1])
    ceiling = 1000 * cores / max(1e-9, accounted)
    pool_processes = len(args.worker_list) * max(1, args.workers_concurrency)
    pool_busy = (after.worker_pool - before.worker_pool) / max(1e-9, elapsed) / pool_processes
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
    print(f"  ≥ {TARGET_RAW_RATIO}x the raw limit: {ratio:.2f}x")
    print(f"  ≤ {TARGET_CPU_MS_PER_DIGEST:g} ms worker CPU per digest: {worker_cpu:.2f} ms")
    print(
        f"  ≤ {TARGET_RSS_MB:.0f} MB RSS per worker process: "
        f"{max(mem.main_peak_mb, mem.child_peak_mb):.0f} MB"
    )
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


# ---------------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    # SIGTERM ends the run like Ctrl-C does: through every cleanup below.
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
    args = parser.parse_args()
    count = max(1, min(args.subscribers, MAX_SUBSCRIBERS))
    args.papers = max(1, min(args.papers, MAX_PAPERS))
    args.batch_size = max(1, min(args.batch_size, 1000))
    args.worker_list = range(max(1, min(args.workers, 8)))
    # Generous but bounded: 100 ms per subscriber on top of two minutes, at most 30 minutes.
    timeout = args.timeout or min(1800.0, 120.0 + 0.1 * count)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Set explicitly: a process started in the background by a script inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daily-run-")))
        redis = RedisServer(folder / "redis")
        redis.start()
        stack.callback(redis.stop)
        database_url = stack.enter_context(bench_database(args.database, folder))
        database_name = make_url(database_url).database if args.database == "postgresql" else None
        sink = SinkProcess()
        stack.callback(sink.stop)
        log(f"redis on {redis.url()}, sink on {sink.url}, database {database_name or 'SQLite'}")

        worker_env = {
            "PAPERWIRE_DATABASE_URL": database_url,
            "PAPERWIRE_MAIL_URL": sink.url,
            "PAPERWIRE_SECRET_KEY": SECRET_KEY,
            "PAPERWIRE_MAIL_FROM_ADDRESS": MAIL_FROM,
            "PAPERWIRE_BATCH_SIZE": str(args.batch_size),
        }
        # Before anything imports workers.*: the Celery app takes its broker from the settings
        # at import, and the settings are cached once read.
        os.environ.update(worker_env)
        os.environ["PAPERWIRE_REDIS_URL"] = redis.url()
        get_settings.cache_clear()
        settings = get_settings()

        store = Store(database_url)
        stack.callback(store.close)
        store.upgrade()
        now = datetime.now(UTC)
        store.upsert_papers(day_papers(args.papers), now=now - timedelta(hours=1))
        draw = interest_drawer(args.seed)
        started = time.perf_counter()
        insert_subscribers(
            store,
            count,
            first_number=0,
            draw=draw,
            delivery_hour=now.hour,
            frequency=Frequency.DAILY,
            weekday=0,
            now=now,
        )
        # The profile's own subscribers: weekly on a day three days away, so never due now
        # (nor within the give-up window), and planned by hand after the run.
        profile_weekday = (now.weekday() + 3) % 7
        profile_count = 2 * max(0, args.profile_batches) * args.batch_size
        insert_subscribers(
            store,
            profile_count,
            first_number=count,
            draw=draw,
            delivery_hour=0,
            frequency=Frequency.WEEKLY,
            weekday=profile_weekday,
            now=now,
        )
        log(f"{count} + {profile_count} subscribers added in {time.perf_counter() - started:.1f} s")
        daily_ids = subscriber_ids(store, frequency=Frequency.DAILY)

        # On an idle machine, before the workers start.
        busy_before = {"stage timing": wait_for_quiet(args.wait_quiet)}
        stages = measure_stages(store, daily_ids[: args.sample], now.date(), settings=settings)
        log(
            f"stages: rank {stages.rank_ms:.2f} ms, render {stages.render_ms:.2f} ms, "
            f"serialize {stages.serialize_ms:.2f} ms"
        )

        workers = [
            CeleryWorker(
                broker_url=redis.url(),
                directory=folder / f"worker-{index + 1}",
                env=worker_env,
                concurrency=max(1, args.workers_concurrency),
                loglevel="WARNING",
            )
            for index in args.worker_list
        ]
        for worker in workers:
            stack.callback(worker.kill)
            worker.start()
        for worker in workers:
            worker.wait_ready(60.0)
        busy_before["run"] = wait_for_quiet(args.wait_quiet)
        log(f"{len(workers)} worker(s) ready; running the day for {count} subscribers")

        run = run_day_through_workers(
            store,
            settings,
            workers=workers,
            redis=redis,
            sink=sink,
            database_url=database_url,
            database_name=database_name,
            expected=count,
            timeout=timeout,
        )
        log(f"run done in {run.wall_seconds:.1f} s; measuring the raw limit")
        busy_before["raw limit"] = wait_for_quiet(args.wait_quiet)
        raw = measure_raw_limit(
            sink, stages.payload, max_messages=args.raw_messages, max_seconds=args.raw_seconds
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

        # What enqueue_batches spends on the ledger per batch (one UPDATE per issue), timed on
        # rows of the finished day: marking them again changes nothing that matters now.
        keys = [(subscriber_id, now.date()) for subscriber_id in daily_ids]
        sample_batches = [
            keys[start : start + args.batch_size]
            for start in range(0, min(len(keys), 10 * args.batch_size), args.batch_size)
        ]
        started = time.perf_counter()
        for batch in sample_batches:
            store.mark_enqueued(batch, now=datetime.now(UTC))
        mark_enqueued_ms = 1000 * (time.perf_counter() - started) / max(1, len(sample_batches))

        worker_errors = [
            line
            for worker in workers
            for line in worker.log_text().splitlines()
            if "ERROR" in line or "Traceback" in line
        ]
        for worker in workers:
            worker.stop(timeout=10.0)
        sink_final = sink.stop()

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


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; the services, database and temporary folder were removed")
        sys.exit(130)
