"""A whole day's run against a local SMTP sink: how long each stage of a digest takes.

Run from the project root (needs the test extras, for the aiosmtpd sink):

    .venv/bin/python -m bench.digest_run --subscribers 500

It builds a SQLite store in a temporary folder, imports the sample papers, adds subscribers with
interests drawn from a fixed pool, then times `run_day` end to end (claim, rank, render, SMTP
over one connection to an aiosmtpd server on 127.0.0.1, record) and, separately, the rank and
render stages for a sample of those subscribers. Everything stays on this machine.
"""

import argparse
import asyncio
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from service.delivery.day_papers import build_digest, load_day_papers
from service.delivery.pipeline import run_day
from service.mail.compose import compose_digest
from service.models import (
    Interests,
    ReadingHistory,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.settings import Settings
from service.sources.jsonl import read_papers_file
from service.store import Store
from tests.support.smtp_sink import SmtpSink

SAMPLE_PAPERS = Path(__file__).resolve().parent.parent / "service" / "sample_data" / "papers.jsonl"
INTEREST_POOL = (
    "diffusion models",
    "consistency models",
    "graph neural networks",
    "recommender systems",
    "continual learning",
    "reinforcement learning from human feedback",
    "preference optimization",
    "vision transformers",
    "robot learning",
    "large language models",
    "federated learning",
    "speech recognition",
    "3D reconstruction",
    "mixture of experts",
    "retrieval augmented generation",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--sample", type=int, default=100, help="subscribers timed per stage")
    args = parser.parse_args()
    count = max(1, min(args.subscribers, 20_000))  # bounded: a benchmark, not a load test

    with tempfile.TemporaryDirectory() as folder:
        sink = SmtpSink()
        sink.start()
        try:
            settings = Settings(
                database_url=f"sqlite:///{folder}/bench.db",
                mail_url=sink.url,
                secret_key=SecretStr("benchmark-secret"),
                mail_from_address="digest@paperwire.test",
            )
            store = Store(settings.database_url)
            store.upgrade()
            now = datetime.now(UTC)
            store.upsert_papers(
                read_papers_file(SAMPLE_PAPERS).papers, now=now - timedelta(hours=1)
            )
            _add_subscribers(store, count, now=now)

            started = time.perf_counter()
            summary = asyncio.run(run_day(store, issue_date=now.date(), settings=settings))
            elapsed = time.perf_counter() - started
            received = len(sink.messages)
            _print_stage_times(store, settings, sample=args.sample)
        finally:
            sink.stop()

    print(f"\nrun_day for {count} subscribers, 375 papers, SQLite, SMTP to 127.0.0.1")
    print(f"  outcomes: {dict((k.value, v) for k, v in summary.outcomes.items())}")
    print(f"  messages at the sink: {received} over {sink.session_count} SMTP session(s)")
    print(f"  wall time: {elapsed:.2f} s = {1000 * elapsed / count:.1f} ms per subscriber")
    print(f"  throughput: {count / elapsed:.0f} digests/s on one process")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory (RSS) of this process: {peak_mib:.0f} MiB")


def _add_subscribers(store: Store, count: int, *, now: datetime) -> None:
    chooser = random.Random(7)
    for number in range(count):
        keywords = tuple(chooser.sample(INTEREST_POOL, k=chooser.randint(1, 3)))
        preferences = SubscriptionPreferences(
            interests=Interests(keywords=keywords),
            trending_weight=chooser.choice((0.0, 0.2, 0.5, 0.8)),
        )
        store.add_subscriber(
            f"reader{number}@example.org",
            preferences,
            status=SubscriptionStatus.CONFIRMED,
            now=now,
        )


def _print_stage_times(store: Store, settings: Settings, *, sample: int) -> None:
    subscribers = store.list_subscribers()[:sample]
    issue_date = datetime.now(UTC).date() + timedelta(days=1)  # a day with nothing sent yet
    started = time.perf_counter()
    day = load_day_papers(store, issue_date)
    load_ms = 1000 * (time.perf_counter() - started)
    rank_s = render_s = serialize_s = 0.0
    size = 0
    for subscriber in subscribers:
        started = time.perf_counter()
        digest = build_digest(
            subscriber,
            day,
            issue_date=issue_date,
            history=ReadingHistory(),
            limit=settings.digest_size,
        )
        rank_s += time.perf_counter() - started
        started = time.perf_counter()
        mail = compose_digest(digest, settings=settings)
        render_s += time.perf_counter() - started
        started = time.perf_counter()
        size += len(mail.data)  # written as bytes while composing: nothing left to do
        serialize_s += time.perf_counter() - started
    n = len(subscribers)
    print(f"per-stage means over {n} subscribers (papers already analysed once per day):")
    print(f"  load day papers + corpus statistics: {load_ms:.0f} ms once per run")
    print(f"  rank:      {1000 * rank_s / n:.2f} ms")
    print(f"  render:    {1000 * render_s / n:.2f} ms")
    print(f"  serialize: {1000 * serialize_s / n:.2f} ms")
    print(f"  message size: {size / n / 1024:.1f} KiB on average")


if __name__ == "__main__":
    main()
