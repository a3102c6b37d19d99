"""Which issues have a batch waiting in the broker, so the sweep does not enqueue them again."""

from collections.abc import Iterable

import redis

from service.models import IssueKey

QUEUED_KEY = "paperwire:queued-issues"


class QueuedIssues:
    """A set, in the broker's own Redis, of the issues whose batch is waiting for a worker.

    Kept beside the queue it describes: a Redis that loses the queue loses this set with it,
    and the sweep then sees those issues as lost, which they are. A long queue that is merely
    slow keeps its issues in the set, and the sweep leaves them alone.
    """

    def __init__(self, redis_url: str, *, queue: str = "celery") -> None:
        self._redis = redis.Redis.from_url(redis_url)
        # The Redis list that holds the broker's waiting messages (Celery's default queue).
        self._queue = queue

    def add(self, keys: Iterable[IssueKey]) -> None:
        members = [_member(key) for key in keys]
        if members:
            self._redis.sadd(QUEUED_KEY, *members)

    def discard(self, keys: Iterable[IssueKey]) -> None:
        members = [_member(key) for key in keys]
        if members:
            self._redis.srem(QUEUED_KEY, *members)

    def waiting(self, keys: Iterable[IssueKey]) -> set[IssueKey]:
        """Those of `keys` whose batch may still be waiting in the queue: in the set, while
        the queue holds anything at all. A batch a worker took and died with before saying so
        is then no longer waiting once the queue has drained."""
        wanted = list(keys)
        if not wanted or not self._redis.llen(self._queue):
            return set()
        flags = self._redis.smismember(QUEUED_KEY, [_member(key) for key in wanted])
        return {key for key, flag in zip(wanted, flags, strict=True) if flag}

    def close(self) -> None:
        self._redis.close()


def _member(key: IssueKey) -> str:
    subscriber_id, issue_date = key
    return f"{subscriber_id}:{issue_date.isoformat()}"
