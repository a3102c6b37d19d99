"""Metrics of a real run: a `digest run --via-celery` through a Celery worker in a subprocess
(a private Redis, PostgreSQL, the SMTP sink on 127.0.0.1). The worker's port reports the
digests sent and the send latency summed over its pool processes; the web app's /metrics
reports the same day from the ledger, and the beat job the worker ran from Redis."""

import dataclasses
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import redis

from service.models import Interests
from service.observability.job_records import BEAT_SUCCESS_KEY, PAPER_FETCH_KEY
from service.store import Store
from service.web import create_app
from tests.observability.conftest import parse_samples, sample, serving
from tests.support.factories import (
    BACKGROUND_PAPERS,
    NOW,
    TODAY,
    add_subscriber,
    make_paper,
    make_settings,
)
from tests.support.services import CeleryWorkerFactory, celery_client, free_port, wait_until
from tests.support.smtp_sink import SmtpSink

SUBSCRIBERS = 12
# Four batches, so that both pool processes have work to sum.
BATCH_SIZE = 3


def seed_day(store: Store) -> None:
    """Papers seen on the morning of TODAY and readers who want them."""
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers(
        [make_paper(id=f"2511.{n:05d}", title=f"Diffusion models, part {n}") for n in range(1, 4)],
        now=NOW - timedelta(hours=1),
    )
    for number in range(SUBSCRIBERS):
        add_subscriber(
            store,
            f"reader{number}@example.org",
            interests=Interests(keywords=("diffusion models",)),
        )


def test_a_run_through_a_worker_shows_on_its_port_and_on_the_web(
    pg_store: Store,
    postgres_url: str,
    redis_url: str,
    smtp_sink: SmtpSink,
    celery_worker_factory: CeleryWorkerFactory,
    tmp_path: Path,
) -> None:
    seed_day(pg_store)
    port = free_port()
    temporary = tmp_path / "worker-tmp"
    # Left by a worker killed outright, whose pid is gone.
    (temporary / "paperwire-metrics-4999999-k1ll3d").mkdir(parents=True)
    papers_file = tmp_path / "papers.jsonl"
    papers_file.write_text(
        '{"id": "2511.00101", "title": "Flow matching"}\n{"title": "a line without an id"}\n'
    )
    worker = celery_worker_factory(
        env={
            "PAPERWIRE_DATABASE_URL": postgres_url,
            "PAPERWIRE_MAIL_URL": smtp_sink.url,
            "PAPERWIRE_SECRET_KEY": "worker-test-secret",
            "PAPERWIRE_MAIL_FROM_ADDRESS": "digest@paperwire.test",
            "PAPERWIRE_WORKER_METRICS_PORT": str(port),
            # Where the worker makes its metrics folder, to see it gone after.
            "TMPDIR": str(temporary),
            # The fetch: the file imports, Hugging Face (a closed local port) fails.
            "PAPERWIRE_PAPERS_FILE": str(papers_file),
            "PAPERWIRE_PAPER_SOURCES": "hf",
            "PAPERWIRE_HF_BASE_URL": "http://127.0.0.1:9",
            "PAPERWIRE_SOURCE_MAX_ATTEMPTS": "1",
        },
        concurrency=2,
    )
    worker.wait_for_log(f"worker metrics on http://127.0.0.1:{port}/metrics")
    (folder,) = temporary.glob("paperwire-metrics-*")
    assert folder.name.startswith(f"paperwire-metrics-{worker.pid}-")

    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "paperwire"),
            *("digest", "run", "--via-celery", "--date", TODAY.isoformat(), "--timeout", "120"),
        ],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")},
            "PAPERWIRE_DATABASE_URL": postgres_url,
            "PAPERWIRE_REDIS_URL": redis_url,
            "PAPERWIRE_MAIL_URL": smtp_sink.url,
            # The run makes the batches.
            "PAPERWIRE_BATCH_SIZE": str(BATCH_SIZE),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    assert len(smtp_sink.messages) == SUBSCRIBERS

    worker_samples = parse_samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    assert sample(worker_samples, "paperwire_digests_sent_total") == SUBSCRIBERS
    assert sample(worker_samples, "paperwire_smtp_replies_total", **{"class": "2xx"}) == SUBSCRIBERS
    assert sample(worker_samples, "paperwire_smtp_replies_total", **{"class": "5xx"}) == 0
    assert sample(worker_samples, "paperwire_send_duration_seconds_count") == SUBSCRIBERS
    every_send = sample(worker_samples, "paperwire_send_duration_seconds_bucket", le="+Inf")
    assert every_send == SUBSCRIBERS
    assert 0 < (sample(worker_samples, "paperwire_send_duration_seconds_sum") or 0) < 60
    assert sample(worker_samples, "paperwire_rank_seconds_count") == SUBSCRIBERS
    assert sample(worker_samples, "paperwire_render_seconds_count") == SUBSCRIBERS
    assert (
        sample(worker_samples, "paperwire_batch_duration_seconds_count") == SUBSCRIBERS / BATCH_SIZE
    )
    # The worker serves its own figures only, none of the web app's.
    assert not any(name.startswith("paperwire_http_") for name, _ in worker_samples)

    # Beat jobs run by the worker record what they did where the web app reads it: the sweep
    # its success; the fetch, which failed for one source, the source that worked.
    with celery_client(redis_url) as client:
        client.send_task("paperwire.fetch_papers")
        client.send_task("paperwire.sweep_deliveries")
    records = redis.Redis.from_url(redis_url)
    try:
        wait_until(
            lambda: (
                records.hexists(BEAT_SUCCESS_KEY, "sweep-deliveries")
                and records.hexists(PAPER_FETCH_KEY, "file")
            ),
            timeout=30,
            what="the sweep's success and the fetch in Redis",
        )
    finally:
        records.close()
    worker.wait_for_log("paperwire.fetch_papers[", timeout=30)

    web_settings = make_settings(
        database_url=postgres_url, redis_url=redis_url, mail_url=f"file://{tmp_path / 'outbox'}"
    )
    app = create_app(web_settings, store=pg_store)
    app.state.web = dataclasses.replace(app.state.web, clock=lambda: NOW)
    with serving(app) as url:
        web_samples = parse_samples(httpx.get(f"{url}/metrics", timeout=10).text)
    assert sample(web_samples, "paperwire_issues", status="sent") == SUBSCRIBERS
    assert sample(web_samples, "paperwire_issues", status="planned") == 0
    assert sample(web_samples, "paperwire_oldest_unsent_issue_age_seconds") == 0
    assert sample(web_samples, "paperwire_queue_depth") == 0
    assert sample(web_samples, "paperwire_queued_issues") == 0
    swept_at = sample(
        web_samples, "paperwire_beat_job_last_success_timestamp_seconds", job="sweep-deliveries"
    )
    assert swept_at is not None and abs(swept_at - time.time()) < 60
    fetched = "paperwire_paper_fetch_papers"
    assert sample(web_samples, fetched, source="file", result="new") == 1
    assert sample(web_samples, fetched, source="file", result="rejected") == 1
    assert sample(web_samples, fetched, source="hf", result="new") is None
    # The fetch as a whole failed: not a success of its beat job.
    fetch_job = "paperwire_beat_job_last_success_timestamp_seconds"
    assert sample(web_samples, fetch_job, job="fetch-papers") is None
    # The web app serves none of the worker's figures: they are the worker port's.
    assert sample(web_samples, "paperwire_digests_sent_total") is None

    # A warm shutdown removes the metrics folder it made.
    worker.stop(timeout=20)
    assert list(temporary.glob("paperwire-metrics-*")) == []
