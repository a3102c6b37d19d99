"""The delivery figures, read from the ledger and Redis when Prometheus scrapes: true across
every worker process and machine, since they come from what all of them share rather than
from one process's counters.

`DeliveryCollector` answers each scrape with three cheap reads: one grouped query over the
issue dates whose issues may still be claimable (`Store.ledger_overview`: a range of the
issue-date index), the day's mail events (the index on their time), and one Redis round trip
(queue length, queued-issue set size, the job records of `job_records`). A part that fails
is left out of that scrape, and `paperwire_collector_up{source}` says so: the scrape still
answers, with the rest.
"""

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.exc import SQLAlchemyError

from service.models import DeliveryStatus, MailEventKind, UnsubscribeChannel
from service.observability.job_records import (
    BEAT_SUCCESS_KEY,
    FETCH_RESULTS,
    PAPER_FETCH_KEY,
    beat_successes,
    paper_fetches,
)
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)

# Named here as the workers name them (Celery's default queue, the Redis list its waiting
# messages are kept in; `workers.queued`'s set), since nothing in service/ imports workers/.
CELERY_QUEUE = "celery"
QUEUED_ISSUES_KEY = "paperwire:queued-issues"
# A scrape waits no longer than this on a Redis that does not answer.
REDIS_TIMEOUT_SECONDS = 1.0


def recent_issue_days(settings: Settings) -> int:
    """How many issue dates back an issue may still be claimable: an issue's hour falls up to
    a day after its date begins in UTC (the zones west of it), and it is given up
    `give_up_hours` after that hour. Older issues are done with, but for a day an operator
    runs by hand (`digest run --date`), whose issues are never given up."""
    return math.ceil(settings.give_up_hours / 24) + 1


class DeliveryCollector(Collector):
    """The figures of the ledger of `store` and of the Redis the settings name (none when
    empty), as of `now()`; `today` is the UTC date of that moment. One per app: a source that
    cannot be read is logged when it starts failing and when it is back, not at every scrape."""

    def __init__(self, store: Store, settings: Settings, *, now: Callable[[], datetime]) -> None:
        self.store = store
        self.redis_url = settings.redis_url
        self.recent_days = recent_issue_days(settings)
        self.now = now
        self.unreadable: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "paperwire_collector_up",
            "1 if this scrape could read the source of the delivery figures (ledger, redis).",
            labels=["source"],
        )
        now = self.now()
        try:
            families = self._ledger_families(now)
        except SQLAlchemyError as exc:
            families = self._failed("ledger", exc)
        else:
            self._read("ledger")
        up.add_metric(["ledger"], 1.0 if families else 0.0)
        yield from families
        if self.redis_url:
            try:
                families = self._redis_families()
            except redis.RedisError as exc:
                families = self._failed("redis", exc)
            else:
                self._read("redis")
            up.add_metric(["redis"], 1.0 if families else 0.0)
            yield from families
        yield up

    def _failed(self, source: str, exc: Exception) -> list[Metric]:
        if source not in self.unreadable:
            self.unreadable.add(source)
            log.warning("metrics: cannot read the %s, its figures are left out: %s", source, exc)
        return []

    def _read(self, source: str) -> None:
        if source in self.unreadable:
            self.unreadable.discard(source)
            log.info("metrics: the %s can be read again", source)

    def _ledger_families(self, now: datetime) -> list[Metric]:
        today = now.date()
        since = today - timedelta(days=self.recent_days)
        overview = self.store.ledger_overview(today=today, since=since, now=now)
        events = self.store.mail_event_counts(since=today).get(today)
        issues = GaugeMetricFamily(
            "paperwire_issues",
            "Issues of today's UTC issue date in the ledger, by status.",
            labels=["status"],
        )
        for status in DeliveryStatus:
            issues.add_metric([status.value], overview.today.get(status, 0))
        age = 0.0
        if overview.oldest_due_at is not None:
            age = max(0.0, (now - overview.oldest_due_at).total_seconds())
        kinds = GaugeMetricFamily(
            "paperwire_mail_events_today",
            "Bounces, complaints and unsubscribes recorded since 00:00 UTC, by kind.",
            labels=["kind"],
        )
        channels = GaugeMetricFamily(
            "paperwire_unsubscribes_today",
            "Unsubscribes recorded since 00:00 UTC, by channel, whichever process took them.",
            labels=["channel"],
        )
        counts = events or Counter()
        for kind in MailEventKind:
            kinds.add_metric([kind.value], sum(n for (k, _), n in counts.items() if k == kind))
        for channel in UnsubscribeChannel:
            channels.add_metric([channel.value], counts[(MailEventKind.UNSUBSCRIBE, channel)])
        return [
            issues,
            GaugeMetricFamily(
                "paperwire_oldest_unsent_issue_age_seconds",
                "How long the oldest claimable issue has waited unsent (planned, or a retry "
                "whose time has come); 0 when none waits.",
                value=age,
            ),
            GaugeMetricFamily(
                "paperwire_issues_retry",
                "Issues waiting to be tried again, over the recent issue dates.",
                value=overview.retry,
            ),
            GaugeMetricFamily(
                "paperwire_issues_in_doubt",
                "Issues that may or may not have arrived, over the recent issue dates.",
                value=overview.in_doubt,
            ),
            kinds,
            channels,
        ]

    def _redis_families(self) -> list[Metric]:
        client = redis.Redis.from_url(
            self.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            pipeline = client.pipeline(transaction=False)
            pipeline.llen(CELERY_QUEUE)
            pipeline.scard(QUEUED_ISSUES_KEY)
            pipeline.hgetall(BEAT_SUCCESS_KEY)
            pipeline.hgetall(PAPER_FETCH_KEY)
            queue_depth, queued, beat_raw, fetch_raw = pipeline.execute()
        finally:
            client.close()
        beat = GaugeMetricFamily(
            "paperwire_beat_job_last_success_timestamp_seconds",
            "When each beat job last ran to its end without an error (Unix time).",
            labels=["job"],
        )
        for job, at in sorted(beat_successes(beat_raw).items()):
            beat.add_metric([job], at)
        fetched_at = GaugeMetricFamily(
            "paperwire_paper_fetch_last_timestamp_seconds",
            "When the last successful fetch from each paper source ended (Unix time).",
            labels=["source"],
        )
        fetched = GaugeMetricFamily(
            "paperwire_paper_fetch_papers",
            "Papers of the last successful fetch from each source: new, updated or rejected.",
            labels=["source", "result"],
        )
        for source, fetch in sorted(paper_fetches(fetch_raw).items()):
            fetched_at.add_metric([source], fetch.at)
            for result in FETCH_RESULTS:
                fetched.add_metric([source, result], fetch.count(result))
        return [
            GaugeMetricFamily(
                "paperwire_queue_depth",
                "Messages waiting in the Celery queue in Redis (batches of issues and jobs).",
                value=int(queue_depth),
            ),
            GaugeMetricFamily(
                "paperwire_queued_issues",
                "Issues whose batch is waiting in the queue (the queued-issue set).",
                value=int(queued),
            ),
            beat,
            fetched_at,
            fetched,
        ]
