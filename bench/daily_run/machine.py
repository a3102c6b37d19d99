"""CPU and memory of the processes taking part, and of the whole machine, read from /proc."""

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.daily_run.harness import log
from tests.support.services import CeleryWorker, group_pids

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
