"""The daily paper fetch: every configured source, into the same upsert path as an import."""

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import httpx

from service.errors import InvalidInput, PaperwireError
from service.observability.logs import FIELDS
from service.settings import Settings
from service.sources import SourcePage, arxiv, huggingface
from service.sources.jsonl import read_papers_file
from service.sources.remote import SourceError, make_client
from service.store import Store

log = logging.getLogger(__name__)

LIVE_SOURCES = (huggingface.SOURCE, arxiv.SOURCE)
# Daily Papers fills up through the day and its upvotes keep moving: the daily run reads
# yesterday's list again (final signals) as well as today's (so far).
HF_DAYS_BACK = 1

# Called after each page is written: the source's name and how many papers the page held.
PageCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class FetchSummary:
    source: str
    new: int
    updated: int
    rejected: int
    # Why a source brought nothing (a weekend without arXiv announcements), or what failed.
    note: str = ""
    error: str | None = None


@dataclass
class _Tally:
    new: int = 0
    updated: int = 0
    rejected: int = 0
    notes: list[str] = field(default_factory=list)


class FetchFailed(PaperwireError):
    """A source failed after its retries. The pages before the failure are stored; the
    failing page and everything after it are not. The other sources still ran."""

    def __init__(self, summaries: list[FetchSummary]) -> None:
        self.summaries = summaries
        failed = [f"{s.source}: {s.error}" for s in summaries if s.error]
        super().__init__("; ".join(failed))

    def __reduce__(self) -> tuple[type["FetchFailed"], tuple[list[FetchSummary]]]:
        # Pickled with its summaries: Celery hands a failed task's exception to the task's
        # signals (the sources that worked are recorded) only if it survives pickling.
        return (FetchFailed, (self.summaries,))


def fetch_papers(
    store: Store,
    *,
    settings: Settings,
    now: datetime,
    sources: Sequence[str] | None = None,
    day: date | None = None,
    since: date | None = None,
    on_page: PageCallback | None = None,
) -> list[FetchSummary]:
    """Bring in papers from each source; one summary per source.

    `sources` None means the configured ones (`PAPERWIRE_PAPER_SOURCES`) plus the papers file,
    if set. `day` asks for one day's papers, `since` for every day from then to today; neither
    means today's. A source with nothing new is not an error: a day without new papers is a
    normal day, and its digests are then recorded as skipped. Raises `FetchFailed` (after
    every source has run) when any source failed.
    """
    if day is not None and since is not None:
        raise InvalidInput("give a date or a start date, not both")
    names = settings.paper_source_names if sources is None else tuple(sources)
    unknown = [name for name in names if name not in LIVE_SOURCES]
    if unknown:
        raise InvalidInput(f"unknown paper source {unknown[0]!r}: use hf or arxiv")
    today = now.date()
    if since is not None and since > today:
        raise InvalidInput(f"start date {since} is in the future")
    summaries: list[FetchSummary] = []
    if sources is None and settings.papers_file is not None:
        summaries.append(_import_file(store, settings=settings, now=now))
    if names:
        with make_client(settings) as client:
            for name in names:
                tally = _Tally()
                pages = _pages(client, name, settings=settings, today=today, day=day, since=since)
                try:
                    for page in pages(tally):
                        _write_page(store, name, page, tally=tally, now=now)
                        if on_page is not None:
                            on_page(name, len(page.papers) + len(page.rejected))
                except SourceError as exc:
                    log.error("%s: %s", name, exc)
                    summaries.append(_summary(name, tally, error=str(exc)))
                    continue
                summaries.append(_summary(name, tally))
    if not summaries:
        log.info("no paper source is configured (PAPERWIRE_PAPER_SOURCES): nothing fetched")
    for summary in summaries:
        log.info(
            "fetched from %s: %d new, %d updated, %d rejected%s",
            summary.source,
            summary.new,
            summary.updated,
            summary.rejected,
            f" ({summary.note})" if summary.note else "",
            extra={
                FIELDS: {
                    "source": summary.source,
                    "new": summary.new,
                    "updated": summary.updated,
                    "rejected": summary.rejected,
                    "failed": summary.error is not None,
                }
            },
        )
        if not summary.error and not summary.new:
            log.info("%s: no new papers", summary.source)
    if any(summary.error for summary in summaries):
        raise FetchFailed(summaries)
    return summaries


def _pages(
    client: httpx.Client,
    name: str,
    *,
    settings: Settings,
    today: date,
    day: date | None,
    since: date | None,
) -> Callable[[_Tally], Iterator[SourcePage]]:
    """The pages one source has for the asked days, as a generator taking the run's tally."""

    def hf_pages(tally: _Tally) -> Iterator[SourcePage]:
        first = since or day or today - timedelta(days=HF_DAYS_BACK)
        last = day or today
        for offset in range((last - first).days + 1):
            yield from huggingface.fetch_daily_papers(
                client, day=first + timedelta(days=offset), settings=settings
            )

    def arxiv_pages(tally: _Tally) -> Iterator[SourcePage]:
        window: tuple[date, date] | None = (since, today) if since is not None else None
        if window is None:
            window = arxiv.announcement_window(day or today, holidays=settings.arxiv_holiday_dates)
        if window is None:
            note = f"no arXiv announcement on {day or today} (weekend or holiday)"
            log.info("%s", note)
            tally.notes.append(note)
            return
        first, last = window
        yield from arxiv.fetch_new_papers(client, first=first, last=last, settings=settings)

    return hf_pages if name == huggingface.SOURCE else arxiv_pages


def _write_page(store: Store, name: str, page: SourcePage, *, tally: _Tally, now: datetime) -> None:
    # One transaction per page: a later page that fails leaves this one whole.
    counts = store.upsert_papers(page.papers, now=now)
    tally.new += counts.new
    tally.updated += counts.updated
    tally.rejected += len(page.rejected)
    for rejected in page.rejected:
        log.warning("%s: rejected %s: %s", name, rejected.entry, rejected.reason)


def _summary(name: str, tally: _Tally, *, error: str | None = None) -> FetchSummary:
    return FetchSummary(
        source=name,
        new=tally.new,
        updated=tally.updated,
        rejected=tally.rejected,
        note="; ".join(tally.notes),
        error=error,
    )


def _import_file(store: Store, *, settings: Settings, now: datetime) -> FetchSummary:
    assert settings.papers_file is not None
    parsed = read_papers_file(settings.papers_file)
    counts = store.upsert_papers(parsed.papers, now=now)
    for rejected in parsed.rejected:
        log.warning("%s: rejected: %s", rejected.entry, rejected.reason)
    return FetchSummary(
        source=str(settings.papers_file),
        new=counts.new,
        updated=counts.updated,
        rejected=len(parsed.rejected),
    )
