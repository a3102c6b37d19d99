"""Planning the day's issues in the ledger, and the sweep that finds what was lost."""

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.delivery.planning import (
    due_subscribers,
    issues_to_sweep,
    plan_day,
    plan_due_issues,
)
from service.models import DeliveryStatus, Frequency, SubscriptionStatus
from service.settings import Settings
from service.store import Store
from tests.support.factories import TODAY, add_subscriber

# 08:00 in London on 25 November 2026 (GMT): the hour of the default test subscriber.
EIGHT_IN_LONDON = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def test_only_confirmed_subscribers_due_that_day_are_due(store: Store) -> None:
    daily = add_subscriber(store, "daily@example.org")
    wednesday = add_subscriber(
        store, "wed@example.org", frequency=Frequency.WEEKLY, weekday=TODAY.weekday()
    )
    add_subscriber(
        store, "thu@example.org", frequency=Frequency.WEEKLY, weekday=(TODAY.weekday() + 1) % 7
    )
    add_subscriber(store, "pending@example.org", status=SubscriptionStatus.PENDING)
    add_subscriber(store, "gone@example.org", status=SubscriptionStatus.UNSUBSCRIBED)

    due = due_subscribers(store, TODAY)

    assert [s.email for s in due] == [daily.email, wednesday.email]


def test_due_subscribers_get_one_planned_issue_however_often_planning_runs(
    store: Store, settings: Settings
) -> None:
    london = add_subscriber(store, "london@example.org")
    # 20:00 in Tokyo is 11:00 UTC: not due at 08:00 UTC, and the day before is 21 h late.
    add_subscriber(store, "tokyo@example.org", time_zone="Asia/Tokyo", delivery_hour=20)
    add_subscriber(store, "pending@example.org", status=SubscriptionStatus.PENDING)
    add_subscriber(
        store, "weekly@example.org", frequency=Frequency.WEEKLY, weekday=TODAY.weekday() + 1
    )

    early = plan_due_issues(store, now=EIGHT_IN_LONDON - timedelta(minutes=1), settings=settings)
    first = plan_due_issues(store, now=EIGHT_IN_LONDON, settings=settings)
    second = plan_due_issues(store, now=EIGHT_IN_LONDON + timedelta(minutes=15), settings=settings)

    assert early == []
    assert first == [(london.id, TODAY)]
    assert second == []
    delivery = store.get_delivery(london.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.PLANNED
    assert delivery.expires_at == EIGHT_IN_LONDON + timedelta(hours=settings.give_up_hours)


def test_concurrent_planning_plans_each_issue_once(store: Store, settings: Settings) -> None:
    for number in range(200):
        add_subscriber(store, f"reader{number}@example.org")
    results: list[list[tuple[int, date]]] = []
    barrier = threading.Barrier(4)

    def plan() -> None:
        barrier.wait()
        results.append(plan_due_issues(store, now=EIGHT_IN_LONDON, settings=settings))

    threads = [threading.Thread(target=plan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    planned = [key for result in results for key in result]
    assert len(planned) == 200 and len(set(planned)) == 200
    assert len(store.list_deliveries(issue_date=TODAY)) == 200


def test_an_issue_not_sent_within_the_give_up_window_expires(
    store: Store, settings: Settings
) -> None:
    subscriber = add_subscriber(store)
    plan_due_issues(store, now=EIGHT_IN_LONDON, settings=settings)
    too_late = EIGHT_IN_LONDON + timedelta(hours=settings.give_up_hours)

    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [subscriber.id], now=too_late, lease=LEASE) == {}
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.EXPIRED


def test_the_sweep_finds_lost_messages_dead_workers_and_due_retries(
    store: Store, settings: Settings
) -> None:
    now = EIGHT_IN_LONDON
    requeue_after = timedelta(seconds=settings.requeue_after_seconds)
    # Past the dead worker's lease and the retry's time.
    later = now + max(requeue_after, LEASE) + timedelta(minutes=1)
    never_enqueued, lost, dead_worker, retry, waiting, done = (
        add_subscriber(store, f"{name}@example.org").id
        for name in ("never", "lost", "dead", "retry", "waiting", "done")
    )
    plan_day(store, TODAY, now=now)
    with store.ledger() as ledger:
        for subscriber_id in (never_enqueued, lost, dead_worker, retry, waiting, done):
            assert ledger.claim(TODAY, [subscriber_id], now=now, lease=LEASE)
        # Put each row in the state its name says.
        retry_at = now + timedelta(minutes=5)
        ledger.record_failure(retry, TODAY, error="451", now=now, retry_at=retry_at)
        ledger.record_sent(done, TODAY, message_id="<m@x>", paper_ids=["p"], now=now)
    store.mark_enqueued([(lost, TODAY), (dead_worker, TODAY), (retry, TODAY)], now=now)
    with store.engine.begin() as connection:
        from service.store.tables import DeliveryRow

        connection.execute(
            DeliveryRow.__table__.update()  # type: ignore[attr-defined]
            .where(DeliveryRow.subscriber_id.in_([never_enqueued, lost]))
            .values(status=DeliveryStatus.PLANNED, lease_expires_at=None)
        )
        connection.execute(
            DeliveryRow.__table__.update()  # type: ignore[attr-defined]
            .where(DeliveryRow.subscriber_id == waiting)
            .values(status=DeliveryStatus.PLANNED, enqueued_at=later - requeue_after / 2)
        )

    swept = {
        subscriber_id for subscriber_id, _ in issues_to_sweep(store, now=later, settings=settings)
    }

    assert swept == {never_enqueued, lost, dead_worker, retry}
    store.mark_enqueued([(key, TODAY) for key in swept], now=later)
    assert issues_to_sweep(store, now=later + timedelta(minutes=1), settings=settings) == []


def test_planning_every_quarter_hour_across_dst_gives_one_issue_per_local_day(
    sqlite_store: Store, settings: Settings
) -> None:
    store = sqlite_store  # the SQL is the same on PostgreSQL; 960 ticks are enough once
    zones = ("Europe/London", "America/Los_Angeles", "Asia/Tokyo")
    daily = {
        zone: add_subscriber(
            store, f"{zone.split('/')[1]}@example.org", time_zone=zone, delivery_hour=7
        )
        for zone in zones
    }
    weekly = add_subscriber(
        store,
        "weekly@example.org",
        time_zone="America/Los_Angeles",
        delivery_hour=9,
        frequency=Frequency.WEEKLY,
        weekday=6,  # Sundays, including 1 November 2026 when Los Angeles leaves DST
    )
    # 24 October to 3 November 2026: London leaves summer time on the 25th (01:00 UTC),
    # Los Angeles on 1 November, Tokyo never.
    start = datetime(2026, 10, 24, tzinfo=UTC)
    first_planned: dict[tuple[int, date], datetime] = {}
    for tick in range(10 * 24 * 4):
        now = start + timedelta(minutes=15 * tick)
        for key in plan_due_issues(store, now=now, settings=settings):
            assert key not in first_planned, f"{key} planned twice"
            first_planned[key] = now
    # Issues due before the first tick are planned late, at that tick: leave them out.
    first_planned = {k: v for k, v in first_planned.items() if v > start}

    for zone, subscriber in daily.items():
        dates = sorted(day for sid, day in first_planned if sid == subscriber.id)
        assert dates == sorted(set(dates))
        assert len(dates) >= 9, zone
        for day in dates:
            local = first_planned[(subscriber.id, day)].astimezone(ZoneInfo(zone))
            assert (local.date(), local.hour, local.minute) == (day, 7, 0), (zone, day, local)
    sundays = sorted(day for sid, day in first_planned if sid == weekly.id)
    assert sundays == [date(2026, 10, 25), date(2026, 11, 1)]
    for day in sundays:
        local = first_planned[(weekly.id, day)].astimezone(ZoneInfo("America/Los_Angeles"))
        assert (local.hour, local.minute) == (9, 0)


def test_the_sweep_leaves_issues_whose_batch_is_still_in_the_broker(
    store: Store, settings: Settings
) -> None:
    now = EIGHT_IN_LONDON
    queued, lost, forgotten = (
        add_subscriber(store, f"{name}@example.org").id for name in ("queued", "lost", "old")
    )
    planned = plan_due_issues(store, now=now, settings=settings)
    assert {subscriber_id for subscriber_id, _ in planned} == {queued, lost, forgotten}
    store.mark_enqueued(planned, now=now)
    # `forgotten` is still in the broker's set, but for longer than the visibility timeout:
    # the broker would have handed it out again by now, so the set is out of date.
    patience = timedelta(seconds=settings.broker_visibility_timeout_seconds)
    store.mark_enqueued([(forgotten, TODAY)], now=now - patience)
    in_broker = {(queued, TODAY), (forgotten, TODAY)}
    asked: list[list[tuple[int, date]]] = []

    def waiting_in_broker(keys: list[tuple[int, date]]) -> set[tuple[int, date]]:
        asked.append(keys)
        return in_broker & set(keys)

    later = now + timedelta(seconds=settings.requeue_after_seconds) + timedelta(minutes=1)
    swept = issues_to_sweep(
        store, now=later, settings=settings, waiting_in_broker=waiting_in_broker
    )

    assert sorted(swept) == sorted([(lost, TODAY), (forgotten, TODAY)])
    assert sorted(asked[0]) == sorted(planned)
