"""Fixed-window counters for what the web app lets one client or mailbox cause: in Redis, shared
by every web process, or in the process itself when Redis cannot be reached."""

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

import redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


# Count one hit in a fixed window that starts with the window's first hit: allowed while the
# count stays within the limit. A refused hit is not counted, so a flood does not push the
# window's end forward.
HIT_WINDOW = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
if count == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""
WINDOW_KEY_PREFIX = "paperwire:window:"


class WindowLimiter(Protocol):
    def hit(self, key: str, *, limit: int, window: timedelta) -> bool:
        """Count one event for `key`; False (and not counted) if `limit` is already reached
        in the current `window`."""
        ...


class RedisWindowLimiter:
    """Fixed-window counters in Redis, shared by every web process.

    When Redis cannot be asked, counting goes on in this process (`MemoryWindowLimiter`):
    limits then hold per process instead of overall, which still bounds what one client can
    make the service send, and signups keep working while Redis restarts.
    """

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(HIT_WINDOW)
        self._fallback = MemoryWindowLimiter()

    def hit(self, key: str, *, limit: int, window: timedelta) -> bool:
        milliseconds = max(1, int(window.total_seconds() * 1000))
        try:
            allowed = self._script(keys=[WINDOW_KEY_PREFIX + key], args=[limit, milliseconds])
        except RedisError as exc:
            log.warning("rate limits unavailable in Redis (%s): counting in this process", exc)
            return self._fallback.hit(key, limit=limit, window=window)
        return bool(int(allowed))

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except RedisError:
            return False

    def close(self) -> None:
        self._client.close()


class MemoryWindowLimiter:
    """Fixed-window counters in this process: for development without Redis, and as the
    fallback of `RedisWindowLimiter`."""

    # Beyond this many keys the expired ones are dropped, so a flood of addresses cannot
    # grow the table without bound.
    MAX_KEYS = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, limit: int, window: timedelta) -> bool:
        now = self._clock()
        with self._lock:
            ends, count = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, count = now + window.total_seconds(), 0
            if count >= limit:
                return False
            if len(self._windows) >= self.MAX_KEYS:
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            self._windows[key] = (ends, count + 1)
            return True
