"""The send rate shared by every worker: a token bucket in Redis."""

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Refill the bucket for the time passed, take a token if there is one, else say how long until
# there is. Redis's own clock decides, so workers on machines whose clocks differ agree.
TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
local wait_us = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait_us = math.ceil((1 - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait_us
"""
BUCKET_KEY = "paperwire:send-rate"
# After this many Redis errors in a row a sender stops asking and sends unlimited: mail that
# goes out a little fast beats mail that stops because the broker is restarting.
MAX_ERRORS = 3


class SendRateLimiter:
    """`await limiter.acquire()` before each message; at most `rate` per second overall."""

    def __init__(self, redis_url: str, *, rate_per_second: float, burst: int) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a send rate limit needs a positive rate and a burst of at least 1")
        self._client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
        self._script = self._client.register_script(TAKE_TOKEN)
        self._rate = rate_per_second
        self._burst = burst
        self._errors = 0

    async def acquire(self) -> None:
        while self._errors < MAX_ERRORS:
            try:
                wait_us = int(await self._script(keys=[BUCKET_KEY], args=[self._rate, self._burst]))
            except RedisError as exc:
                self._errors += 1
                log.warning("send rate limit unavailable (%s): not limiting this message", exc)
                return
            self._errors = 0
            if wait_us == 0:
                return
            await asyncio.sleep(wait_us / 1_000_000)

    async def close(self) -> None:
        await self._client.aclose()
