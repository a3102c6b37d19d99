"""The raw limit: one aiosmtplib connection sending the same pre-serialized digest to the sink
over and over, the rate the daily run is compared with."""

import asyncio
import time
from dataclasses import dataclass

import aiosmtplib

from bench.daily_run.harness import HOST, SinkProcess
from bench.daily_run.machine import own_cpu_seconds

RAW_FROM = "raw@bench.paperwire.test"
RAW_TO = "raw-reader@example.org"


@dataclass
class RawResult:
    messages: int
    seconds: float
    sender_cpu_seconds: float
    sink_cpu_seconds: float
    size: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


async def _send_raw(port: int, payload: bytes, *, max_messages: int, max_seconds: float) -> int:
    client = aiosmtplib.SMTP(
        hostname=HOST,
        port=port,
        # Given explicitly: aiosmtplib would otherwise call socket.getfqdn(), which can stall.
        local_hostname="bench.paperwire.test",
        timeout=30.0,
        start_tls=False,
    )
    await client.connect()
    # The options the service's transport gives the same message.
    options = [f"SIZE={len(payload)}"]
    if not payload.isascii():
        options.append("BODY=8BITMIME")
    sent = 0
    deadline = time.perf_counter() + max_seconds
    try:
        while sent < max_messages and time.perf_counter() < deadline:
            refused, _ = await client.sendmail(RAW_FROM, [RAW_TO], payload, mail_options=options)
            if refused:
                raise RuntimeError(f"the sink refused the raw message: {refused}")
            sent += 1
    finally:
        await client.quit()
    return sent


def measure_raw_limit(
    sink: SinkProcess, payload: bytes, *, max_messages: int, max_seconds: float
) -> RawResult:
    """Pre-serialized bytes over one connection, as fast as one aiosmtplib client can."""
    sink_before = own_cpu_seconds(sink.pid)
    cpu_before = time.process_time()
    started = time.perf_counter()
    sent = asyncio.run(
        _send_raw(sink.port, payload, max_messages=max_messages, max_seconds=max_seconds)
    )
    seconds = time.perf_counter() - started
    return RawResult(
        messages=sent,
        seconds=seconds,
        sender_cpu_seconds=time.process_time() - cpu_before,
        sink_cpu_seconds=own_cpu_seconds(sink.pid) - sink_before,
        size=len(payload),
    )
