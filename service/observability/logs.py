"""Log lines: one configuration for every Paperwire process (serve, inbound, worker, beat and the
commands), written as text or as JSON lines (`log_format`), each line with the request, task
and subscriber it is about when they are known, and nothing personal in it.

A JSON line is one object: `timestamp` (UTC, ISO 8601), `level`, `logger`, `message`, then
`request_id`, `task_id` and `subscriber_id` when known, the line's own fields (a request's
`route`, `status` and `duration_ms`; a batch's counts), and `exception` for a traceback.

Personal data is taken out in one place, `RedactPersonalData`, a filter on the one handler every
line goes through, whoever wrote it (Paperwire, uvicorn, Celery): anything shaped like an email
address, the user and password of a URL, and the token of a link's path (`/u/…` becomes
`/u/{token}`). Only `log_personal_data`, for debugging, keeps them.

The request, task and subscriber come from a context variable (`log_context`), so the code
that logs need not pass them along.

`RelayOutage` says a relay outage once: the first send that cannot reach the relay logs a
warning, the ones after it nothing, until the relay answers again; then one line says for how
many sends and how long it was away. It counts per process: each worker process of a pool
says so once for itself.
"""

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.settings import Settings

# The handler this module installs on the root logger, found again by its name.
HANDLER_NAME = "paperwire"
CONTEXT_FIELDS = ("request_id", "task_id", "subscriber_id")
# A record's own fields for a JSON line: `log.info(..., extra={FIELDS: {"status": 200}})`.
FIELDS = "fields"
# Loggers that say at INFO what a Paperwire line says already (once per page, connection or
# plugin).
QUIETER_LOGGERS = ("httpx", "httpcore", "alembic.runtime.plugins")

# The user and password of a URL (smtp://user:password@relay…): the user is often an address.
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
# An address, or one percent-encoded in a URL (`%40`). No `/`, `=` or `&` in the local part,
# so that a path or a query around an address is kept.
_ADDRESS = re.compile(r"[\w.!#$%'*+^`{|}~-]+(?:@|%40)(?:[\w-]+\.)+[\w-]{2,}")
# The token of a link (service.signup.links, service.web): its path segment after the prefix.
_LINK_TOKEN = re.compile(
    r"(/(?:u|m|c|a|f|archive|feed|api/preferences|api/unsubscribe)/)[A-Za-z0-9_-]{8,}"
)
ADDRESS_MARK = "[address]"
TOKEN_MARK = "{token}"
CREDENTIALS_MARK = "[credentials]@"


class LogRole(StrEnum):
    """What kind of process logs: one that runs for long, or a command someone started."""

    # serve, inbound, worker, beat: every line from INFO up, with its time and logger.
    SERVICE = "service"
    # A command: in text, its warnings and errors only ("warning: …"; its results are on
    # stdout); in JSON, every line from INFO up, for a log pipeline that reads cron's runs.
    COMMAND = "command"


@dataclass(frozen=True)
class LogContext:
    request_id: str | None = None
    task_id: str | None = None
    # Noted on a request's context when one of its links is read (`note_subscriber`).
    subscriber_id: int | None = None


@dataclass
class _RequestSubscriber:
    """Set by `note_subscriber` anywhere inside a request, read by the request's own line."""

    subscriber_id: int | None = None


_CONTEXT: ContextVar[LogContext | None] = ContextVar("paperwire_log_context", default=None)
# A mutable cell rather than a value: a request's route may run in a copy of its context (a
# thread, a task), where setting a variable would not reach the request's own line.
_REQUEST_SUBSCRIBER: ContextVar[_RequestSubscriber | None] = ContextVar(
    "paperwire_request_subscriber", default=None
)


@contextmanager
def log_context(
    *, request_id: str | None = None, task_id: str | None = None, subscriber_id: int | None = None
) -> Iterator[None]:
    """Lines logged inside name this request, task or subscriber (None: as outside)."""
    token = bind_log_context(request_id=request_id, task_id=task_id, subscriber_id=subscriber_id)
    # A new request starts with no subscriber noted.
    cell = _REQUEST_SUBSCRIBER.set(_RequestSubscriber()) if request_id is not None else None
    try:
        yield
    finally:
        if cell is not None:
            _REQUEST_SUBSCRIBER.reset(cell)
        unbind_log_context(token)


def bind_log_context(
    *, request_id: str | None = None, task_id: str | None = None, subscriber_id: int | None = None
) -> Token[LogContext | None]:
    """As `log_context`, for a caller whose start and end are two calls (Celery's signals
    before and after a task); give the token back to `unbind_log_context`."""
    current = _CONTEXT.get() or LogContext()
    return _CONTEXT.set(
        LogContext(
            request_id=request_id if request_id is not None else current.request_id,
            task_id=task_id if task_id is not None else current.task_id,
            subscriber_id=subscriber_id if subscriber_id is not None else current.subscriber_id,
        )
    )


def unbind_log_context(token: Token[LogContext | None]) -> None:
    _CONTEXT.reset(token)


def note_subscriber(subscriber_id: int) -> None:
    """The request being answered is about this subscriber (a link of theirs was read)."""
    cell = _REQUEST_SUBSCRIBER.get()
    if cell is not None:
        cell.subscriber_id = subscriber_id


def current_log_context() -> LogContext:
    context = _CONTEXT.get() or LogContext()
    cell = _REQUEST_SUBSCRIBER.get()
    if context.subscriber_id is None and cell is not None and cell.subscriber_id is not None:
        return replace(context, subscriber_id=cell.subscriber_id)
    return context


def redact(text: str) -> str:
    """`text` without addresses, URL credentials and link tokens."""
    text = _URL_CREDENTIALS.sub(lambda match: match.group(1) + CREDENTIALS_MARK, text)
    text = _ADDRESS.sub(ADDRESS_MARK, text)
    return _LINK_TOKEN.sub(lambda match: match.group(1) + TOKEN_MARK, text)


class AddLogContext(logging.Filter):
    """Puts the request, task and subscriber of the current context on each record, unless
    the line gave its own (`extra={"subscriber_id": 42}`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_log_context()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(context, name))
        return True


class RedactPersonalData(logging.Filter):
    """Takes addresses, URL credentials and link tokens out of a record's message, its
    traceback and its fields, before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep what there is
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, Mapping):
            setattr(record, FIELDS, {key: _redacted(value) for key, value in fields.items()})
        return True


def _redacted(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: value for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None
    }


class JsonLines(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context_of(record),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                line.setdefault(str(key), value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextLines(logging.Formatter):
    """`2026-11-25T07:00:00.123Z INFO service.web.access: GET /u/{token} 200 3.1 ms
    [request_id=…]`, a traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        context = " ".join(f"{name}={value}" for name, value in _context_of(record).items())
        if context:
            text += f" [{context}]"
        return text + self._traceback(record)

    def _traceback(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        extra = [part for part in (record.exc_text, record.stack_info) if part]
        return "".join(f"\n{part}" for part in extra)


class CommandLines(TextLines):
    """`warning: …`, as a command's `error: …` lines read."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}" + self._traceback(record)


def log_formatter(settings: "Settings", role: LogRole) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonLines()
    return TextLines() if role is LogRole.SERVICE else CommandLines()


def default_level(settings: "Settings", role: LogRole) -> int:
    if role is LogRole.COMMAND and settings.log_format == "text":
        return logging.WARNING
    return logging.INFO


def configure_logging(
    settings: "Settings",
    *,
    role: LogRole,
    level: int | str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log line of this process to `stream` (stderr) as `settings` say. Called
    again, it replaces its own handler and leaves others (a test runner's) in place."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(AddLogContext())
    if not settings.log_personal_data:
        handler.addFilter(RedactPersonalData())
    handler.setFormatter(log_formatter(settings, role))
    root = logging.getLogger()
    for installed in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(installed)
    root.addHandler(handler)
    root.setLevel(level or default_level(settings, role))
    for name in QUIETER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Python's own warnings (a deprecation in a library) become log lines like any other.
    logging.captureWarnings(True)
    return handler


def writing_json_lines() -> bool:
    """Whether this process's log lines are JSON: a command then says on stderr only what
    its log says, so that every line there is one a log pipeline can read."""
    return any(
        handler.get_name() == HANDLER_NAME and isinstance(handler.formatter, JsonLines)
        for handler in logging.getLogger().handlers
    )


class RelayOutage:
    """Says once that sends cannot reach the relay, and once that they reach it again."""

    def __init__(self, log: logging.Logger, *, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.clock = clock
        self.failures = 0
        self.since = 0.0

    def failed(self, reason: str) -> None:
        if self.failures == 0:
            self.since = self.clock()
            self.log.warning(
                "cannot reach the mail relay: %s (not said again until it answers)", reason
            )
        self.failures += 1

    def answered(self) -> None:
        if self.failures == 0:
            return
        self.log.info(
            "mail relay back after %d failed %s, %.0f s",
            self.failures,
            "send" if self.failures == 1 else "sends",
            self.clock() - self.since,
        )
        self.failures = 0
