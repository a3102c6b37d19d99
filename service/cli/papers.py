"""`paperwire papers`: import, list, fetch and show the papers in the store.

The sources and the settings are imported inside the commands that use them, to keep them out
of the start-up of every other command."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from service.cli.common import (
    counted,
    open_store,
    out,
    parse_date,
    parse_datetime,
    progress_bar,
    shorten,
    warn,
)
from service.errors import InvalidInput

if TYPE_CHECKING:
    from rich.progress import TaskID

    from service.sources.fetch import FetchFailed, FetchSummary
    from service.store import Store

app = typer.Typer(help="Papers in the store.", no_args_is_help=True)


class SourceChoice(StrEnum):
    HF = "hf"
    ARXIV = "arxiv"
    ALL = "all"


@app.command("import")
def papers_import(
    file: Annotated[Path, typer.Argument(help="A JSONL file of papers.")],
    seen_at: Annotated[
        str | None,
        typer.Option(
            help="When Paperwire saw these papers (YYYY-MM-DD[THH:MM[:SS]][±HH:MM], UTC if no "
            "offset); default now. For backfills: issues take papers seen in the days before."
        ),
    ] = None,
) -> None:
    """Add papers from a JSONL file; known ids get their trending signals updated."""
    now = parse_datetime(seen_at) if seen_at is not None else datetime.now(UTC)
    with open_store() as store:
        import_papers_file(store, file, now=now)


def import_papers_file(store: "Store", file: Path, *, now: datetime) -> None:
    """Add a JSONL file's papers as seen at `now`, with a progress bar and a summary line;
    exit status 1 when a line was rejected."""
    from service.sources.jsonl import read_papers_file

    parsed = read_papers_file(file)
    new = updated = 0
    chunk = 200
    with progress_bar() as progress:
        task = progress.add_task(f"importing {file.name}", total=len(parsed.papers))
        for start in range(0, len(parsed.papers), chunk):
            counts = store.upsert_papers(parsed.papers[start : start + chunk], now=now)
            new, updated = new + counts.new, updated + counts.updated
            progress.advance(task, len(parsed.papers[start : start + chunk]))
    for rejected in parsed.rejected:
        warn(f"{rejected.entry}: rejected: {rejected.reason}")
    out.print(f"{new} new, {updated} updated, {len(parsed.rejected)} rejected")
    if parsed.rejected:
        raise typer.Exit(1)


@app.command("list")
def papers_list(
    limit: Annotated[int, typer.Option(min=1, help="Most papers to show.")] = 20,
) -> None:
    """The most recently seen papers."""
    with open_store() as store:
        papers = store.list_papers(limit=limit)
        total = store.count_papers()
    table = Table(
        "id", "title", "published", "upvotes", "first seen", title=counted(total, "paper")
    )
    for paper in papers:
        table.add_row(
            paper.id,
            shorten(paper.title, 70),
            str(paper.published_date or ""),
            "" if paper.upvotes is None else str(paper.upvotes),
            f"{paper.first_seen_at:%Y-%m-%d %H:%M}" if paper.first_seen_at else "",
        )
    out.print(table)


@app.command("fetch")
def papers_fetch(
    source: Annotated[
        SourceChoice | None,
        typer.Option(help="hf, arxiv or all; default: PAPERWIRE_PAPER_SOURCES and the file."),
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="One day's papers (YYYY-MM-DD); default today.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Every day's papers from this date (YYYY-MM-DD) on.")
    ] = None,
) -> None:
    """Fetch papers from the live sources now; a summary per source."""
    from service.settings import get_settings
    from service.sources.fetch import LIVE_SOURCES, FetchFailed, fetch_papers

    if day is not None and since is not None:
        raise InvalidInput("give --date or --since, not both")
    fetch_day = parse_date(day) if day is not None else None
    fetch_since = parse_date(since) if since is not None else None
    if source is None:
        sources: tuple[str, ...] | None = None
    else:
        sources = LIVE_SOURCES if source is SourceChoice.ALL else (source.value,)
    settings = get_settings()
    failure: FetchFailed | None = None
    # A source's failure comes back in FetchFailed and is printed once, below; the same line
    # logged for the workers would reach stderr a second time.
    with (
        open_store(settings) as store,
        progress_bar() as progress,
        _errors_not_logged("service.sources.fetch"),
    ):
        tasks: dict[str, TaskID] = {}

        def advance(name: str, entries: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"fetching {name}", total=None)
            progress.advance(tasks[name], entries)

        try:
            summaries = fetch_papers(
                store,
                settings=settings,
                now=datetime.now(UTC),
                sources=sources,
                day=fetch_day,
                since=fetch_since,
                on_page=advance,
            )
        except FetchFailed as exc:
            failure, summaries = exc, exc.summaries
        for task in tasks.values():
            progress.update(task, total=progress.tasks[task].completed)
    _print_fetch_summaries(summaries)
    if failure is not None:
        _print_fetch_errors(failure)
        raise typer.Exit(1)


@contextmanager
def _errors_not_logged(logger_name: str) -> Iterator[None]:
    """Drop a logger's error records while a command reports those errors itself."""

    def below_error(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR

    logger = logging.getLogger(logger_name)
    logger.addFilter(below_error)
    try:
        yield
    finally:
        logger.removeFilter(below_error)


def _print_fetch_summaries(summaries: "list[FetchSummary]") -> None:
    if not summaries:
        out.print("no paper source configured (PAPERWIRE_PAPER_SOURCES, PAPERWIRE_PAPERS_FILE)")
        return
    table = Table("source", "new", "updated", "rejected", "note", title="fetched")
    for summary in summaries:
        # Only which source failed: what went wrong goes to stderr, whole and once.
        note = "failed" if summary.error else summary.note
        table.add_row(
            summary.source,
            str(summary.new),
            str(summary.updated),
            str(summary.rejected),
            shorten(note, 80),
        )
    out.print(table)


def _print_fetch_errors(failure: "FetchFailed") -> None:
    for summary in failure.summaries:
        if summary.error:
            warn(f"{summary.source}: {summary.error}")


@app.command("show")
def papers_show(paper_id: Annotated[str, typer.Argument(help="The paper's id.")]) -> None:
    """Everything stored about one paper, with the history of its trending signals."""
    with open_store() as store:
        paper = store.get_paper(paper_id)
        if paper is None:
            raise InvalidInput(f"no paper with id {paper_id!r}")
        signals = store.paper_signals(paper.id)
    fields = {
        "id": paper.id,
        "title": paper.title,
        "authors": ", ".join(paper.authors) or _count_text(paper.authors_count, "author"),
        "published": str(paper.published_date or ""),
        "source": paper.source,
        "arXiv": paper.url or "",
        "Hugging Face": paper.hf_url or "",
        "code": paper.github_repo or "",
        "categories": ", ".join(paper.categories),
        "keywords": ", ".join(paper.keywords),
        "summary": paper.summary,
        "abstract": shorten(paper.abstract, 400),
        "first seen": f"{paper.first_seen_at:%Y-%m-%d %H:%M} UTC" if paper.first_seen_at else "",
    }
    details = Table.grid(padding=(0, 2))
    for name, value in fields.items():
        if value:
            details.add_row(name, value)
    out.print(details, markup=False)
    if signals:
        table = Table("observed", "upvotes", "comments", "GitHub stars", title="trending signals")
        for signal in signals:
            table.add_row(
                f"{signal.observed_at:%Y-%m-%d %H:%M}",
                *(
                    "" if n is None else str(n)
                    for n in (signal.upvotes, signal.comments, signal.github_stars)
                ),
            )
        out.print(table)


def _count_text(count: int | None, noun: str) -> str:
    return counted(count, noun) if count else ""
