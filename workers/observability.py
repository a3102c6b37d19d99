"""A worker's metrics and the records the web app's `/metrics` reads of the jobs it runs.

Metrics: each worker's main process serves, on `PAPERWIRE_WORKER_METRICS_PORT`, the figures of
`service.observability.sending` summed over its pool processes, with prometheus_client's
multiprocess mode: each process writes its figures to files in PROMETHEUS_MULTIPROC_DIR and the
main process reads them all when scraped. prometheus_client chooses that mode once, when it is
first imported, from the environment; so the directory is named in the main process when
Celery is about to import the task modules (the first to import prometheus_client) and before
the pool forks, and this module imports prometheus_client only inside functions. The directory
is PROMETHEUS_MULTIPROC_DIR if set (emptied at start, since files of a previous run would be
summed in), else a new temporary one, removed when the worker stops (or, after a worker was
killed, when the next one starts).

Records: when a beat job's task succeeds, the time goes to a Redis hash; when the paper fetch
ends, each source that succeeded has its counts recorded (`service.observability.job_records`).
Both come from task signals, which fire where the task ran, in a worker: a task called
directly (`task.run()`) records nothing.
"""

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import click
import redis
from celery import Celery
from celery.signals import (
    import_modules,
    task_failure,
    task_success,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from service.observability.job_records import record_beat_success, record_paper_fetch
from service.settings import get_settings

log = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Followed by the worker's pid: a later worker can tell a dead worker's folder.
TEMPORARY_PREFIX = "paperwire-metrics-"
FETCH_TASK = "paperwire.fetch_papers"


@dataclass
class WorkerMetrics:
    """The metrics files of this worker and, once started, the server that reads them."""

    directory: Path
    made_here: bool
    server: WSGIServer | None = None  # once listening


# One worker per process: set in its main process, inherited by the pool's.
_worker_metrics: WorkerMetrics | None = None


def watch_worker(app: Celery) -> None:
    """Connect the handlers below to `app`'s worker signals (called where the app is made, so
    that they are connected before Celery imports the task modules)."""
    import_modules.connect(_prepare_multiprocess, sender=app, weak=False)
    worker_ready.connect(_serve_metrics, weak=False)
    worker_process_shutdown.connect(_mark_process_dead, weak=False)
    worker_shutdown.connect(_stop_serving, weak=False)
    task_success.connect(_record_job_success, weak=False)
    task_failure.connect(_record_fetch_failure, weak=False)


def _prepare_multiprocess(**_: object) -> None:
    global _worker_metrics
    settings = get_settings()
    if not settings.worker_metrics_port or not _running_the_worker_command():
        return
    if "prometheus_client" in sys.modules:
        log.error("worker metrics are off: prometheus_client was imported before the worker set up")
        return
    named = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if named:
        directory = Path(named)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        _remove_folders_of_dead_workers()
        directory = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(directory)
    _worker_metrics = WorkerMetrics(directory=directory, made_here=not named)


def _remove_folders_of_dead_workers() -> None:
    """A worker killed outright (SIGKILL, the OOM killer) leaves its temporary folder behind;
    the next one to start removes those whose worker, named in the folder, is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMPORARY_PREFIX}*-*"):
        pid = folder.name.removeprefix(TEMPORARY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or not a pid at all: left alone
    return True


def _running_the_worker_command() -> bool:
    """`celery worker` (or `paperwire worker`), not beat, which imports the tasks too."""
    context = click.get_current_context(silent=True)
    return context is not None and context.info_name == "worker"


def _serve_metrics(**_: object) -> None:
    """In the main process, once the pool runs: a thread answering scrapes on the port."""
    if _worker_metrics is None:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    settings = get_settings()
    registry = CollectorRegistry()
    directory = str(_worker_metrics.directory)
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    try:
        server, _thread = start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
        )
    except OSError as exc:
        # Metrics are not worth a worker that does not deliver: it runs on without them.
        log.warning(
            "worker metrics off: cannot listen on %s:%d: %s",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            exc,
        )
        return
    _worker_metrics.server = server
    log.info(
        "worker metrics on http://%s:%d/metrics",
        settings.worker_metrics_host,
        settings.worker_metrics_port,
    )


def _mark_process_dead(pid: int, **_: object) -> None:
    """In a pool process that exits: its live gauges stop counting (its counters stay)."""
    if _worker_metrics is None:
        return
    from prometheus_client import multiprocess

    directory = str(_worker_metrics.directory)
    multiprocess.mark_process_dead(pid, path=directory)  # type: ignore[no-untyped-call]


def _stop_serving(**_: object) -> None:
    if _worker_metrics is None:
        return
    if _worker_metrics.server is not None:
        _worker_metrics.server.shutdown()
        _worker_metrics.server.server_close()
    if _worker_metrics.made_here:
        shutil.rmtree(_worker_metrics.directory, ignore_errors=True)


def _record_job_success(sender: Any, result: object, **_: object) -> None:
    """A task succeeded: the time, if it is a beat job's; the counts, if it was the fetch."""
    task_name = getattr(sender, "name", None)
    jobs = {entry["task"]: job for job, entry in sender.app.conf.beat_schedule.items()}
    if task_name not in jobs:
        return
    now = datetime.now(UTC)
    with _records_client() as client:
        record_beat_success(client, jobs[task_name], at=now)
        if task_name == FETCH_TASK and isinstance(result, Mapping):
            for source, counts in result.items():
                record_paper_fetch(client, source, counts, at=now)


def _record_fetch_failure(sender: Any, exception: BaseException, **_: object) -> None:
    """The fetch failed for a source: the sources that succeeded still count as fetched."""
    # Imported here: this module is imported with the app, before the task modules.
    from service.sources.fetch import FetchFailed

    if getattr(sender, "name", None) != FETCH_TASK or not isinstance(exception, FetchFailed):
        return
    now = datetime.now(UTC)
    with _records_client() as client:
        for summary in exception.summaries:
            if summary.error is None:
                counts = {
                    "new": summary.new,
                    "updated": summary.updated,
                    "rejected": summary.rejected,
                }
                record_paper_fetch(client, summary.source, counts, at=now)


@contextmanager
def _records_client() -> Iterator[redis.Redis]:
    """A client of the broker's Redis; an error there is logged, never the task's."""
    client = redis.Redis.from_url(
        get_settings().redis_url, socket_timeout=5, socket_connect_timeout=5
    )
    try:
        yield client
    except redis.RedisError as exc:
        log.warning("could not record a job's outcome in Redis: %s", exc)
    finally:
        client.close()
