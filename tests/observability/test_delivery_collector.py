"""The delivery figures the web app's /metrics reads at scrape time, against a ledger and a
Redis the tests build: today's issues by status, the oldest claimable issue's wait, retries
and issues in doubt, the queue, the job records, and what a scrape does when a source fails."""

from datetime import date, datetime, timedelta

import pytest
import redis
from prometheus_client import generate_latest

from service.delivery.schedule import Schedule
from service.models import MailEventKind, Subscriber, SubscriptionStatus, UnsubscribeChannel
from service.observability.delivery import CELERY_QUEUE, QUEUED_ISSUES_KEY, DeliveryCollector
from service.observability.job_records import (
    BEAT_SUCCESS_KEY,
    PAPER_FETCH_KEY,
    record_beat_success,
    record_paper_fetch,
)
from service.signup.subscriptions import RequestOrigin, unsubscribe
from service.store import Store
from tests.observability.conftest import Samples, parse_samples, sample
from tests.support.factories import NOW, TODAY, add_subscriber, make_settings
from tests.support.services import free_port
from workers.celery_app import app
from workers.queued import QUEUED_KEY

LEASE = timedelta(minutes=5)
ORIGIN = RequestOrigin(ip=None, user_agent=None, via="test")


def scrape(store: Store, *, now: datetime = NOW, redis_url: str = "") -> Samples:
    settings = make_settings(redis_url=redis_url)
    collector = DeliveryCollector(store, settings, now=lambda: now)
    return parse_samples(generate_latest(collector).decode())


def plan(store: Store, subscriber: Subscriber, issue_date: date, *, at: datetime) -> None:
    """Plan the issue of `issue_date` for everyone on `subscriber`'s schedule, at `at`."""
    store.plan_issues(Schedule.of(subscriber), issue_date, now=at, expires_at=None)


def build_ledger(store: Store) -> dict[str, Subscriber]:
    """Today: two planned (one since 2 hours, one since now), one sent, two retries (one due
    30 minutes ago, one due in 10), one in doubt, one skipped. Yesterday: one retry. A month
    ago: one issue still planned, past the recent issue dates (20 hours' give-up: 2 days)."""
    readers = {
        name: add_subscriber(store, f"{name}@example.org", delivery_hour=8)
        for name in ("waiting", "sent", "retry_due", "retry_later", "doubt", "skipped")
    }
    readers["fresh"] = add_subscriber(store, "fresh@example.org", delivery_hour=9)
    readers["late"] = add_subscriber(store, "late@example.org", delivery_hour=10)
    readers["ancient"] = add_subscriber(store, "ancient@example.org", delivery_hour=11)
    plan(store, readers["waiting"], TODAY, at=NOW - timedelta(hours=2))
    plan(store, readers["fresh"], TODAY, at=NOW)
    plan(store, readers["late"], TODAY - timedelta(days=1), at=NOW - timedelta(days=1))
    plan(store, readers["ancient"], TODAY - timedelta(days=30), at=NOW - timedelta(days=30))
    tried = [readers[name].id for name in ("sent", "retry_due", "retry_later", "doubt", "skipped")]
    an_hour_ago = NOW - timedelta(hours=1)
    with store.ledger() as ledger:
        attempts = ledger.claim(TODAY, tried, now=an_hour_ago, lease=LEASE)
        ledger.record_sent(
            readers["sent"].id,
            TODAY,
            message_id="<sent@x>",
            paper_ids=[],
            now=an_hour_ago,
            attempt=attempts[readers["sent"].id],
        )
        for name, retry_at in (
            ("retry_due", NOW - timedelta(minutes=30)),
            ("retry_later", NOW + timedelta(minutes=10)),
        ):
            ledger.record_failure(
                readers[name].id,
                TODAY,
                error="451 try later",
                now=an_hour_ago,
                retry_at=retry_at,
                attempt=attempts[readers[name].id],
            )
        ledger.record_in_doubt(
            readers["doubt"].id,
            TODAY,
            message_id="<doubt@x>",
            error="connection lost after the final dot",
            now=an_hour_ago,
            attempt=attempts[readers["doubt"].id],
        )
        ledger.record_skipped(
            readers["skipped"].id, TODAY, now=an_hour_ago, attempt=attempts[readers["skipped"].id]
        )
        yesterday = TODAY - timedelta(days=1)
        (attempt,) = ledger.claim(
            yesterday, [readers["late"].id], now=an_hour_ago, lease=LEASE
        ).values()
        ledger.record_failure(
            readers["late"].id,
            yesterday,
            error="451 try later",
            now=an_hour_ago,
            retry_at=NOW + timedelta(hours=1),
            attempt=attempt,
        )
    return readers


def test_the_ledger_figures_count_todays_issues_retries_doubts_and_the_oldest_wait(
    store: Store,
) -> None:
    readers = build_ledger(store)

    samples = scrape(store)

    today = {
        status: sample(samples, "paperwire_issues", status=status)
        for status in ("planned", "sending", "sent", "retry", "in_doubt", "skipped", "failed")
    }
    assert today == {
        "planned": 2,
        "sending": 0,
        "sent": 1,
        "retry": 2,
        "in_doubt": 1,
        "skipped": 1,
        "failed": 0,
    }
    assert sample(samples, "paperwire_issues_retry") == 3  # today's two and yesterday's
    assert sample(samples, "paperwire_issues_in_doubt") == 1
    # Planned two hours ago; the month-old issue is past the recent issue dates.
    assert sample(samples, "paperwire_oldest_unsent_issue_age_seconds") == 7200
    assert sample(samples, "paperwire_collector_up", source="ledger") == 1
    assert sample(samples, "paperwire_collector_up", source="redis") is None  # none configured

    # Once the planned issues are taken, the oldest wait is the retry due 30 minutes ago: the
    # one due in 10 minutes is not waiting yet.
    with store.ledger() as ledger:
        ledger.claim(TODAY, [readers["waiting"].id, readers["fresh"].id], now=NOW, lease=LEASE)
    samples = scrape(store)
    assert sample(samples, "paperwire_oldest_unsent_issue_age_seconds") == 1800
    assert sample(samples, "paperwire_issues", status="sending") == 2

    # Once that retry is taken too, only retries not yet due are left: nothing waits.
    with store.ledger() as ledger:
        ledger.claim(TODAY, [readers["retry_due"].id], now=NOW, lease=LEASE)
    assert sample(scrape(store), "paperwire_oldest_unsent_issue_age_seconds") == 0

    # The next day, today's issues are yesterday's.
    tomorrow = scrape(store, now=NOW + timedelta(days=1))
    assert sample(tomorrow, "paperwire_issues", status="sent") == 0


def test_nothing_waiting_is_an_age_of_zero(store: Store) -> None:
    samples = scrape(store)
    assert sample(samples, "paperwire_oldest_unsent_issue_age_seconds") == 0
    assert sample(samples, "paperwire_issues", status="planned") == 0
    assert sample(samples, "paperwire_issues_retry") == 0


def test_todays_mail_events_are_counted_by_kind_and_unsubscribes_by_channel(store: Store) -> None:
    ada = add_subscriber(store, "ada@example.org")
    bob = add_subscriber(store, "bob@example.org")
    cy = add_subscriber(store, "cy@example.org")
    unsubscribe(store, ada.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.ONE_CLICK)
    unsubscribe(store, bob.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.MAILTO)
    # Yesterday's does not count today.
    unsubscribe(
        store, cy.id, origin=ORIGIN, now=NOW - timedelta(days=1), channel=UnsubscribeChannel.LINK
    )
    assert store.get_subscriber(cy.id).status is SubscriptionStatus.UNSUBSCRIBED

    samples = scrape(store)

    assert sample(samples, "paperwire_mail_events_today", kind=MailEventKind.UNSUBSCRIBE) == 2
    assert sample(samples, "paperwire_mail_events_today", kind=MailEventKind.COMPLAINT) == 0
    assert sample(samples, "paperwire_unsubscribes_today", channel="one-click") == 1
    assert sample(samples, "paperwire_unsubscribes_today", channel="mailto") == 1
    assert sample(samples, "paperwire_unsubscribes_today", channel="link") == 0


def test_the_collector_reads_the_queue_and_the_set_the_workers_write() -> None:
    assert app.conf.task_default_queue == CELERY_QUEUE
    assert QUEUED_ISSUES_KEY == QUEUED_KEY


def test_the_queue_and_the_job_records_come_from_redis(sqlite_store: Store, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.rpush("celery", "batch-1", "batch-2", "batch-3")
        client.sadd(QUEUED_KEY, *(f"{n}:2026-11-25" for n in range(5)))
        record_beat_success(client, "sweep-deliveries", at=NOW)
        record_paper_fetch(client, "hf", {"new": 3, "updated": 2, "rejected": 1}, at=NOW)
        # The papers file is named by its path: its label is `file`, never the path.
        record_paper_fetch(
            client, "/srv/papers/today.jsonl", {"new": 7, "updated": 0, "rejected": 0}, at=NOW
        )
        # Whatever else someone wrote there is left out.
        client.hset(BEAT_SUCCESS_KEY, "not a job name", "1")
        client.hset(BEAT_SUCCESS_KEY, "prune-pending-signups", "yesterday")
        client.hset(PAPER_FETCH_KEY, "arxiv", "{not json")
    finally:
        client.close()

    samples = scrape(sqlite_store, redis_url=redis_url)

    assert sample(samples, "paperwire_queue_depth") == 3
    assert sample(samples, "paperwire_queued_issues") == 5
    beat = "paperwire_beat_job_last_success_timestamp_seconds"
    assert sample(samples, beat, job="sweep-deliveries") == NOW.timestamp()
    assert [labels for name, labels in samples if name == beat] == [
        frozenset({("job", "sweep-deliveries")})
    ]
    fetched_at = "paperwire_paper_fetch_last_timestamp_seconds"
    assert sample(samples, fetched_at, source="hf") == NOW.timestamp()
    assert sample(samples, fetched_at, source="file") == NOW.timestamp()
    assert sample(samples, fetched_at, source="arxiv") is None
    papers = "paperwire_paper_fetch_papers"
    assert sample(samples, papers, source="hf", result="new") == 3
    assert sample(samples, papers, source="hf", result="updated") == 2
    assert sample(samples, papers, source="hf", result="rejected") == 1
    assert sample(samples, papers, source="file", result="new") == 7
    assert sample(samples, "paperwire_collector_up", source="redis") == 1


def test_a_scrape_with_redis_or_the_database_down_still_answers_with_the_rest(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    collector = DeliveryCollector(sqlite_store, make_settings(redis_url=closed), now=lambda: NOW)
    for _ in range(3):
        samples = parse_samples(generate_latest(collector).decode())
        assert sample(samples, "paperwire_collector_up", source="redis") == 0
        assert sample(samples, "paperwire_queue_depth") is None
        assert sample(samples, "paperwire_issues", status="sent") == 0
    # Said once, not at every scrape, and without the password.
    (warning,) = [
        r.getMessage() for r in caplog.records if "cannot read the redis" in r.getMessage()
    ]
    assert "hunter2" not in warning

    unreachable = Store(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    try:
        samples = scrape(unreachable)
    finally:
        unreachable.close()
    assert sample(samples, "paperwire_collector_up", source="ledger") == 0
    assert sample(samples, "paperwire_issues", status="sent") is None
