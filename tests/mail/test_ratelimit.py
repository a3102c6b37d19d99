"""The shared send-rate limit, against a real Redis: two senders share one budget."""

import asyncio
import time
from datetime import timedelta

from service.delivery.pipeline import run_day
from service.mail.ratelimit import SendRateLimiter
from service.models import DeliveryStatus
from service.settings import Settings
from service.store import Store
from tests.support.factories import BACKGROUND_PAPERS, NOW, TODAY, add_subscriber, make_paper
from tests.support.services import RedisServer
from tests.support.smtp_sink import SmtpSink


def test_two_senders_share_one_rate(redis_url: str) -> None:
    rate, burst, per_sender = 40.0, 4, 30

    async def send_all() -> list[float]:
        stamps: list[float] = []
        limiters = [SendRateLimiter(redis_url, rate_per_second=rate, burst=burst) for _ in range(2)]

        async def sender(limiter: SendRateLimiter) -> None:
            for _ in range(per_sender):
                await limiter.acquire()
                stamps.append(time.monotonic())

        await asyncio.gather(*(sender(limiter) for limiter in limiters))
        for limiter in limiters:
            await limiter.close()
        return sorted(stamps)

    stamps = asyncio.run(send_all())
    elapsed = stamps[-1] - stamps[0]
    # 60 tokens at 40/s with 4 up front: at least 56/40 s. Never faster, whoever asks.
    assert elapsed >= (2 * per_sender - burst) / rate * 0.95
    for start in range(len(stamps) - 20):
        window = stamps[start + 20] - stamps[start]
        assert window >= (20 - burst) / rate * 0.95


def test_without_redis_a_sender_stops_limiting_instead_of_stopping(
    redis_server: RedisServer,
) -> None:
    async def acquire_all() -> float:
        dead = f"redis://127.0.0.1:{redis_server.port + 1}/0"  # nothing listens there
        limiter = SendRateLimiter(dead, rate_per_second=1.0, burst=1)
        started = time.monotonic()
        for _ in range(10):
            await limiter.acquire()
        await limiter.close()
        return time.monotonic() - started

    assert asyncio.run(acquire_all()) < 5.0


def test_a_day_run_respects_the_configured_rate(
    store: Store, settings: Settings, smtp_sink: SmtpSink, redis_url: str
) -> None:
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers([make_paper()], now=NOW - timedelta(hours=1))
    for number in range(24):
        add_subscriber(store, f"reader{number}@example.org")
    limited = settings.model_copy(
        update={
            "mail_url": smtp_sink.url,
            "redis_url": redis_url,
            "mail_rate_per_second": 20.0,
            "mail_rate_burst": 2,
        }
    )

    started = time.monotonic()
    summary = asyncio.run(run_day(store, issue_date=TODAY, settings=limited, now=lambda: NOW))
    elapsed = time.monotonic() - started

    assert summary.outcomes == {DeliveryStatus.SENT: 24}
    assert elapsed >= (24 - 2) / 20.0 * 0.95
