"""`paperwire serve|worker|beat`: the long-running processes, the web app and Celery's.

uvicorn, the web app and Celery are imported (or exec'd) by their own command alone. Their
logging is set up before they start (service.cli.app, workers.celery_app)."""

import os
import sys
from typing import Annotated, NoReturn

import typer

# `worker` and `beat` pass whatever follows them to Celery, unknown options included.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app (signup, confirm, manage, unsubscribe, archive, JSON API)."""
    import uvicorn

    from service.settings import get_settings
    from service.web import create_app

    # X-Forwarded-For is read by the app itself, from the proxies in trusted_proxies only.
    uvicorn.run(
        create_app(get_settings()),
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        log_level="info",
        # uvicorn's lines go to the root logger, configured for this process already
        # (service.observability.logs), rather than to handlers of uvicorn's own.
        log_config=None,
        # Access lines would keep every link's token (a key to someone's subscription) and
        # every visitor's address in the logs: the app writes its own (service.web.access_log).
        access_log=False,
    )


def worker(context: typer.Context) -> None:
    """Run a Celery worker (arguments go to `celery worker`)."""
    _exec_celery("worker", context.args)


def beat(context: typer.Context) -> None:
    """Run the Celery beat scheduler; run exactly one (arguments go to `celery beat`)."""
    _exec_celery("beat", context.args)


def _exec_celery(command: str, args: list[str]) -> NoReturn:
    """Become Celery: the same process, so that a container's SIGTERM reaches Celery's main
    process itself, which finishes its running tasks before it exits (a warm shutdown)."""
    from service.settings import get_settings

    # Read here, so that bad settings are one line from this command, not a traceback from
    # Celery loading its app.
    settings = get_settings()
    # With JSON logs, no banner: stdout and stderr then hold log lines only.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", *quiet, command, *args]
    os.execv(sys.executable, argv)
