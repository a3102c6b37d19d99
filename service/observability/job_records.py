"""Records in Redis that the metrics read back: when each beat job last succeeded, and what
the last fetch from each paper source brought.

Written by the worker process that ran the job (`workers.observability`), read by the web
app's delivery collector at scrape time: two hashes in the broker's Redis, one field per job
or source, so any process on any machine reads the same. A Redis that restarts without its
data forgets them until each job runs again (the compose file keeps Redis's AOF).

Whatever is in the hashes is read with care: a field that is not a job or source name, or a
value that does not parse, is left out, and no more than `MAX_FIELDS` are read.
"""

# No prometheus_client here: a worker imports this module before it chooses the metrics mode
# (see workers.observability).
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import redis

BEAT_SUCCESS_KEY = "paperwire:beat-job-last-success"
PAPER_FETCH_KEY = "paperwire:paper-fetch-last"
FETCH_RESULTS = ("new", "updated", "rejected")
# The live sources keep their names; the papers file (named by its path) is `file`.
LIVE_SOURCES = ("hf", "arxiv")
FILE_SOURCE = "file"
MAX_FIELDS = 50
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class PaperFetch:
    """The last successful fetch from a source: when (Unix time) and how many papers."""

    at: float
    new: int
    updated: int
    rejected: int

    def count(self, result: str) -> int:
        return {"new": self.new, "updated": self.updated, "rejected": self.rejected}[result]


def source_label(source: str) -> str:
    return source if source in LIVE_SOURCES else FILE_SOURCE


def record_beat_success(client: redis.Redis, job: str, *, at: datetime) -> None:
    client.hset(BEAT_SUCCESS_KEY, job, repr(at.timestamp()))


def record_paper_fetch(
    client: redis.Redis, source: str, counts: Mapping[str, int], *, at: datetime
) -> None:
    value = {"at": at.timestamp(), **{result: int(counts[result]) for result in FETCH_RESULTS}}
    client.hset(PAPER_FETCH_KEY, source_label(source), json.dumps(value))


def beat_successes(raw: Mapping[bytes, bytes]) -> dict[str, float]:
    """The hash at BEAT_SUCCESS_KEY as HGETALL gives it: job name → Unix time."""
    successes: dict[str, float] = {}
    for name, value in _fields(raw):
        try:
            successes[name] = float(value)
        except ValueError:
            continue
    return successes


def paper_fetches(raw: Mapping[bytes, bytes]) -> dict[str, PaperFetch]:
    """The hash at PAPER_FETCH_KEY as HGETALL gives it: source → its last fetch."""
    fetches: dict[str, PaperFetch] = {}
    for name, value in _fields(raw):
        try:
            parsed = json.loads(value)
            fetches[name] = PaperFetch(
                at=float(parsed["at"]),
                new=int(parsed["new"]),
                updated=int(parsed["updated"]),
                rejected=int(parsed["rejected"]),
            )
        except (ValueError, TypeError, KeyError):
            continue
    return fetches


def _fields(raw: Mapping[bytes, bytes]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for name_bytes, value_bytes in list(raw.items())[:MAX_FIELDS]:
        name = name_bytes.decode("ascii", errors="replace")
        if _NAME.fullmatch(name) and len(value_bytes) <= 1024:
            fields.append((name, value_bytes.decode("ascii", errors="replace")))
    return fields
