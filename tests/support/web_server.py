"""The web app served over real HTTP by uvicorn on 127.0.0.1, in a thread of the test."""

import threading
from collections.abc import Iterator

import uvicorn

from service.settings import Settings
from service.store import Store
from service.web import create_app
from service.web.deps import Clock, utc_now
from tests.support.services import wait_until


def serve(settings: Settings, store: Store, port: int, *, clock: Clock = utc_now) -> Iterator[None]:
    """The web app under uvicorn on 127.0.0.1:`port` in a thread, telling the time by
    `clock`, for the length of a `for _ in serve(...)` loop body."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store=store, clock=clock),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn start")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
