"""The admin CLI: a few lines over the functions the workers and the web app use."""

import asyncio
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.exc import OperationalError, ProgrammingError

from service.delivery.pipeline import Outcome, RunSummary, deliver_batch, preview_digest, run_day
from service.delivery.planning import plan_day
from service.errors import InvalidInput, PaperwireError, ServiceUnavailable
from service.models import (
    DEFAULT_TRENDING_WEIGHT,
    MAX_TRENDING_WEIGHT,
    MIN_TRENDING_WEIGHT,
    ConsentEvent,
    DeliveryStatus,
    Frequency,
    Interests,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.ranking import build_corpus_stats, rank_papers
from service.settings import Settings, get_settings
from service.signup.addresses import normalise_email
from service.signup.subscriptions import erase_subscriber, export_subscriber, is_suppressed
from service.sources.fetch import LIVE_SOURCES, FetchFailed, FetchSummary, fetch_papers
from service.sources.jsonl import read_papers_file
from service.store import Store

SAMPLE_PAPERS = Path(__file__).parent.parent / "sample_data" / "papers.jsonl"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

app = typer.Typer(help="Paperwire: trending research papers in your inbox.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
papers_app = typer.Typer(help="Papers in the store.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Subscribers and their interests.", no_args_is_help=True)
digest_app = typer.Typer(help="Preview and run daily digests.", no_args_is_help=True)
deliveries_app = typer.Typer(help="The delivery ledger.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(papers_app, name="papers")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(digest_app, name="digest")
app.add_typer(deliveries_app, name="deliveries")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"paperwire {importlib.metadata.version('paperwire')}", markup=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Paperwire: trending research papers in your inbox."""


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


def main() -> None:
    """Entry point: bad input and domain errors become one line on stderr and exit status 2."""
    try:
        # Not standalone: Typer would print a bad command line as a boxed panel of several lines.
        status = app(standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group named without a command: its help is the answer, printed already with
            # rich, or the message without it (Typer tells this error apart by name too).
            if exc.format_message():
                typer.echo(exc.format_message(), err=True)
            sys.exit(2)
        _fail(_usage_message(exc))
    except PaperwireError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        _fail("; ".join(_validation_message(problem) for problem in exc.errors()))
    except (OperationalError, ProgrammingError) as exc:
        hint = " (run `paperwire db upgrade` first)" if "no such table" in str(exc) else ""
        _fail(f"database error: {str(exc.orig).splitlines()[0]}{hint}")
    # A command's typer.Exit(n), or --help (0); None when a command returns.
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str) -> NoReturn:
    # Escaped: the message often quotes what was typed, and "[/x]" must not be read as markup.
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(2)


def _usage_message(exc: typer.TyperException) -> str:
    """Typer's complaint about a command line, on one line, saying what is allowed."""
    param = getattr(exc, "param", None)
    allowed = _allowed_range(param)
    if param is not None and allowed is not None:
        message = f"invalid value for {param.get_error_hint()}: must be {allowed}"
    else:
        message = exc.format_message().replace("Value error, ", "")
    message = " ".join(message.split()).removesuffix(".")
    message = message[:1].lower() + message[1:]
    # A value out of its choices or range is answered above; for an unknown option or command,
    # or a missing argument, the command's help lists what there is.
    about_a_value = isinstance(exc, typer.BadParameter) and not message.startswith("missing")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and not about_a_value:
        message += f"; see '{ctx.command_path} --help'"
    return message


def _allowed_range(param: object) -> str | None:
    """'a whole number from 0 to 23' for an option declared with min= and max=."""
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    descriptor = getattr(param, "type_descriptor", None)
    kind = "a whole number" if getattr(descriptor, "annotation", None) is int else "a number"
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} of at least {low}"
    if high is not None:
        return f"{kind} of at most {high}"
    return None


def _validation_message(problem: object) -> str:
    assert isinstance(problem, dict)
    where = ".".join(str(part) for part in problem["loc"])
    text = str(problem["msg"]).removeprefix("Value error, ")
    return f"{where}: {text}" if where else text


@contextmanager
def _open_store(settings: Settings | None = None) -> Iterator[Store]:
    store = Store((settings or get_settings()).database_url)
    try:
        yield store
    finally:
        store.close()


def _parse_date(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid date {value!r}: use YYYY-MM-DD") from exc


def _parse_datetime(value: str) -> datetime:
    """An ISO date or date-time; one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"invalid date-time {value!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


# -- db ---------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    with _open_store() as store:
        before = _schema_revision(store)
        store.upgrade()
        after = _schema_revision(store)
        where = store.url.render_as_string(hide_password=True)
    if before is None:
        out.print(f"created the schema at revision {after} ({where})")
    elif before == after:
        out.print(f"already at revision {after}, nothing to do ({where})")
    else:
        out.print(f"migrated the schema from revision {before} to {after} ({where})")


def _schema_revision(store: Store) -> str | None:
    """The Alembic revision of the store's schema; None before there is one."""
    # Imported here, as in Store.upgrade: only this command needs Alembic.
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# -- papers -----------------------------------------------------------------------------------


@papers_app.command("import")
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
    now = _parse_datetime(seen_at) if seen_at is not None else datetime.now(UTC)
    with _open_store() as store:
        _import_papers(store, file, now=now)


def _import_papers(store: Store, file: Path, *, now: datetime) -> None:
    parsed = read_papers_file(file)
    new = updated = 0
    chunk = 200
    with _progress() as progress:
        task = progress.add_task(f"importing {file.name}", total=len(parsed.papers))
        for start in range(0, len(parsed.papers), chunk):
            counts = store.upsert_papers(parsed.papers[start : start + chunk], now=now)
            new, updated = new + counts.new, updated + counts.updated
            progress.advance(task, len(parsed.papers[start : start + chunk]))
    for line in parsed.rejected:
        err.print(f"{file}:{line.line_number}: rejected: {line.reason}", markup=False)
    out.print(f"{new} new, {updated} updated, {len(parsed.rejected)} rejected")
    if parsed.rejected:
        raise typer.Exit(1)


@papers_app.command("list")
def papers_list(
    limit: Annotated[int, typer.Option(min=1, help="Most papers to show.")] = 20,
) -> None:
    """The most recently seen papers."""
    with _open_store() as store:
        papers = store.list_papers(limit=limit)
        total = store.count_papers()
    table = Table(
        "id", "title", "published", "upvotes", "first seen", title=_counted(total, "paper")
    )
    for paper in papers:
        table.add_row(
            paper.id,
            _shorten(paper.title, 70),
            str(paper.published_date or ""),
            "" if paper.upvotes is None else str(paper.upvotes),
            f"{paper.first_seen_at:%Y-%m-%d %H:%M}" if paper.first_seen_at else "",
        )
    out.print(table)


class SourceChoice(StrEnum):
    HF = "hf"
    ARXIV = "arxiv"
    ALL = "all"


@papers_app.command("fetch")
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
    if day is not None and since is not None:
        raise InvalidInput("give --date or --since, not both")
    fetch_day = _parse_date(day) if day is not None else None
    fetch_since = _parse_date(since) if since is not None else None
    if source is None:
        sources: tuple[str, ...] | None = None
    else:
        sources = LIVE_SOURCES if source is SourceChoice.ALL else (source.value,)
    settings = get_settings()
    failure: FetchFailed | None = None
    # A source's failure comes back in FetchFailed and is printed once, below; the same line
    # logged for the workers would reach stderr a second time.
    with (
        _open_store(settings) as store,
        _progress() as progress,
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
        for summary in failure.summaries:
            if summary.error:
                err.print(f"{summary.source}: {summary.error}", markup=False, soft_wrap=True)
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


def _print_fetch_summaries(summaries: list[FetchSummary]) -> None:
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
            _shorten(note, 80),
        )
    out.print(table)


@papers_app.command("show")
def papers_show(paper_id: Annotated[str, typer.Argument(help="The paper's id.")]) -> None:
    """Everything stored about one paper, with the history of its trending signals."""
    with _open_store() as store:
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
        "categories": ", ".join(paper.categories),
        "keywords": ", ".join(paper.keywords),
        "summary": paper.summary,
        "abstract": _shorten(paper.abstract, 400),
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
    return _counted(count, noun) if count else ""


def _counted(count: int, noun: str) -> str:
    """'1 issue', '2 issues', '0 issues'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- subscribers ------------------------------------------------------------------------------


@subscribers_app.command("add")
def subscribers_add(
    email: str,
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", "-k", help="An interest; repeat for more.")
    ] = None,
    text: Annotated[str, typer.Option(help="A sentence about what you want to read.")] = "",
    time_zone: Annotated[str | None, typer.Option(help="IANA time zone.")] = None,
    hour: Annotated[int | None, typer.Option(min=0, max=23, help="Local delivery hour.")] = None,
    frequency: Annotated[Frequency, typer.Option(help="daily or weekly.")] = Frequency.DAILY,
    weekday: Annotated[Weekday, typer.Option(help="Weekday of weekly issues.")] = Weekday.MON,
    trending_weight: Annotated[
        float,
        typer.Option(
            min=MIN_TRENDING_WEIGHT,
            max=MAX_TRENDING_WEIGHT,
            help="0 = only my topics … 1 = only trending.",
        ),
    ] = DEFAULT_TRENDING_WEIGHT,
) -> None:
    """Add a confirmed subscriber (the admin vouches for consent)."""
    settings = get_settings()
    preferences = SubscriptionPreferences(
        interests=Interests(keywords=tuple(keyword or ()), text=text),
        time_zone=time_zone or settings.default_time_zone,
        delivery_hour=settings.default_delivery_hour if hour is None else hour,
        frequency=frequency,
        weekday=WEEKDAYS.index(weekday),
        trending_weight=trending_weight,
    )
    address = normalise_email(email)
    with _open_store(settings) as store:
        if is_suppressed(store, address, settings=settings):
            raise InvalidInput(
                f"{address} was erased at its owner's request; only they can sign up again"
            )
        now = datetime.now(UTC)
        # The consent record says who vouched for this one: the admin, not the person.
        vouched = ConsentEvent(event="confirmed", at=now, via="admin CLI (subscribers add)")
        subscriber = store.add_subscriber(
            address, preferences, status=SubscriptionStatus.CONFIRMED, now=now, consent=[vouched]
        )
    out.print(f"added {subscriber.email} (id {subscriber.id})")


@subscribers_app.command("list")
def subscribers_list(
    status: Annotated[SubscriptionStatus | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """All subscribers, or those with one status."""
    with _open_store() as store:
        subscribers = store.list_subscribers(status=status)
    table = Table("id", "email", "status", "interests", "schedule", "trending", title="subscribers")
    for subscriber in subscribers:
        table.add_row(
            str(subscriber.id),
            subscriber.email,
            subscriber.status,
            _shorten(_describe_interests(subscriber.interests), 50),
            _describe_schedule(subscriber.frequency, subscriber.weekday, subscriber.delivery_hour)
            + f" {subscriber.time_zone}",
            f"{subscriber.trending_weight:.2f}",
        )
    out.print(table)


@subscribers_app.command("show")
def subscribers_show(email: str) -> None:
    """One subscriber with their recent issues."""
    with _open_store() as store:
        subscriber = store.find_subscriber(normalise_email(email))
        deliveries = store.list_deliveries(subscriber_id=subscriber.id)
    out.print(f"[bold]{subscriber.email}[/bold] (id {subscriber.id}) — {subscriber.status}")
    out.print(f"interests: {_describe_interests(subscriber.interests)}", markup=False)
    schedule = _describe_schedule(
        subscriber.frequency, subscriber.weekday, subscriber.delivery_hour
    )
    out.print(f"schedule: {schedule} {subscriber.time_zone}")
    out.print(f"trending weight: {subscriber.trending_weight:.2f}")
    out.print(f"subscribed: {subscriber.created_at:%Y-%m-%d %H:%M} UTC")
    table = Table("issue", "status", "papers", "attempts", "message id", "error", title="issues")
    for delivery in deliveries[-14:]:
        table.add_row(
            str(delivery.issue_date),
            delivery.status,
            str(len(delivery.paper_ids)),
            str(delivery.attempts),
            delivery.message_id or "",
            _shorten(delivery.last_error or "", 40),
        )
    out.print(table)


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _confirm(question: str, *, doing: str, yes: bool) -> None:
    """Ask before what cannot be undone. With nobody at a terminal to answer (cron, CI, a
    pipe), refuse rather than read an empty answer: a script must say --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"{doing} needs confirmation, and stdin is not a terminal to ask at: pass --yes"
        )
    if not typer.confirm(question):
        raise typer.Exit(1)


@subscribers_app.command("remove")
def subscribers_remove(email: str, yes: YesOption = False) -> None:
    """Delete a subscriber and their delivery history."""
    address = normalise_email(email)
    with _open_store() as store:
        store.find_subscriber(address)
        _confirm(f"Delete {address} and their history?", doing=f"deleting {address}", yes=yes)
        store.remove_subscriber(address)
    out.print(f"removed {address}")


@subscribers_app.command("export")
def subscribers_export(email: str) -> None:
    """Everything held about a subscriber, as JSON on stdout."""
    with _open_store() as store:
        subscriber = store.find_subscriber(normalise_email(email))
        data = export_subscriber(store, subscriber.id)
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@subscribers_app.command("erase")
def subscribers_erase(email: str, yes: YesOption = False) -> None:
    """Delete a subscriber and their history, keeping only a hashed suppression entry."""
    settings = get_settings()
    address = normalise_email(email)
    with _open_store(settings) as store:
        subscriber = store.find_subscriber(address)
        question = f"Erase {address} and everything held about them, for good?"
        _confirm(question, doing=f"erasing {address}", yes=yes)
        erase_subscriber(store, subscriber.id, settings=settings, now=datetime.now(UTC))
    out.print(f"erased {address}")


# -- web --------------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app (signup, confirm, manage, unsubscribe, archive, JSON API)."""
    # Imported here: the web stack is start-up time only this command needs.
    import uvicorn

    from service.web import create_app

    # X-Forwarded-For is read by the app itself, from the proxies in trusted_proxies only.
    uvicorn.run(
        create_app(get_settings()),
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        log_level="info",
        # Access lines would keep every link's token (a key to someone's subscription) and
        # every visitor's address in the logs.
        access_log=False,
    )


# -- digest -----------------------------------------------------------------------------------


@digest_app.command("preview")
def digest_preview(
    email: str,
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write .eml (whole message) or .html.")
    ] = None,
) -> None:
    """Render a subscriber's issue without sending it or recording anything."""
    settings = get_settings()
    day = _parse_date(issue_date)
    if out_file is not None and out_file.suffix.lower() not in (".eml", ".html"):
        raise InvalidInput(f"cannot write {out_file}: name a .eml (whole message) or .html file")
    with _open_store(settings) as store:
        subscriber = store.find_subscriber(normalise_email(email))
        digest, message = preview_digest(store, subscriber, day, settings=settings)
    if message is None:
        err.print(
            f"no issue for {subscriber.email} on {day}: no paper first seen in the week before "
            "matches, so that issue would be skipped; nothing written",
            markup=False,
            soft_wrap=True,
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
    out.print(f"{_counted(len(digest.papers), 'paper')}; written to {out_file}")


@digest_app.command("run")
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
    settings = get_settings()
    day = _parse_date(issue_date)
    with _open_store(settings) as store:
        if via_celery:
            unresolved = _run_day_via_celery(store, settings, day, timeout=timeout)
            if unresolved:
                raise typer.Exit(1)
            return
        summary = _run_day(store, settings, day, dry_run=dry_run)
    if any(summary.outcomes[outcome] for outcome in UNSENT_OUTCOMES):
        raise typer.Exit(1)


UNRESOLVED = (DeliveryStatus.PLANNED, DeliveryStatus.SENDING, DeliveryStatus.RETRY)
# Outcomes of a run that leave someone without their issue for now: the exit status says so.
UNSENT_OUTCOMES = (Outcome.FAILED, Outcome.REFUSED, Outcome.RETRY, Outcome.IN_DOUBT)


def _run_day_via_celery(store: Store, settings: Settings, day: date, *, timeout: float) -> int:
    """Plan and enqueue the day, then follow the ledger until every issue has an outcome."""
    # Imported here: only this command needs Celery, and it costs a second of start-up.
    from kombu.exceptions import OperationalError as BrokerError
    from redis import Redis, RedisError

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
    out.print(f"{_counted(len(planned), 'issue')} of {day} enqueued")
    deadline = time.monotonic() + timeout
    with _progress() as progress:
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
        err.print(f"{_counted(unresolved, 'issue')} still unresolved; the workers go on with them")
    return unresolved


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(context: typer.Context) -> None:
    """Run a Celery worker (arguments go to `celery worker`)."""
    _exec_celery("worker", context.args)


@app.command("beat", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(context: typer.Context) -> None:
    """Run the Celery beat scheduler; run exactly one (arguments go to `celery beat`)."""
    _exec_celery("beat", context.args)


def _exec_celery(command: str, args: list[str]) -> NoReturn:
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", command, *args]
    os.execv(sys.executable, argv)


@app.command("stats")
def stats(
    since: Annotated[
        str | None, typer.Option(help="First issue date, YYYY-MM-DD; a week ago.")
    ] = None,
) -> None:
    """Issues per day and ledger status; subscribers per status and hard bounces."""
    first = _parse_date(since) if since else datetime.now(UTC).date() - timedelta(days=6)
    with _open_store() as store:
        counts = store.delivery_counts(since=first)
        subscribers, bounces = store.subscriber_counts()
    statuses = list(DeliveryStatus)
    table = Table("issue date", *(status.value for status in statuses), title="deliveries")
    for issue_date in sorted(counts, reverse=True):
        row = counts[issue_date]
        table.add_row(str(issue_date), *(str(row.get(status, 0)) for status in statuses))
    out.print(table)
    people = ", ".join(f"{subscribers.get(s, 0)} {s.value}" for s in SubscriptionStatus)
    out.print(f"subscribers: {people}; hard bounces: {bounces}")


AWAITING_RETRY = (DeliveryStatus.RETRY,)


@deliveries_app.command("list")
def deliveries_list(
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """The ledger rows of one issue date."""
    day = _parse_date(issue_date)
    with _open_store() as store:
        deliveries = store.list_deliveries(issue_date=day, status=status)
        emails = {s.id: s.email for s in store.list_subscribers()}
    table = Table("subscriber", "status", "attempts", "papers", "next attempt (UTC)", "error")
    for delivery in deliveries:
        # Only an issue waiting to be tried again has a next attempt worth showing; other rows
        # may keep the time of an earlier retry, which means nothing now.
        next_attempt = delivery.next_attempt_at if delivery.status in AWAITING_RETRY else None
        table.add_row(
            emails.get(delivery.subscriber_id, str(delivery.subscriber_id)),
            delivery.status,
            str(delivery.attempts),
            str(len(delivery.paper_ids)),
            f"{next_attempt:%Y-%m-%d %H:%M}" if next_attempt else "",
            _shorten(delivery.last_error or "", 60),
            end_section=False,
        )
    table.title = f"{_counted(len(deliveries), 'issue')} of {day}"
    out.print(table)


@deliveries_app.command("retry")
def deliveries_retry(
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    status: Annotated[
        list[DeliveryStatus] | None,
        typer.Option(
            help="Statuses to retry (repeatable); failed and expired by default. refused "
            "(permanent SMTP refusals) and in_doubt (a copy may have arrived) only when named."
        ),
    ] = None,
    now_: Annotated[
        bool, typer.Option("--now", help="Send them from this process instead of the workers.")
    ] = False,
) -> None:
    """Make failed (or other finished) issues of a day go out again; only to subscribers
    still confirmed."""
    settings = get_settings()
    day = _parse_date(issue_date)
    statuses = status or list(DEFAULT_RETRY_STATUSES)
    with _open_store(settings) as store:
        reopened = store.reopen_issues(issue_date=day, statuses=statuses, now=datetime.now(UTC))
        out.print(f"{_counted(len(reopened), 'issue')} of {day} reopened")
        left = store.delivery_counts(since=day).get(day, {})
        for held_back in (DeliveryStatus.REFUSED, DeliveryStatus.IN_DOUBT):
            if left.get(held_back) and held_back not in statuses:
                out.print(
                    f"{_counted(left[held_back], held_back.value + ' issue')} left alone "
                    f"(add --status {held_back.value} to send them again)"
                )
        if now_ and reopened:
            summary = asyncio.run(deliver_batch(store, reopened, settings=settings))
            _print_summary(summary)
        elif reopened:
            out.print("the workers' next sweep sends them (within 5 minutes)")


# Finished without being sent, and worth sending again once what failed is fixed. Not refused
# issues (the relay refused them for good: a hard bounce would only count twice) nor in-doubt
# ones (the subscriber may have a copy) unless named.
DEFAULT_RETRY_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)


def _safe_url(url: str) -> str:
    """A URL fit for a message: its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _run_day(store: Store, settings: Settings, issue_date: date, *, dry_run: bool) -> RunSummary:
    with _progress() as progress:
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
    _print_summary(summary)
    return summary


def _print_summary(summary: RunSummary) -> None:
    table = Table("outcome", "subscribers", title=f"digest {summary.issue_date}")
    for outcome in Outcome:
        if summary.outcomes[outcome] or outcome in (Outcome.SENT, Outcome.SKIPPED, Outcome.FAILED):
            table.add_row(outcome.value, str(summary.outcomes[outcome]))
    table.add_row("total", str(summary.total), style="bold")
    out.print(table)
    for email, error in summary.errors.items():
        err.print(f"{email}: {error}", markup=False)


# -- rank -------------------------------------------------------------------------------------


@app.command("rank")
def rank(
    papers: Annotated[Path, typer.Option("--papers", help="A JSONL file of papers.")],
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", "-k", help="An interest; repeat for more.")
    ] = None,
    text: Annotated[str, typer.Option(help="A sentence about what you want to read.")] = "",
    trending_weight: Annotated[
        float, typer.Option(min=MIN_TRENDING_WEIGHT, max=MAX_TRENDING_WEIGHT)
    ] = 0.0,
    limit: Annotated[int, typer.Option(min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank a papers file for an ad-hoc profile."""
    parsed = read_papers_file(papers)
    for line in parsed.rejected:
        err.print(f"{papers}:{line.line_number}: skipped: {line.reason}", markup=False)
    interests = Interests(keywords=tuple(keyword or ()), text=text)
    ranked = rank_papers(
        parsed.papers,
        interests,
        stats=build_corpus_stats(parsed.papers),
        trending_weight=trending_weight,
        limit=limit,
        today=datetime.now(UTC).date(),
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
    table = Table("#", "id", "score", "title", "why", title=_counted(len(ranked), "paper"))
    for position, scored in enumerate(ranked, start=1):
        table.add_row(
            str(position),
            scored.paper.id,
            f"{scored.score:.3f}",
            _shorten(scored.paper.title, 60),
            scored.why,
        )
    out.print(table)


# -- demo -------------------------------------------------------------------------------------

DEMO_SUBSCRIBERS: tuple[tuple[str, SubscriptionPreferences], ...] = (
    (
        "ada@example.org",
        SubscriptionPreferences(
            interests=Interests(keywords=("diffusion models", "consistency models")),
            time_zone="Europe/London",
            trending_weight=0.2,
        ),
    ),
    (
        "grace@example.org",
        SubscriptionPreferences(
            interests=Interests(
                keywords=("reinforcement learning from human feedback", "preference optimization"),
                text="Aligning language models with what people want.",
            ),
            time_zone="America/New_York",
            trending_weight=0.4,
        ),
    ),
    (
        "alan@example.org",
        SubscriptionPreferences(
            interests=Interests(keywords=("graph neural networks", "recommender systems")),
            time_zone="Asia/Tokyo",
            trending_weight=0.0,
        ),
    ),
    (
        "katherine@example.org",
        SubscriptionPreferences(time_zone="America/Los_Angeles", trending_weight=1.0),
    ),
    (
        "edsger@example.org",
        SubscriptionPreferences(
            interests=Interests(
                keywords=("continual learning", "catastrophic forgetting", "robot learning")
            ),
            time_zone="Europe/Amsterdam",
            trending_weight=0.5,
        ),
    ),
)


@app.command("demo")
def demo(
    var_dir: Annotated[Path, typer.Option("--var", help="Folder for the demo's state.")] = Path(
        "var"
    ),
) -> None:
    """Fresh store in ./var, sample papers and subscribers, today's run into the outbox."""
    database = var_dir / "paperwire.db"
    outbox = var_dir / "outbox"
    for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(outbox, ignore_errors=True)
    settings = get_settings().model_copy(
        update={"database_url": f"sqlite:///{database}", "mail_url": f"file://{outbox}"}
    )
    with _open_store(settings) as store:
        store.upgrade()
        now = datetime.now(UTC)
        _import_papers(store, SAMPLE_PAPERS, now=now)
        for email, preferences in DEMO_SUBSCRIBERS:
            store.add_subscriber(email, preferences, status=SubscriptionStatus.CONFIRMED, now=now)
        out.print(f"{_counted(len(DEMO_SUBSCRIBERS), 'sample subscriber')} added")
        _run_day(store, settings, now.date(), dry_run=False)
    out.print(f"open {(outbox / 'index.html').resolve()}")


def _describe_interests(interests: Interests) -> str:
    if interests.is_empty:
        return "(none: trending digest)"
    parts = [f"“{keyword}”" for keyword in interests.keywords]
    if interests.text:
        parts.append(interests.text)
    return ", ".join(parts)


def _describe_schedule(frequency: Frequency, weekday: int, hour: int) -> str:
    when = "daily" if frequency is Frequency.DAILY else f"weekly on {WEEKDAYS[weekday]}"
    return f"{when} at {hour:02d}:00"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
