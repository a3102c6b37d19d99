"""What a daily run stands on: the private Redis, the bench database, the SMTP sink in a process
of its own, the Celery workers, and the day's papers and subscribers."""

import json
import os
import random
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy import select as sql_select
from sqlalchemy.engine import make_url

from bench.ranking_speed import make_candidates
from service.models import (
    DEFAULT_PAPERS_PER_ISSUE,
    DEFAULT_PROFILE_NAME,
    Frequency,
    Interests,
    Paper,
    SubscriptionStatus,
)
from service.settings import Settings, get_settings
from service.sources.jsonl import read_papers_file
from service.store import Store, new_link_key
from service.store.tables import ProfileRow, SubscriberRow
from tests.support.factories import draw_title_phrases, title_phrases
from tests.support.services import CeleryWorker, RedisServer

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PAPERS = PROJECT_ROOT / "service" / "sample_data" / "papers.jsonl"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MAIL_FROM = "digest@bench.paperwire.test"
SECRET_KEY = "daily-run-benchmark-secret"
TRENDING_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
INSERT_CHUNK = 5_000


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the figures."""
    print(message, file=sys.stderr, flush=True)


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


@dataclass
class Services:
    """What the run's processes talk to, all started for this run."""

    redis: RedisServer
    sink: SinkProcess
    database_url: str
    database_name: str | None  # None with SQLite
    worker_env: dict[str, str]
    settings: Settings
    store: Store


def start_services(stack: ExitStack, folder: Path, *, database: str, batch_size: int) -> Services:
    """Redis, the database (migrated) and the sink, each stopped or removed by `stack`; and this
    process's settings pointing at them, as the workers' will."""
    redis = RedisServer(folder / "redis")
    redis.start()
    stack.callback(redis.stop)
    database_url = stack.enter_context(bench_database(database, folder))
    database_name = make_url(database_url).database if database == "postgresql" else None
    sink = SinkProcess()
    stack.callback(sink.stop)
    log(f"redis on {redis.url()}, sink on {sink.url}, database {database_name or 'SQLite'}")

    worker_env = {
        "PAPERWIRE_DATABASE_URL": database_url,
        "PAPERWIRE_MAIL_URL": sink.url,
        "PAPERWIRE_SECRET_KEY": SECRET_KEY,
        "PAPERWIRE_MAIL_FROM_ADDRESS": MAIL_FROM,
        "PAPERWIRE_BATCH_SIZE": str(batch_size),
        # Measured as the workers deliver, not as they serve metrics on a port.
        "PAPERWIRE_WORKER_METRICS_PORT": "0",
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
    return Services(
        redis=redis,
        sink=sink,
        database_url=database_url,
        database_name=database_name,
        worker_env=worker_env,
        settings=settings,
        store=store,
    )


def start_workers(
    stack: ExitStack, services: Services, folder: Path, *, count: int, concurrency: int
) -> list[CeleryWorker]:
    """`count` Celery workers on the private Redis, answering pings; killed by `stack`."""
    workers = [
        CeleryWorker(
            broker_url=services.redis.url(),
            directory=folder / f"worker-{index + 1}",
            env=services.worker_env,
            concurrency=concurrency,
            loglevel="WARNING",
        )
        for index in range(count)
    ]
    for worker in workers:
        stack.callback(worker.kill)
        worker.start()
    for worker in workers:
        worker.wait_ready(60.0)
    return workers


def worker_error_lines(workers: Sequence[CeleryWorker]) -> list[str]:
    return [
        line
        for worker in workers
        for line in worker.log_text().splitlines()
        if "ERROR" in line or "Traceback" in line
    ]


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
    profiles: list[dict[str, Any]] = []
    for number in range(first_number, first_number + count):
        interests, trending_weight = draw()
        rows.append(
            {
                "email": f"reader{number}@example.org",
                "status": SubscriptionStatus.CONFIRMED.value,
                "time_zone": "UTC",
                "delivery_hour": delivery_hour,
                "frequency": frequency.value,
                "weekday": weekday,
                "hard_bounces": 0,
                "created_at": now,
                "confirmed_at": now,
                "unsubscribed_at": None,
                # As the store makes them: links are bound to their subscriber.
                "link_key": new_link_key(),
            }
        )
        # One interest profile each, as signup makes it.
        profiles.append(
            {
                "position": 0,
                "name": DEFAULT_PROFILE_NAME,
                "keywords": list(interests.keywords),
                "interests_text": interests.text,
                "trending_weight": trending_weight,
                "papers_per_issue": DEFAULT_PAPERS_PER_ISSUE,
                "created_at": now,
                "updated_at": now,
            }
        )
    with store.engine.begin() as connection:
        for start in range(0, len(rows), INSERT_CHUNK):
            ids = connection.execute(
                insert(SubscriberRow).returning(SubscriberRow.id, sort_by_parameter_order=True),
                rows[start : start + INSERT_CHUNK],
            ).scalars()
            chunk = profiles[start : start + INSERT_CHUNK]
            connection.execute(
                insert(ProfileRow),
                [profile | {"subscriber_id": id_} for profile, id_ in zip(chunk, ids, strict=True)],
            )


def seed_day(
    store: Store,
    *,
    papers: int,
    subscribers: int,
    profile_subscribers: int,
    profile_weekday: int,
    seed: int,
    now: datetime,
) -> None:
    """The day's papers, first seen an hour ago; `subscribers` daily readers due this hour; and
    the profile's own readers, weekly on `profile_weekday`."""
    store.upsert_papers(day_papers(papers), now=now - timedelta(hours=1))
    draw = interest_drawer(seed)
    started = time.perf_counter()
    insert_subscribers(
        store,
        subscribers,
        first_number=0,
        draw=draw,
        delivery_hour=now.hour,
        frequency=Frequency.DAILY,
        weekday=0,
        now=now,
    )
    insert_subscribers(
        store,
        profile_subscribers,
        first_number=subscribers,
        draw=draw,
        delivery_hour=0,
        frequency=Frequency.WEEKLY,
        weekday=profile_weekday,
        now=now,
    )
    log(
        f"{subscribers} + {profile_subscribers} subscribers added in "
        f"{time.perf_counter() - started:.1f} s"
    )


def subscriber_ids(store: Store, *, frequency: Frequency) -> list[int]:
    query = (
        sql_select(SubscriberRow.id)
        .where(SubscriberRow.frequency == frequency.value)
        .order_by(SubscriberRow.id)
    )
    with store.engine.connect() as connection:
        return [int(row[0]) for row in connection.execute(query)]
