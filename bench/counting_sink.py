"""An SMTP sink for benchmarks that only counts: messages, bytes and sessions, per envelope sender.

Run as its own process, so that accepting mail does not take the GIL of the process measuring:

    .venv/bin/python -m bench.counting_sink [--host 127.0.0.1] [--hostname sink.bench.test]

It prints one JSON line `{"port": N}` once it listens, then answers each `stats` line on its
standard input with one JSON line of counts, and stops (printing the counts a last time) when its
standard input closes or it gets SIGTERM. Messages are never parsed: only `len()` of the bytes
that arrived is taken, so the sink costs what aiosmtpd itself costs and nothing more.
"""

import argparse
import asyncio
import json
import resource
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP

HOST = "127.0.0.1"
# Given explicitly: without it aiosmtpd calls socket.getfqdn(), which can stall on DNS.
SERVER_HOSTNAME = "sink.bench.paperwire.test"


@dataclass
class Counts:
    messages: int = 0
    bytes: int = 0
    recipients: int = 0
    sessions: int = 0
    # Messages and bytes per envelope sender (`sender_key`): the digest run and the raw sender
    # use different MAIL FROM addresses, so one sink can tell their traffic apart.
    by_sender: dict[str, list[int]] = field(default_factory=dict)

    def as_json(self) -> str:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return json.dumps(
            {
                "messages": self.messages,
                "bytes": self.bytes,
                "recipients": self.recipients,
                "sessions": self.sessions,
                "by_sender": self.by_sender,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
            }
        )


def sender_key(address: str) -> str:
    """The envelope sender less its `+tag`: each digest goes out from its own VERP address
    (`bounces+TAG@domain`), all of them the digest run's."""
    local, at, domain = address.rpartition("@")
    return f"{local.partition('+')[0]}{at}{domain}"


class CountingHandler:
    """aiosmtpd hooks; everything else (EHLO, MAIL, RCPT) is aiosmtpd's default behaviour."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.counts.sessions += 1
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        size = len(envelope.original_content or b"")
        counts = self.counts
        counts.messages += 1
        counts.bytes += size
        counts.recipients += len(envelope.rcpt_tos)
        per_sender = counts.by_sender.setdefault(sender_key(str(envelope.mail_from)), [0, 0])
        per_sender[0] += 1
        per_sender[1] += size
        return "250 2.0.0 OK"


async def serve(host: str, hostname: str) -> None:
    loop = asyncio.get_running_loop()
    counts = Counts()
    handler = CountingHandler(counts)
    # asyncio creates and binds the socket itself: a socket made by hand and passed in can lose
    # TCP_NODELAY, and every session then stalls ~40 ms on delayed ACKs.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=hostname, enable_SMTPUTF8=True, loop=loop),
        host=host,
        port=0,
    )
    port = server.sockets[0].getsockname()[1]
    _say(json.dumps({"port": port}))

    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def answer_commands() -> None:
        while line := await reader.readline():
            if line.strip() == b"stats":
                _say(counts.as_json())
        stopping.set()  # standard input closed: the parent is done with us

    commands = asyncio.create_task(answer_commands())
    await stopping.wait()
    commands.cancel()
    server.close()
    _say(counts.as_json())


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--hostname", default=SERVER_HOSTNAME, help="name in the SMTP greeting")
    args = parser.parse_args()
    if args.host != HOST:
        parser.error(f"the sink listens on {HOST} only")
    asyncio.run(serve(args.host, args.hostname))


if __name__ == "__main__":
    main()
