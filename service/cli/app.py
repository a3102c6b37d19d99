"""The `paperwire` command: the root of the CLI, its nouns and top-level commands joined in one
place, and `main`, which turns bad input and domain errors into one line on stderr.

The commands' modules import what only their commands need inside those commands, so that
`paperwire --help` and `--version` do not load the digest path, the web app or Celery."""

import importlib.metadata
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from service.cli import (
    db,
    deliveries,
    demo,
    digest,
    inbound,
    papers,
    profiles,
    serve,
    subscribers,
)
from service.cli.common import err, fail, out
from service.errors import PaperwireError

app = typer.Typer(help="Paperwire: trending research papers in your inbox.", no_args_is_help=True)
# The commands that run until stopped: they log every line from INFO up, like the workers.
LONG_RUNNING = frozenset({"serve", "inbound"})
# `--help` lists the commands in this order, then the nouns.
app.command("serve")(serve.serve)
app.command("worker", context_settings=serve.PASS_THROUGH)(serve.worker)
app.command("beat", context_settings=serve.PASS_THROUGH)(serve.beat)
app.command("inbound")(inbound.inbound)
app.command("stats")(deliveries.stats)
app.command("rank")(digest.rank)
app.command("demo")(demo.demo)
app.add_typer(db.app, name="db")
app.add_typer(papers.app, name="papers")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(profiles.app, name="profiles")
app.add_typer(digest.app, name="digest")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(inbound.app, name="inbox")


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"paperwire {importlib.metadata.version('paperwire')}", markup=False)
        raise typer.Exit()


@app.callback()
def _options(
    context: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Paperwire: trending research papers in your inbox."""
    _configure_logging(context.invoked_subcommand)


def _configure_logging(command: str | None) -> None:
    """Log as the settings say (text or JSON lines), before any command runs. `worker` and
    `beat` become Celery, which is configured alike (workers.celery_app)."""
    from service.observability.logs import LogRole, configure_logging
    from service.settings import get_settings

    try:
        settings = get_settings()
    except Exception:
        return  # bad settings: the command reads them too and says what is wrong, in one line
    role = LogRole.SERVICE if command in LONG_RUNNING else LogRole.COMMAND
    configure_logging(settings, role=role)


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
        fail(_usage_message(exc))
    except PaperwireError as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail("; ".join(_validation_message(problem) for problem in exc.errors()))
    except Exception as exc:
        message = _database_error_message(exc)
        if message is None:
            raise
        fail(message)
    # A command's typer.Exit(n), or --help (0); None when a command returns.
    sys.exit(status if isinstance(status, int) else 0)


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


def _database_error_message(exc: Exception) -> str | None:
    """One line for a database that cannot be reached or lacks the schema; None for any
    other exception, which stays a traceback."""
    # Imported here: SQLAlchemy is a tenth of a second of start-up, and it is loaded already
    # whenever one of its errors is raised.
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    hint = " (run `paperwire db upgrade` first)" if "no such table" in str(exc) else ""
    return f"database error: {str(exc.orig).splitlines()[0]}{hint}"
