"""What the Celery processes tell an operator, through Celery's signals: their log lines, set up
as every Paperwire process's are (text or JSON lines, nothing personal; see
`service.observability.logs`) and naming the task each line comes from.

Celery sets up no logging of its own while a `setup_logging` receiver is connected: the worker,
its pool processes and beat all log through Paperwire's one handler. One line escapes it: the
"worker: Warm shutdown (MainProcess)" that Celery prints itself when it gets SIGTERM.
"""

import logging
from contextvars import Token

from celery.signals import (
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
