"""The inbound receiver on 127.0.0.1, in a thread of the test with its own event loop, and a
clock the test moves: `receiver.clock.now = NOW + timedelta(days=1)`."""

import asyncio
import smtplib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import pytest

from service.inbound.receiver import start_receiver
from service.settings import Settings
from service.store import Store
from tests.support.factories import NOW

HOST = "127.0.0.1"
CLIENT_NAME = "mx.example.org"


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


class Receiver:
    """One `start_receiver` server, stopped by `stop()`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.clock = Clock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            start_receiver(store, settings, host=HOST, port=0, now=self.clock), self._loop
        )
        self._server = started.result(timeout=5)
        self.port: int = self._server.sockets[0].getsockname()[1]

    def connect(self) -> smtplib.SMTP:
        # local_hostname given: smtplib would otherwise ask socket.getfqdn(), which can stall.
        return smtplib.SMTP(HOST, self.port, local_hostname=CLIENT_NAME, timeout=10)

    def send(self, data: bytes, to: Sequence[str], *, mail_from: str = "") -> None:
        """Mail `data` in one session; raises smtplib's errors for a refusal."""
        with self.connect() as client:
            client.sendmail(mail_from, list(to), data)

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


def start(store: Store, settings: Settings) -> Iterator[Receiver]:
    receiver = Receiver(store, settings)
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def receiver(store: Store, settings: Settings) -> Iterator[Receiver]:
    yield from start(store, settings)
