"""What the Celery processes tell an operator, through Celery's signals: their log lines, set up
as every Paperwire process's are (text or JSON lines, nothing personal; see
`service.observability.logs`) and naming the task each line comes from; and beat's heartbeat.

Celery sets up no logging of its own while a `setup_logging` receiver is connected: the worker,
its pool processes and beat all log through Paperwire's one handler. One line escapes it: the
"worker: Warm shutdown (MainProcess)" that Celery prints itself when it gets SIGTERM.

Beat's heartbeat is a file (`beat_heartbeat_file`) it touches each time it has handed a task
to the broker. A task of its own, `paperwire.beat_heartbeat`, is due every
`beat_heartbeat_seconds`, so a beat that schedules touches the file at least that often; the
container's health check fails once the file is older than a few of those. Only beat touches
it: workers publish tasks too (batches), and they would make a stopped beat look alive.
"""

import logging
from contextvars import Token
from datetime import UTC, datetime
from pathlib import Path

from celery.signals import (
    after_task_publish,
    beat_init,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
)

from service.observability.logs import (
    LogContext,
    LogRole,
    bind_log_context,
    configure_logging,
    unbind_log_context,
)
from service.settings import get_settings

log = logging.getLogger(__name__)

# The log context of each running task, to be reset when it ends: one at a time in a prefork
# process, several in a threaded pool.
_TASK_CONTEXTS: dict[str, Token[LogContext | None]] = {}


def connect_process_signals() -> None:
    """Connect the receivers below (once however often it is called: Celery keeps one
    connection per receiver)."""
    celeryd_init.connect(_log_from_the_start)
    setup_logging.connect(_set_up_logging)
    task_prerun.connect(_task_started)
    task_postrun.connect(_task_ended)
    beat_init.connect(_start_heartbeat)


def _log_from_the_start(options: dict[str, object] | None = None, **_: object) -> None:
    """A worker warns (as root, say) before it sets up its logging: set it up first."""
    level = (options or {}).get("loglevel")
    _set_up_logging(loglevel=level if isinstance(level, int | str) else None)


def _set_up_logging(loglevel: int | str | None = None, **_: object) -> None:
    # `--loglevel` as Celery passes it (0 when not given).
    configure_logging(get_settings(), role=LogRole.SERVICE, level=loglevel or None)


def _task_started(task_id: str, **_: object) -> None:
    _TASK_CONTEXTS[task_id] = bind_log_context(task_id=task_id)


def _task_ended(task_id: str, **_: object) -> None:
    token = _TASK_CONTEXTS.pop(task_id, None)
    if token is not None:
        unbind_log_context(token)


def _start_heartbeat(**_: object) -> None:
    heartbeat = Heartbeat(get_settings().beat_heartbeat_file)
    # Strongly held: the receiver is a bound method that nothing else keeps.
    after_task_publish.connect(heartbeat.beat, weak=False)


class Heartbeat:
    def __init__(self, path: Path) -> None:
        self.path = path

    def beat(self, **_: object) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(datetime.now(UTC).isoformat() + "\n")
        except OSError as exc:
            log.warning("cannot write beat's heartbeat to %s: %s", self.path, exc)
