"""What the commands share: the two consoles, failing with one line, opening the store, reading
dates, progress bars, asking before what cannot be undone, and short counts and texts.

Like every module of the CLI, it imports the settings, the store and rich's progress bars only
inside the functions that use them: `paperwire --help` and `--version` need none of them."""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from service.errors import InvalidInput
from service.models import MAX_TRENDING_WEIGHT, MIN_TRENDING_WEIGHT
from service.observability.logs import writing_json_lines

if TYPE_CHECKING:
    from rich.progress import Progress

    from service.settings import Settings
    from service.store import Store

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
log = logging.getLogger("service.cli")

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

# The options of an interest profile, as `subscribers add` and `profiles add` take them.
KeywordOption = Annotated[
    list[str] | None, typer.Option("--keyword", "-k", help="An interest; repeat for more.")
]
TextOption = Annotated[str, typer.Option(help="A sentence about what you want to read.")]
LikeOption = Annotated[
    list[str] | None,
    typer.Option("--like", help="A stored paper liked: its id or arXiv/Hugging Face link; repeat."),
]
AuthorOption = Annotated[
    list[str] | None, typer.Option("--author", help="An author to follow; repeat for more.")
]
ExcludeOption = Annotated[
    list[str] | None, typer.Option("--exclude", help="A topic to leave out; repeat for more.")
]
TrendingWeightOption = Annotated[
    float,
    typer.Option(
        min=MIN_TRENDING_WEIGHT,
        max=MAX_TRENDING_WEIGHT,
        help="0 = only my topics … 1 = only trending.",
    ),
]


def fail(message: str) -> NoReturn:
    if writing_json_lines():
        log.error("%s", message)
    else:
        # Escaped: the message often quotes what was typed; "[/x]" must not be read as markup.
        err.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(2)


def warn(message: str) -> None:
    """A line for the person who ran the command, on stderr; with JSON logs, a log line."""
    if writing_json_lines():
        log.warning("%s", message)
    else:
        err.print(message, markup=False, soft_wrap=True)


@contextmanager
def open_store(settings: "Settings | None" = None) -> Iterator["Store"]:
    from service.settings import get_settings
    from service.store import Store

    store = Store((settings or get_settings()).database_url)
    try:
        yield store
    finally:
        store.close()


def parse_date(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid date {value!r}: use YYYY-MM-DD") from exc


def parse_datetime(value: str) -> datetime:
    """An ISO date or date-time; one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(
            f"invalid date-time {value!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def progress_bar() -> "Progress":
    """A progress display on stderr, so that stdout keeps only the results."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        # Not drawn among JSON log lines: the run's own lines tell its progress there.
        disable=writing_json_lines(),
    )


def confirm(question: str, *, doing: str, yes: bool) -> None:
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


def counted(count: int, noun: str) -> str:
    """'1 issue', '2 issues', '0 issues'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
