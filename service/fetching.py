"""The daily paper fetch: every configured source, into the same upsert path as an import."""

import logging
from dataclasses import dataclass
from datetime import datetime

from service.papers import read_papers_file
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchSummary:
    source: str
    new: int
    updated: int
    rejected: int


def fetch_papers(store: Store, *, settings: Settings, now: datetime) -> list[FetchSummary]:
    """Bring in the day's papers from each configured source; one summary per source.

    A source that is not configured is not an error: a day without new papers is a normal
    day, and its digests are then recorded as skipped.
    """
    summaries: list[FetchSummary] = []
    if settings.papers_file is not None:
        parsed = read_papers_file(settings.papers_file)
        counts = store.upsert_papers(parsed.papers, now=now)
        for line in parsed.rejected:
            log.warning("%s:%d: rejected: %s", settings.papers_file, line.line_number, line.reason)
        summaries.append(
            FetchSummary(
                source=str(settings.papers_file),
                new=counts.new,
                updated=counts.updated,
                rejected=len(parsed.rejected),
            )
        )
    if not summaries:
        log.info("no paper source is configured (PAPERWIRE_PAPERS_FILE): nothing fetched")
    for summary in summaries:
        log.info(
            "fetched from %s: %d new, %d updated, %d rejected",
            summary.source,
            summary.new,
            summary.updated,
            summary.rejected,
        )
    return summaries
