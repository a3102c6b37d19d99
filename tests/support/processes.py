"""The long-running commands as the compose stack runs them, for tests: `paperwire worker`
(which execs Celery) under the harness of tests/support/services.py, readers due now by the
clock a worker reads, and log output read as JSON lines."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from service.models import Interests
from service.store import Store
from tests.support.cli_runner import PAPERWIRE
from tests.support.factories import BACKGROUND_PAPERS, add_subscriber, make_paper
from tests.support.services import CeleryWorker

# Printed by Celery itself, not logged, when a worker gets SIGTERM.
CELERY_SHUTDOWN_LINE = "worker: Warm shutdown (MainProcess)"


def json_lines(text: str, *, printed: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every line of `text` but `printed` ones (and blank ones around them) as a JSON object:
    a line that is not one fails the test."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line in printed or (printed and not line):
            continue
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from exc
        assert isinstance(parsed, dict), line
        assert {"timestamp", "level", "logger", "message"} <= set(parsed), line
        datetime.fromisoformat(parsed["timestamp"].replace("Z", "+00:00"))
        lines.append(parsed)
    return lines


def due_now(store: Store, count: int, *, papers: int = 2) -> date:
    """`count` readers whose issue is due this hour, by the real clock a worker reads, and
    `papers` new papers they all want."""
    now = datetime.now(UTC)
    store.upsert_papers(BACKGROUND_PAPERS, now=now - timedelta(days=60))
    store.upsert_papers(
        [
            make_paper(id=f"2511.{n:05d}", title=f"Diffusion models, part {n}")
            for n in range(1, papers + 1)
        ],
        now=now - timedelta(hours=1),
    )
    for number in range(count):
        add_subscriber(
            store,
            f"reader{number}@example.org",
            now=now,
            time_zone="UTC",
            delivery_hour=now.hour,
            interests=Interests(keywords=("diffusion models",)),
        )
    return now.date()


def paperwire_worker(redis_url: str, directory: Path, env: dict[str, str]) -> CeleryWorker:
    """`paperwire worker` (which execs Celery) with the test harness's isolation options."""
    worker = CeleryWorker(broker_url=redis_url, directory=directory, env=env)
    worker.args = [PAPERWIRE, *worker.args[worker.args.index("worker") :]]
    return worker
