"""`paperwire digest preview|run`, and `paperwire rank`: a day's issues rendered, sent from this
process or through the workers, and a papers file ranked for an ad-hoc profile.

The digest path (ranking, mail, delivery) is imported inside the commands that use it: it is
most of a second of start-up that `--help`, `--version` and the other commands do without.
`workers/` (Celery) is imported by `digest run --via-celery` alone."""

import json
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.table import Table

from service.cli.common import (
    counted,
    err,
    open_store,
    out,
    parse_date,
    progress_bar,
    shorten,
    warn,
)
from service.errors import InvalidInput, ServiceUnavailable
from service.models import MAX_TRENDING_WEIGHT, MIN_TRENDING_WEIGHT, DeliveryStatus, Interests
from service.observability.logs import writing_json_lines

if TYPE_CHECKING:
    from service.delivery.pipeline import RunSummary
    from service.settings import Settings
    from service.store import Store

app = typer.Typer(help="Preview and run daily digests.", no_args_is_help=True)

UNRESOLVED = (DeliveryStatus.PLANNED, DeliveryStatus.SENDING, DeliveryStatus.RETRY)


@app.command("preview")
def digest_preview(
    email: str,
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write .eml (whole message) or .html.")
    ] = None,
) -> None:
    """Render a subscriber's issue without sending it or recording anything."""
    from service.delivery.pipeline import preview_digest
    from service.settings import get_settings
    from service.signup.addresses import normalise_email

    settings = get_settings()
    day = parse_date(issue_date)
    if out_file is not None and out_file.suffix.lower() not in (".eml", ".html"):
        raise InvalidInput(f"cannot write {out_file}: name a .eml (whole message) or .html file")
    with open_store(settings) as store:
        subscriber = store.find_subscriber(normalise_email(email))
        digest, message = preview_digest(store, subscriber, day, settings=settings)
    if message is None:
        warn(
            f"no issue for {subscriber.email} on {day}: no paper first seen in the week before "
            "matches, so that issue would be skipped; nothing written"
        )
        raise typer.Exit(1)
    if out_file is None:
        out.print(f"Subject: {message['Subject']}", markup=False)
        text_part = message.get_body(preferencelist=("plain",))
        out.print(text_part.get_content() if text_part else "", markup=False)
        return
    if out_file.suffix.lower() == ".html":
        html_part = message.get_body(preferencelist=("html",))
        content = (html_part.get_content() if html_part else "").encode("utf-8")
    else:
        content = message.as_bytes()
    try:
        out_file.write_bytes(content)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out_file}: {exc.strerror or exc}") from exc
    out.print(f"{counted(len(digest.papers), 'paper')}; written to {out_file}")


@app.command("run")
def digest_run(
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Rank and render only; send nothing.")] = False,
    via_celery: Annotated[
        bool, typer.Option(help="Enqueue to the workers and follow their progress.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="With --via-celery: stop following after seconds.")
    ] = 3600,
) -> None:
    """Send the day's issue to every confirmed subscriber due that day."""
    from service.settings import get_settings

    settings = get_settings()
    day = parse_date(issue_date)
    with open_store(settings) as store:
        if via_celery:
            unresolved = _run_day_via_celery(store, settings, day, timeout=timeout)
            if unresolved:
                raise typer.Exit(1)
            return
        summary = run_day_with_progress(store, settings, day, dry_run=dry_run)
    if _left_anyone_unsent(summary):
        raise typer.Exit(1)


def _left_anyone_unsent(summary: "RunSummary") -> bool:
    """Whether the run left someone without their issue for now: the exit status says so."""
    unsent = (
        DeliveryStatus.FAILED,
        DeliveryStatus.REFUSED,
        DeliveryStatus.RETRY,
        DeliveryStatus.IN_DOUBT,
    )
    return any(summary.outcomes[outcome] for outcome in unsent)


def _run_day_via_celery(store: "Store", settings: "Settings", day: date, *, timeout: float) -> int:
    """Plan and enqueue the day, then follow the ledger until every issue has an outcome."""
    from kombu.exceptions import OperationalError as BrokerError
    from redis import Redis, RedisError

    from service.delivery.planning import plan_day
    from workers.tasks import enqueue_batches

    # Nothing is planned for workers that cannot be reached.
    broker = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        broker.ping()
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"cannot reach the broker at {_safe_url(settings.redis_url)} ({exc}); nothing was "
            "planned. Start Redis, or run `paperwire digest run` without --via-celery to send "
            "from this process."
        ) from exc
    finally:
        broker.close()
    planned = plan_day(store, day, now=datetime.now(UTC))
    try:
        enqueue_batches(store, planned, settings=settings)
    except (BrokerError, RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"the broker at {_safe_url(settings.redis_url)} failed while {len(planned)} "
            f"issues of {day} were being enqueued ({exc}). They stay planned: the workers' "
            f"sweep enqueues them once the broker is back, or `paperwire digest run --date "
            f"{day}` sends them from this process."
        ) from exc
    out.print(f"{counted(len(planned), 'issue')} of {day} enqueued")
    return _follow_day(store, day, timeout=timeout)


def _follow_day(store: "Store", day: date, *, timeout: float) -> int:
    """Show the workers' progress on a day's issues until none is unresolved or `timeout`
    seconds have passed; how many are still unresolved."""
    deadline = time.monotonic() + timeout
    with progress_bar() as progress:
        task = progress.add_task(f"digest {day} (workers)", total=None)
        while True:
            counts = store.delivery_counts(since=day).get(day, {})
            total = sum(counts.values())
            unresolved = sum(counts.get(status, 0) for status in UNRESOLVED)
            progress.update(task, completed=total - unresolved, total=total)
            if unresolved == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    table = Table("status", "issues", title=f"digest {day}")
    for status in DeliveryStatus:
        if counts.get(status):
            table.add_row(status.value, str(counts[status]))
    out.print(table)
    if unresolved:
        warn(f"{counted(unresolved, 'issue')} still unresolved; the workers go on with them")
    return unresolved


def _safe_url(url: str) -> str:
    """A URL fit for a message: its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def run_day_with_progress(
    store: "Store", settings: "Settings", issue_date: date, *, dry_run: bool
) -> "RunSummary":
    """Send (or with `dry_run` only render) a day's issues from this process, showing progress
    and then the outcomes."""
    import asyncio

    from service.delivery.pipeline import run_day

    with progress_bar() as progress:
        task = progress.add_task(f"digest {issue_date}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = asyncio.run(
            run_day(
                store,
                issue_date=issue_date,
                settings=settings,
                dry_run=dry_run,
                on_progress=advance,
            )
        )
    print_run_summary(summary)
    return summary


def print_run_summary(summary: "RunSummary") -> None:
    """A table of outcomes on stdout; each failure's reason on stderr."""
    from service.delivery.pipeline import OUTCOMES

    always_shown = (DeliveryStatus.SENT, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED)
    table = Table("outcome", "subscribers", title=f"digest {summary.issue_date}")
    for outcome in OUTCOMES:
        if summary.outcomes[outcome] or outcome in always_shown:
            table.add_row(outcome.value, str(summary.outcomes[outcome]))
    table.add_row("total", str(summary.total), style="bold")
    out.print(table)
    if writing_json_lines():
        return  # each failure has its log line already, naming the subscriber by id
    for email, error in summary.errors.items():
        err.print(f"{email}: {error}", markup=False)


def rank(
    papers: Annotated[Path, typer.Option("--papers", help="A JSONL file of papers.")],
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", "-k", help="An interest; repeat for more.")
    ] = None,
    text: Annotated[str, typer.Option(help="A sentence about what you want to read.")] = "",
    like: Annotated[
        list[str] | None,
        typer.Option(
            "--like", metavar="PAPER_ID", help="Id of a paper of --papers you liked; repeat."
        ),
    ] = None,
    dislike: Annotated[
        list[str] | None,
        typer.Option(
            "--dislike", metavar="PAPER_ID", help="Id of a paper of --papers you disliked."
        ),
    ] = None,
    author: Annotated[
        list[str] | None, typer.Option("--author", metavar="NAME", help="An author to follow.")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="PHRASE", help="A topic to leave out; repeat."),
    ] = None,
    trending_weight: Annotated[
        float, typer.Option(min=MIN_TRENDING_WEIGHT, max=MAX_TRENDING_WEIGHT)
    ] = 0.0,
    limit: Annotated[int, typer.Option(min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank a papers file for an ad-hoc profile: keywords, a sentence, papers liked and
    disliked (ids of --papers), authors followed, topics left out."""
    from service.ranking import build_corpus_stats, rank_papers
    from service.sources.jsonl import read_papers_file

    parsed = read_papers_file(papers)
    for rejected in parsed.rejected:
        warn(f"{rejected.entry}: skipped: {rejected.reason}")
    by_id = {paper.id: paper for paper in parsed.papers}
    for option, paper_ids in (("--like", like), ("--dislike", dislike)):
        for paper_id in paper_ids or ():
            if paper_id not in by_id:
                raise InvalidInput(f"{option} {paper_id}: no paper with that id in {papers}")
    for paper_id in set(like or ()).intersection(dislike or ()):
        raise InvalidInput(f"--like and --dislike both name {paper_id}: give one verdict")
    interests = Interests(
        keywords=tuple(keyword or ()),
        text=text,
        liked=tuple(like or ()),
        disliked=tuple(dislike or ()),
        authors=tuple(author or ()),
        excluded=tuple(exclude or ()),
    )
    ranked = rank_papers(
        parsed.papers,
        interests,
        stats=build_corpus_stats(parsed.papers),
        trending_weight=trending_weight,
        limit=limit,
        today=datetime.now(UTC).date(),
        liked=[by_id[paper_id] for paper_id in interests.liked],
        disliked=[by_id[paper_id] for paper_id in interests.disliked],
    )
    if as_json:
        rows = [
            {
                "id": s.paper.id,
                "title": s.paper.title,
                "score": round(s.score, 6),
                "relevance": round(s.relevance, 6),
                "trending": round(s.trending, 6),
                "why": s.why,
            }
            for s in ranked
        ]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("#", "id", "score", "title", "why", title=counted(len(ranked), "paper"))
    for position, scored in enumerate(ranked, start=1):
        table.add_row(
            str(position),
            scored.paper.id,
            f"{scored.score:.3f}",
            shorten(scored.paper.title, 60),
            scored.why,
        )
    out.print(table)
