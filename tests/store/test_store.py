"""The store on SQLite and PostgreSQL: papers, subscribers and the ledger."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url

from service.delivery.planning import due_subscribers, plan_day
from service.delivery.schedule import Schedule
from service.errors import AlreadySubscribed, InvalidInput, UnknownSubscriber
from service.models import (
    MAX_PAPER_VOTES,
    BouncePolicy,
    DeliveryStatus,
    Frequency,
    Interests,
    IssueItem,
    MailEventKind,
    ReadingHistory,
    SubscriptionStatus,
    Vote,
)
from service.store import DataStart, Store
from tests.support.factories import (
    NOW,
    TODAY,
    add_subscriber,
    make_paper,
    make_preferences,
    send_issue,
)

LEASE = timedelta(minutes=10)


def test_migrations_create_every_table(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert tables == {
        "papers",
        "paper_signals",
        "subscribers",
        "deliveries",
        "suppressed_addresses",
        "notices",
        "profiles",
        "mail_events",
        "inbound_messages",
        "webhook_receipts",
        "corpus_terms",
        "corpus_totals",
        "alembic_version",
    }


def test_upgrade_twice_is_harmless(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    assert store.count_papers() == 0


def test_it_upserts_papers_by_id_and_refreshes_trending_signals(store: Store) -> None:
    first = store.upsert_papers([make_paper(id="p1", upvotes=3), make_paper(id="p2")], now=NOW)
    later = NOW + timedelta(hours=5)
    second = store.upsert_papers(
        [make_paper(id="p1", upvotes=40, comments=7, abstract="")], now=later
    )

    assert (first.new, first.updated) == (2, 0)
    assert (second.new, second.updated) == (0, 1)
    assert store.count_papers() == 2
    paper = store.get_paper("p1")
    assert paper is not None
    assert (paper.upvotes, paper.comments) == (40, 7)
    assert paper.abstract.startswith("We distil")  # an empty abstract does not erase one
    assert paper.first_seen_at == NOW  # first seen stays the first time


def test_datetimes_come_back_timezone_aware(store: Store) -> None:
    store.upsert_papers([make_paper(id="p1")], now=NOW)
    paper = store.get_paper("p1")
    assert paper is not None and paper.first_seen_at == NOW
    assert paper.first_seen_at.utcoffset() == timedelta(0)


def test_it_lists_papers_in_a_window(store: Store) -> None:
    store.upsert_papers([make_paper(id="old")], now=NOW - timedelta(days=9))
    store.upsert_papers([make_paper(id="new")], now=NOW)
    recent = store.list_papers(seen_since=NOW - timedelta(days=7))
    assert [p.id for p in recent] == ["new"]
    assert [p.id for p in store.list_papers()] == ["new", "old"]


def test_email_is_unique(store: Store) -> None:
    add_subscriber(store, "ann@example.org")
    with pytest.raises(AlreadySubscribed):
        add_subscriber(store, "ann@example.org")


def test_it_round_trips_preferences(store: Store) -> None:
    added = add_subscriber(
        store, "bob@example.org", frequency=Frequency.WEEKLY, weekday=2, trending_weight=0.8
    )
    found = store.find_subscriber("bob@example.org")
    assert found == added
    assert found.interests.keywords == ("diffusion models",)
    assert (found.frequency, found.weekday, found.trending_weight) == (Frequency.WEEKLY, 2, 0.8)
    assert found.confirmed_at == NOW


def test_an_issue_is_claimed_once(store: Store) -> None:
    subscriber = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE) == {subscriber.id: 1}
        assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE) == {}
        ledger.record_sent(subscriber.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)
        later = NOW + timedelta(hours=1)
        assert ledger.claim(TODAY, [subscriber.id], now=later, lease=LEASE) == {}
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.attempts, delivery.paper_ids) == (
        DeliveryStatus.SENT,
        1,
        ("p1",),
    )


def test_a_claim_whose_lease_ran_out_can_be_taken_again(store: Store) -> None:
    subscriber = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE) == {subscriber.id: 1}
        assert ledger.claim(TODAY, [subscriber.id], now=NOW + LEASE / 2, lease=LEASE) == {}
        assert ledger.claim(TODAY, [subscriber.id], now=NOW + LEASE * 2, lease=LEASE) == {
            subscriber.id: 2
        }
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None and delivery.attempts == 2


def test_transient_failures_are_retried_from_their_time_and_permanent_ones_never(
    store: Store,
) -> None:
    retried = add_subscriber(store, "retry@example.org")
    failed = add_subscriber(store, "fail@example.org")
    plan_day(store, TODAY, now=NOW)
    retry_at = NOW + timedelta(minutes=2)
    with store.ledger() as ledger:
        for subscriber in (retried, failed):
            assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE) == {subscriber.id: 1}
        ledger.record_failure(retried.id, TODAY, error="451 later", now=NOW, retry_at=retry_at)
        ledger.record_failure(failed.id, TODAY, error="550 no user", now=NOW)

        too_soon = NOW + timedelta(minutes=1)
        assert ledger.claim(TODAY, [retried.id], now=too_soon, lease=LEASE) == {}
        assert ledger.claim(TODAY, [retried.id], now=retry_at, lease=LEASE) == {retried.id: 2}
        next_day = NOW + timedelta(days=1)
        assert ledger.claim(TODAY, [failed.id], now=next_day, lease=LEASE) == {}
    delivery = store.get_delivery(failed.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "550 no user")


def test_an_issue_tried_too_often_fails_with_the_reason(store: Store) -> None:
    subscriber = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    at = NOW
    with store.ledger() as ledger:
        for attempt in (1, 2, 3):
            claimed = ledger.claim(TODAY, [subscriber.id], now=at, lease=LEASE, max_attempts=3)
            assert claimed == {subscriber.id: attempt}
            at += LEASE * 2  # the worker died: its lease runs out

        assert ledger.claim(TODAY, [subscriber.id], now=at, lease=LEASE, max_attempts=3) == {}
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.FAILED
    assert delivery.last_error == (
        "gave up after 3 attempts; last error: the worker was lost while sending"
    )


def test_refusals_while_sending_are_scored_as_hard_bounces_and_suppress_at_the_limit(
    store: Store,
) -> None:
    subscriber = add_subscriber(store)
    policy = BouncePolicy(limit=2, stale_after=timedelta(days=7))
    for day in range(2):
        issue_date = TODAY + timedelta(days=day)
        at = NOW + timedelta(days=day)
        plan_day(store, issue_date, now=at)
        with store.ledger() as ledger:
            assert ledger.claim(issue_date, [subscriber.id], now=at, lease=LEASE)
            ledger.record_failure(
                subscriber.id,
                issue_date,
                error="550 5.1.1 no such user",
                now=at,
                refused=True,
                hard_bounce=policy,
            )
        expected = SubscriptionStatus.CONFIRMED if day == 0 else SubscriptionStatus.SUPPRESSED
        assert store.get_subscriber(subscriber.id).status is expected
    assert due_subscribers(store, TODAY + timedelta(days=2)) == []
    events = store.mail_events(subscriber.id)
    assert [(e.kind, e.via, e.status_code, e.issue_date) for e in events] == [
        (MailEventKind.HARD_BOUNCE, "smtp", "5.1.1", TODAY + timedelta(days=1)),
        (MailEventKind.HARD_BOUNCE, "smtp", "5.1.1", TODAY),
    ]
    suppressed = store.get_subscriber(subscriber.id)
    assert suppressed.bounce_score == 2
    assert suppressed.consent[-1].reason == "bouncing"


def test_an_in_doubt_issue_is_not_claimed_again(store: Store) -> None:
    subscriber = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE)
        ledger.record_in_doubt(
            subscriber.id, TODAY, message_id="<m@x>", error="lost after the final dot", now=NOW
        )
        assert ledger.claim(TODAY, [subscriber.id], now=NOW + LEASE * 3, lease=LEASE) == {}
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.message_id) == (DeliveryStatus.IN_DOUBT, "<m@x>")


def test_outcomes_are_recorded_only_by_the_claim_holder(store: Store) -> None:
    subscriber = add_subscriber(store)
    with store.ledger() as ledger:
        ledger.record_sent(subscriber.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)
    assert store.get_delivery(subscriber.id, TODAY) is None
    assert store.reading_history([subscriber.id], before=TODAY)[subscriber.id] == ReadingHistory()


def test_sent_papers_are_remembered_per_subscriber(store: Store) -> None:
    alice = add_subscriber(store, "alice@example.org")
    bob = add_subscriber(store, "bob@example.org")
    send_issue(store, alice, paper_ids=["p1", "p2"])
    tomorrow = TODAY + timedelta(days=1)
    history = store.reading_history([alice.id, bob.id], before=tomorrow)
    assert history[alice.id] == ReadingHistory(
        last_sent_at=NOW, sent_paper_ids=frozenset({"p1", "p2"})
    )
    assert history[bob.id] == ReadingHistory()
    # Only issues dated from `since` on are read when it is given.
    assert store.reading_history([alice.id], before=tomorrow, since=tomorrow)[alice.id] == (
        ReadingHistory(last_sent_at=NOW)
    )
    # Issues dated on or after `before` are not "the last issue" yet; their papers still count.
    same_day = store.reading_history([alice.id], before=TODAY)[alice.id]
    assert same_day.last_sent_at is None and same_day.sent_paper_ids == {"p1", "p2"}


def test_the_last_issue_is_looked_for_from_a_date_on_when_given(store: Store) -> None:
    alice = add_subscriber(store)
    old_day = TODAY - timedelta(days=20)
    # An old issue sent late (a retry by hand, today): not an issue of the given dates.
    send_issue(store, alice, old_day, paper_ids=["old"], now=NOW)
    send_issue(
        store, alice, TODAY - timedelta(days=2), paper_ids=["p1"], now=NOW - timedelta(days=2)
    )
    tomorrow = TODAY + timedelta(days=1)
    recent = store.reading_history(
        [alice.id],
        before=tomorrow,
        since=TODAY - timedelta(days=9),
        last_sent_since=TODAY - timedelta(days=9),
    )[alice.id]
    assert recent == ReadingHistory(
        last_sent_at=NOW - timedelta(days=2), sent_paper_ids=frozenset({"p1"})
    )
    assert store.reading_history([alice.id], before=tomorrow)[alice.id].last_sent_at == NOW


@pytest.mark.parametrize("sent_papers", [["p1", "p2"], ["p1"]])
def test_a_sent_issue_keeps_the_papers_it_was_sent_with(
    store: Store, sent_papers: list[str]
) -> None:
    alice = add_subscriber(store)
    store.plan_issues(Schedule.of(alice), TODAY, now=NOW, expires_at=None)
    marked_items = [
        IssueItem(paper_id="p1", why="Why one"),
        IssueItem(paper_id="p2", why="Why two"),
    ]
    sent_items = [item for item in marked_items if item.paper_id in sent_papers]
    with store.ledger() as ledger:
        ledger.claim(TODAY, [alice.id], now=NOW, lease=LEASE)
        started = ledger.mark_data_started(
            alice.id, TODAY, now=NOW, paper_ids=["p1", "p2"], items=marked_items
        )
        assert started is DataStart.STARTED
        # The same papers are not written twice; other papers (a digest cut short) are.
        ledger.record_sent(
            alice.id, TODAY, message_id="<m@x>", paper_ids=sent_papers, items=sent_items, now=NOW
        )
    delivery = store.get_delivery(alice.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.SENT
    assert list(delivery.paper_ids) == sent_papers
    assert [item.why for item in delivery.items] == [item.why for item in sent_items]


def test_removing_a_subscriber_removes_their_history(store: Store) -> None:
    alice = add_subscriber(store)
    send_issue(store, alice, paper_ids=["p1"])
    store.remove_subscriber(alice.email)
    with pytest.raises(UnknownSubscriber):
        store.find_subscriber(alice.email)
    assert store.list_deliveries() == []
    assert store.reading_history([alice.id], before=TODAY)[alice.id] == ReadingHistory()


def test_a_sender_lost_after_handing_over_the_message_leaves_it_in_doubt(store: Store) -> None:
    before, after = add_subscriber(store, "before@example.org"), add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        for subscriber in (before, after):
            assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE) == {subscriber.id: 1}
        assert ledger.mark_data_started(after.id, TODAY, now=NOW) is DataStart.STARTED
    # Both senders die; their leases run out.
    later = NOW + LEASE * 2

    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [before.id], now=later, lease=LEASE) == {before.id: 2}
        assert ledger.claim(TODAY, [after.id], now=later, lease=LEASE) == {}
    delivery = store.get_delivery(after.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.IN_DOUBT


def test_claims_take_only_planned_issues(store: Store) -> None:
    """Planning puts issues in the ledger and claims only take them: an issue never planned
    (its subscriber confirmed after the day was planned), or gone with its subscriber since,
    is nobody's to send, and the rest of the batch goes on."""
    planned = add_subscriber(store, "planned@example.org")
    erased = add_subscriber(store, "erased@example.org")
    plan_day(store, TODAY, now=NOW)
    late = add_subscriber(store, "late@example.org")
    store.erase_subscriber(erased.id, address_hash="h" * 64, now=NOW)
    ids = [planned.id, erased.id, late.id]

    with store.ledger() as ledger:
        assert ledger.claim_first_tries(TODAY, ids, now=NOW, lease=LEASE) == (
            {planned.id: 1},
            set(),
        )
        assert ledger.claim(TODAY, ids, now=NOW + LEASE * 2, lease=LEASE) == {planned.id: 2}
    assert [(d.subscriber_id, d.status) for d in store.list_deliveries()] == [
        (planned.id, DeliveryStatus.SENDING)
    ]


def test_a_batch_claims_first_tries_at_once_and_leaves_earlier_tries_one_by_one(
    store: Store,
) -> None:
    fresh, retried, sent = (add_subscriber(store, f"{name}@example.org") for name in "abc")
    ids = [fresh.id, retried.id, sent.id]
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        for subscriber in (retried, sent):
            assert ledger.claim(TODAY, [subscriber.id], now=NOW, lease=LEASE) == {subscriber.id: 1}
        ledger.record_failure(retried.id, TODAY, error="451", now=NOW, retry_at=NOW)
        ledger.record_sent(sent.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)

    with store.ledger() as ledger:
        claimed, tried_before = ledger.claim_first_tries(TODAY, ids, now=NOW, lease=LEASE)
        assert claimed == {fresh.id: 1}
        assert tried_before == {retried.id}
        assert ledger.claim(TODAY, [retried.id], now=NOW, lease=LEASE) == {retried.id: 2}
        # Claimed twice over is claimed once.
        assert ledger.claim_first_tries(TODAY, ids, now=NOW, lease=LEASE) == ({}, set())


def test_an_outcome_waits_for_the_next_write_and_a_lost_sender_leaves_it_in_doubt(
    store: Store,
) -> None:
    first, second = add_subscriber(store, "first@example.org"), add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        claimed, _ = ledger.claim_first_tries(TODAY, [first.id, second.id], now=NOW, lease=LEASE)
        assert ledger.mark_data_started(first.id, TODAY, now=NOW, attempt=claimed[first.id])
        ledger.record_sent(first.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)
        pending = store.get_delivery(first.id, TODAY)
        assert pending is not None and pending.status is DeliveryStatus.SENDING
        # The next message's start commits the first one's outcome with it.
        assert ledger.mark_data_started(
            second.id, TODAY, now=NOW, paper_ids=["p2"], attempt=claimed[second.id]
        )
        done = store.get_delivery(first.id, TODAY)
        assert done is not None and done.status is DeliveryStatus.SENT
        ledger.record_sent(second.id, TODAY, message_id="<n@x>", paper_ids=["p2"], now=NOW)
        # The sender dies here: the second outcome is never written.
        ledger._pending.clear()

    later = NOW + LEASE * 2
    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [second.id], now=later, lease=LEASE) == {}
    lost = store.get_delivery(second.id, TODAY)
    assert lost is not None and lost.status is DeliveryStatus.IN_DOUBT
    # Its papers most likely arrived: the next issue does not repeat them.
    tomorrow = TODAY + timedelta(days=1)
    history = store.reading_history([second.id], before=tomorrow)[second.id]
    assert history.sent_paper_ids == {"p2"}


def test_an_issue_whose_outcome_is_waiting_cannot_start_going_out_again(store: Store) -> None:
    """Its outcome and a second data start would be one statement on PostgreSQL, where two
    writes of one row in a statement leave either; the outcome must win."""
    subscriber = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        claimed, _ = ledger.claim_first_tries(TODAY, [subscriber.id], now=NOW, lease=LEASE)
        attempt = claimed[subscriber.id]
        assert ledger.mark_data_started(subscriber.id, TODAY, now=NOW, attempt=attempt)
        ledger.record_sent(
            subscriber.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW, attempt=attempt
        )
        again = ledger.mark_data_started(
            subscriber.id, TODAY, now=NOW, paper_ids=["p2"], attempt=attempt
        )
        assert again is DataStart.CLAIM_LOST
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.SENT
    assert list(delivery.paper_ids) == ["p1"]


def test_on_postgresql_a_data_start_and_the_outcome_before_it_are_one_statement(
    pg_store: Store,
) -> None:
    """One round trip per message: no BEGIN or COMMIT around it (autocommit), one UPDATE
    for both; a batch's claim is still one transaction of several statements."""
    store = pg_store
    first, second = add_subscriber(store, "first@example.org"), add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    statements: list[tuple[str, bool]] = []

    def seen(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append((statement.split()[0], connection.connection.dbapi_connection.autocommit))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.ledger() as ledger:
            claimed, _ = ledger.claim_first_tries(
                TODAY, [first.id, second.id], now=NOW, lease=LEASE
            )
            assert statements and all(not autocommit for _, autocommit in statements)
            statements.clear()
            assert ledger.mark_data_started(first.id, TODAY, now=NOW, attempt=claimed[first.id])
            ledger.record_sent(first.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)
            started = ledger.mark_data_started(
                second.id, TODAY, now=NOW, paper_ids=["p2"], attempt=claimed[second.id]
            )
            assert started is DataStart.STARTED
            assert statements == [("UPDATE", True), ("WITH", True)]
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    done = store.get_delivery(first.id, TODAY)
    assert done is not None and (done.status, done.message_id) == (DeliveryStatus.SENT, "<m@x>")
    going = store.get_delivery(second.id, TODAY)
    assert going is not None and going.status is DeliveryStatus.SENDING
    assert list(going.paper_ids) == ["p2"]


def test_a_sender_whose_lease_ran_out_can_no_longer_write_to_the_issue(store: Store) -> None:
    subscriber = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as slow:
        claimed, _ = slow.claim_first_tries(TODAY, [subscriber.id], now=NOW, lease=LEASE)
        later = NOW + LEASE * 2
        # Another sender takes the issue over; the first one wakes up afterwards.
        with store.ledger() as other:
            assert other.claim(TODAY, [subscriber.id], now=later, lease=LEASE) == {subscriber.id: 2}
        mine = claimed[subscriber.id]
        started = slow.mark_data_started(subscriber.id, TODAY, now=later, attempt=mine)
        assert started is DataStart.CLAIM_LOST
        slow.record_failure(subscriber.id, TODAY, error="451", now=later, attempt=mine)
    delivery = store.get_delivery(subscriber.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENDING, 2)


def test_a_long_batch_renews_the_leases_it_still_holds(store: Store) -> None:
    first, second = add_subscriber(store, "first@example.org"), add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        ledger.claim_first_tries(TODAY, [first.id, second.id], now=NOW, lease=LEASE)
        ledger.renew_leases(TODAY, [second.id], now=NOW + LEASE / 2, lease=LEASE)
    # The first lease ran out; the renewed second one still holds.
    at = NOW + LEASE + timedelta(minutes=1)
    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [first.id], now=at, lease=LEASE) == {first.id: 2}
        assert ledger.claim(TODAY, [second.id], now=at, lease=LEASE) == {}


def test_downgrading_rebuilds_the_sent_papers_table_from_the_ledger(store: Store) -> None:
    from alembic import command
    from alembic.config import Config

    alice = add_subscriber(store)
    for day, papers in ((TODAY, ["p1", "p2"]), (TODAY + timedelta(days=1), ["p2", "p3"])):
        send_issue(store, alice, day, paper_ids=papers, message_id=f"<{day}@x>")

    config = Config()
    config.set_main_option("script_location", "service.store:migrations")
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT paper_id, issue_date FROM sent_papers")).all()
    assert sorted((paper, str(day)) for paper, day in rows) == [
        ("p1", str(TODAY)),
        ("p2", str(TODAY)),
        ("p3", str(TODAY + timedelta(days=1))),
    ]
    store.upgrade()
    assert "sent_papers" not in inspect(store.engine).get_table_names()


def test_claims_and_outcomes_read_only_their_own_rows_even_before_statistics_catch_up(
    postgres_url: str,
) -> None:
    """Right after a day is planned, PostgreSQL's statistics would still describe the day
    before; no plan of the ledger's hot statements may then read the whole day."""
    from tests.conftest import _empty_all_tables

    store = Store(postgres_url)
    _empty_all_tables(store)
    try:
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO subscribers (email, status, time_zone, delivery_hour,"
                    " frequency, weekday, created_at) SELECT"
                    " 'r' || n || '@example.org', 'confirmed', 'UTC', 8, 'daily', 0, now()"
                    " FROM generate_series(1, 20000) n"
                )
            )
        # A first day: the ledger has no statistics yet, the case where planners misjudge most.
        schedule = Schedule(time_zone="UTC", delivery_hour=8, frequency=Frequency.DAILY, weekday=0)
        assert len(store.plan_issues(schedule, TODAY, now=NOW, expires_at=None)) == 20000
        # The shapes of the ledger's hot statements: a batch's claim, one issue's outcome.
        batch = "issue_date = :day AND subscriber_id = ANY(:ids)"
        one = "issue_date = :day AND subscriber_id = :sid"
        statements = [
            f"UPDATE deliveries SET status = 'sending' WHERE {batch} AND status = 'planned'"
            " AND attempts = 0",
            f"SELECT subscriber_id FROM deliveries WHERE {batch} AND status IN ('planned',"
            " 'retry')",
            f"UPDATE deliveries SET data_started_at = now() WHERE {one} AND status = 'sending'"
            " AND attempts = 1",
            f"UPDATE deliveries SET status = 'sent' WHERE {one} AND status = 'sending'",
        ]
        params = {"day": TODAY, "ids": list(range(1, 101)), "sid": 7}
        with store.engine.connect() as connection:
            for statement in statements:
                plan = "\n".join(
                    row[0] for row in connection.execute(text(f"EXPLAIN {statement}"), params)
                )
                assert "ix_deliveries_issue_date_subscriber_id" in plan, plan
                assert "subscriber_id" in plan.split("Index Cond")[1], plan
                assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
    finally:
        _empty_all_tables(store)
        store.close()


def test_upgrading_to_signup_columns_keeps_subscribers_and_their_ledger(tmp_path: Path) -> None:
    """0005 alters `subscribers` in place: a rebuilt table would take every ledger row with it
    through ON DELETE CASCADE on SQLite."""
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade("0004")
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO subscribers (email, status, keywords, interests_text, time_zone,"
                    " delivery_hour, frequency, weekday, trending_weight, hard_bounces,"
                    " created_at) VALUES ('ada@example.org', 'confirmed', '[]', '', 'UTC', 8,"
                    " 'daily', 0, 0.3, 0, '2026-11-25 07:00:00+00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO deliveries (subscriber_id, issue_date, status, paper_ids,"
                    " attempts, created_at, updated_at) VALUES (1, '2026-11-25', 'sent',"
                    " '[\"p1\"]', 1, '2026-11-25 07:00:00+00:00', '2026-11-25 07:00:00+00:00')"
                )
            )
        store.upgrade()
        (subscriber,) = store.list_subscribers()
        assert subscriber.consent == ()
        assert [d.paper_ids for d in store.list_deliveries()] == [("p1",)]
    finally:
        store.close()


def test_it_keeps_each_observation_of_trending_signals(store: Store) -> None:
    store.upsert_papers([make_paper(id="p1", upvotes=3)], now=NOW)
    store.upsert_papers([make_paper(id="p1", upvotes=9, comments=2)], now=NOW + timedelta(hours=1))
    store.upsert_papers([make_paper(id="p1", upvotes=None)], now=NOW + timedelta(hours=2))
    history = store.paper_signals("p1")
    assert [(s.observed_at, s.upvotes, s.comments) for s in history] == [
        (NOW, 3, None),
        (NOW + timedelta(hours=1), 9, 2),
    ]


def test_a_paper_from_a_second_source_keeps_what_the_first_one_gave(store: Store) -> None:
    store.upsert_papers(
        [
            make_paper(
                id="p1",
                upvotes=5,
                summary="Short.",
                keywords=("a b",),
                hf_url="https://h/p1",
                github_repo="https://github.com/example/p1",
            )
        ],
        now=NOW,
    )
    store.upsert_papers(
        [make_paper(id="p1", upvotes=None, categories=("cs.LG", "cs.CL"))],
        now=NOW + timedelta(hours=1),
    )
    paper = store.get_paper("p1")
    assert paper is not None
    assert (paper.upvotes, paper.summary, paper.keywords) == (5, "Short.", ("a b",))
    assert (paper.hf_url, paper.categories) == ("https://h/p1", ("cs.LG", "cs.CL"))
    assert paper.github_repo == "https://github.com/example/p1"


def test_migration_0006_keeps_existing_papers(tmp_path: Path) -> None:
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.upgrade("0005")
    with old.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO papers (id, title, abstract, authors, source, first_seen_at,"
                " updated_at) VALUES ('p1', 'Old paper', '', '[]', 'import',"
                " '2026-11-01 00:00:00', '2026-11-01 00:00:00')"
            )
        )
    old.upgrade()
    paper = old.get_paper("p1")
    old.close()
    assert paper is not None
    assert (paper.summary, paper.keywords, paper.categories, paper.hf_url) == ("", (), (), None)


def test_a_subscriber_id_is_never_given_again(store: Store) -> None:
    """SQLite gives the highest rowid again once its row is gone; an id names whom a link is
    for, so none may ever come back."""
    add_subscriber(store, "alice@example.org")
    removed = add_subscriber(store, "bob@example.org")
    store.remove_subscriber("bob@example.org")
    erased = add_subscriber(store, "carol@example.org")
    assert erased.id > removed.id
    store.erase_subscriber(erased.id, address_hash="h" * 64, now=NOW)
    pending = add_subscriber(store, "dan@example.org", status=SubscriptionStatus.PENDING)
    assert pending.id > erased.id
    assert store.prune_pending(created_before=NOW + timedelta(days=1)) == 1
    assert add_subscriber(store, "erin@example.org").id > pending.id


def test_every_new_subscriber_gets_a_link_key_of_their_own(store: Store) -> None:
    keys = [add_subscriber(store, f"p{n}@example.org").link_key for n in range(5)]
    assert all(key and len(key) >= 20 for key in keys)
    assert len(set(keys)) == 5


CONSENT_0006 = '[{"event": "confirmed", "at": "2026-11-25T07:00:00Z", "via": "admin CLI"}]'


def _seed_0006(store: Store) -> None:
    """Three subscribers and a ledger row each, as a 0006 database holds them."""
    with store.engine.begin() as connection:
        for n in (1, 2, 3):
            connection.execute(
                text(
                    "INSERT INTO subscribers (id, email, status, keywords, interests_text,"
                    " time_zone, delivery_hour, frequency, weekday, trending_weight,"
                    " hard_bounces, created_at, consent, requested_preferences) VALUES"
                    " (:id, :email, 'confirmed', '[\"graph networks\"]', 'About.', 'UTC', 8,"
                    " 'daily', 0, 0.3, 1, '2026-11-25 07:00:00+00:00',"
                    """ :consent, '{"time_zone": "UTC"}')"""
                ),
                {"id": n, "email": f"s{n}@example.org", "consent": CONSENT_0006},
            )
            connection.execute(
                text(
                    "INSERT INTO deliveries (subscriber_id, issue_date, status, paper_ids,"
                    " attempts, created_at, updated_at) VALUES (:id, '2026-11-25', 'sent',"
                    " '[\"p1\", \"p2\"]', 1, '2026-11-25 07:00:00+00:00',"
                    " '2026-11-25 07:00:00+00:00')"
                ),
                {"id": n},
            )


def _check_0007_kept_0006(store: Store) -> None:
    subscribers = store.list_subscribers()
    assert [(s.id, s.email, s.link_key) for s in subscribers] == [
        (n, f"s{n}@example.org", None) for n in (1, 2, 3)
    ]
    assert all(s.interests.keywords == ("graph networks",) for s in subscribers)
    record = store.subscriber_record(3)
    assert record["subscriber"]["consent"] == json.loads(CONSENT_0006)
    assert record["subscriber"]["requested_preferences"] == {"time_zone": "UTC"}
    assert record["subscriber"]["bounce_score"] == 1
    deliveries = store.list_deliveries()
    assert [(d.subscriber_id, d.paper_ids) for d in deliveries] == [
        (n, ("p1", "p2")) for n in (1, 2, 3)
    ]
    # The highest id, gone, is not given again.
    store.remove_subscriber("s3@example.org")
    assert add_subscriber(store, "new@example.org").id == 4


def test_migration_0007_keeps_subscribers_and_ledger_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade()
        _check_0007_kept_0006(store)
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        store.close()


@contextmanager
def _fresh_postgres_store(postgres_url: str, suffix: str) -> Iterator[Store]:
    """A store in a database of its own on the test server, to migrate from an old revision."""
    server = make_url(postgres_url)
    name = f"{server.database}_{suffix}"
    conninfo = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    store = Store(server.set(database=name).render_as_string(hide_password=False))
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0007_keeps_subscribers_and_ledger_on_postgresql(postgres_url: str) -> None:
    with _fresh_postgres_store(postgres_url, "0007") as store:
        store.upgrade("0006")
        _seed_0006(store)
        with store.engine.begin() as connection:
            # As a sequence stands after three rows were added through it.
            connection.execute(text("SELECT setval('subscribers_id_seq', 3)"))
        store.upgrade()
        _check_0007_kept_0006(store)


def _check_0008_sorts_out_refusals(store: Store) -> None:
    """A 0007 ledger's failed issues: permanent refusals become `refused`, the rest stay."""
    errors = {
        1: "SMTP 550 5.1.1 no such user (at RCPT TO, to s1@example.org)",
        2: "SMTP 552 5.2.2 mailbox full (at RCPT TO, to s2@example.org)",
        3: "gave up after 5 attempts; last error: SMTP 451 busy",
    }
    with store.engine.begin() as connection:
        for subscriber_id, error in errors.items():
            connection.execute(
                text(
                    "UPDATE deliveries SET status = 'failed', last_error = :error"
                    " WHERE subscriber_id = :id"
                ),
                {"id": subscriber_id, "error": error},
            )
    store.upgrade()
    deliveries = store.list_deliveries()
    assert [(d.subscriber_id, d.status, d.in_doubt_count) for d in deliveries] == [
        (1, DeliveryStatus.REFUSED, 0),
        (2, DeliveryStatus.FAILED, 0),
        (3, DeliveryStatus.FAILED, 0),
    ]
    assert "notices" in inspect(store.engine).get_table_names()


def test_migration_0008_sorts_out_refusals_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade("0007")
        _check_0008_sorts_out_refusals(store)
    finally:
        store.close()


def test_migration_0008_sorts_out_refusals_on_postgresql(postgres_url: str) -> None:
    with _fresh_postgres_store(postgres_url, "0008") as store:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade("0007")
        _check_0008_sorts_out_refusals(store)


def _planned(store: Store, *, expires_at: datetime | None = None) -> int:
    subscriber = add_subscriber(store, time_zone="UTC", delivery_hour=8)
    schedule = Schedule(time_zone="UTC", delivery_hour=8, frequency=Frequency.DAILY, weekday=0)
    assert store.plan_issues(schedule, TODAY, now=NOW, expires_at=expires_at) == [subscriber.id]
    return subscriber.id


@pytest.mark.parametrize("in_doubt_before", [False, True])
def test_the_give_up_time_is_checked_for_each_message(store: Store, in_doubt_before: bool) -> None:
    """A batch claimed before the deadline sends nothing once it has passed: the message that
    would go out after it is not sent, and the issue ends expired (or in doubt, if an earlier
    attempt may have delivered it)."""
    deadline = NOW + timedelta(minutes=10)
    subscriber_id = _planned(store, expires_at=deadline)
    with store.ledger() as ledger:
        if in_doubt_before:
            (attempt,) = ledger.claim(TODAY, [subscriber_id], now=NOW, lease=LEASE).values()
            ledger.record_in_doubt(
                subscriber_id,
                TODAY,
                message_id="<m@x>",
                error="no reply after the final dot",
                now=NOW,
                attempt=attempt,
                resends=1,
                resend_at=NOW + timedelta(minutes=1),
            )
            ledger.flush()
        at = NOW + timedelta(minutes=2)
        (attempt,) = ledger.claim(TODAY, [subscriber_id], now=at, lease=LEASE).values()
        on_time = ledger.mark_data_started(subscriber_id, TODAY, now=at, attempt=attempt)
        ledger.record_failure(
            subscriber_id, TODAY, error="451", now=at, retry_at=at, attempt=attempt
        )
        ledger.flush()
        # Claimed just before the deadline; its message would go out just after it.
        claimed_at = deadline - timedelta(seconds=1)
        (attempt,) = ledger.claim(TODAY, [subscriber_id], now=claimed_at, lease=LEASE).values()
        late = ledger.mark_data_started(
            subscriber_id, TODAY, now=deadline + timedelta(seconds=1), attempt=attempt
        )
    assert (on_time, late) == (DataStart.STARTED, DataStart.EXPIRED)
    delivery = store.get_delivery(subscriber_id, TODAY)
    assert delivery is not None
    expected = DeliveryStatus.IN_DOUBT if in_doubt_before else DeliveryStatus.EXPIRED
    assert delivery.status is expected


def test_an_issue_that_may_have_arrived_never_ends_plain_failed(store: Store) -> None:
    """After an attempt of unknown outcome, later failures up to the attempt cap leave the
    issue in doubt, which a default retry leaves alone: a copy may be in the mailbox."""
    subscriber_id = _planned(store)
    with store.ledger() as ledger:
        (attempt,) = ledger.claim(TODAY, [subscriber_id], now=NOW, lease=LEASE).values()
        ledger.record_in_doubt(
            subscriber_id,
            TODAY,
            message_id="<m@x>",
            error="no reply after the final dot",
            now=NOW,
            attempt=attempt,
            resends=1,
            resend_at=NOW,
        )
        for minutes in (1, 2):
            at = NOW + timedelta(minutes=minutes)
            claimed = ledger.claim(TODAY, [subscriber_id], now=at, lease=LEASE, max_attempts=3)
            ledger.record_failure(
                subscriber_id,
                TODAY,
                error="451 busy",
                now=at,
                retry_at=at,
                attempt=claimed[subscriber_id],
            )
        assert (
            ledger.claim(
                TODAY, [subscriber_id], now=NOW + timedelta(minutes=3), lease=LEASE, max_attempts=3
            )
            == {}
        )
    delivery = store.get_delivery(subscriber_id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.attempts, delivery.in_doubt_count) == (
        DeliveryStatus.IN_DOUBT,
        3,
        1,
    )
    assert (delivery.last_error or "").startswith("gave up after 3 attempts")
    reopened = store.reopen_issues(
        issue_date=TODAY,
        statuses=[DeliveryStatus.FAILED, DeliveryStatus.EXPIRED],
        now=NOW + timedelta(hours=1),
    )
    assert reopened == []


def test_a_retry_reopens_only_issues_of_subscribers_still_confirmed(store: Store) -> None:
    kept = _planned(store)
    left = add_subscriber(store, "left@example.org", time_zone="UTC", delivery_hour=8)
    schedule = Schedule(time_zone="UTC", delivery_hour=8, frequency=Frequency.DAILY, weekday=0)
    store.plan_issues(schedule, TODAY, now=NOW, expires_at=None)
    with store.ledger() as ledger:
        for subscriber_id in (kept, left.id):
            assert ledger.claim(TODAY, [subscriber_id], now=NOW, lease=LEASE)
            ledger.record_failure(subscriber_id, TODAY, error="gave up", now=NOW)
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE subscribers SET status = 'suppressed' WHERE id = :id"), {"id": left.id}
        )
    reopened = store.reopen_issues(
        issue_date=TODAY, statuses=[DeliveryStatus.FAILED], now=NOW + timedelta(hours=1)
    )
    assert reopened == [(kept, TODAY)]


def _ledger_rows(store: Store) -> list[tuple[int, str, str]]:
    """The ledger as SQL reads it at any revision (the store's own queries ask for the
    columns of the newest)."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT subscriber_id, status, paper_ids FROM deliveries ORDER BY subscriber_id")
        ).all()
    return [
        (row[0], row[1], json.dumps(row[2]) if not isinstance(row[2], str) else row[2])
        for row in rows
    ]


def _check_0009_gives_every_subscriber_an_empty_profile(store: Store) -> None:
    """0008's subscribers and ledger come through 0009 whole, with nothing liked, followed or
    left out."""
    ledger_before = _ledger_rows(store)
    store.upgrade()
    subscribers = store.list_subscribers()
    assert len(subscribers) == 3
    assert all(
        (s.interests.liked, s.interests.disliked, s.interests.authors, s.interests.excluded)
        == ((), (), (), ())
        for s in subscribers
    )
    assert _ledger_rows(store) == ledger_before
    assert store.set_paper_vote(subscribers[0].id, "2511.00001", Vote.LIKE) is None
    assert store.get_subscriber(subscribers[0].id).interests.liked == ("2511.00001",)


def test_migration_0009_keeps_subscribers_and_ledger_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade("0008")
        _check_0009_gives_every_subscriber_an_empty_profile(store)
    finally:
        store.close()


def test_migration_0009_keeps_subscribers_and_ledger_on_postgresql(postgres_url: str) -> None:
    with _fresh_postgres_store(postgres_url, "0009") as store:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade("0008")
        _check_0009_gives_every_subscriber_an_empty_profile(store)


def test_a_vote_replaces_the_other_and_saving_preferences_keeps_votes(store: Store) -> None:
    alice = add_subscriber(
        store,
        interests=Interests(keywords=("diffusion",), liked=("2511.00001",), authors=("J. Müller",)),
    )
    assert alice.interests.liked == ("2511.00001",)
    assert store.set_paper_vote(alice.id, "2511.00002", Vote.DISLIKE) is None
    assert store.set_paper_vote(alice.id, "2511.00002", Vote.DISLIKE) is Vote.DISLIKE
    assert store.set_paper_vote(alice.id, "2511.00002", Vote.LIKE) is Vote.DISLIKE
    interests = store.get_subscriber(alice.id).interests
    assert (interests.liked, interests.disliked) == (("2511.00001", "2511.00002"), ())
    store.update_preferences(alice.id, make_preferences(interests=Interests(keywords=("gnn",))))
    interests = store.get_subscriber(alice.id).interests
    assert interests.keywords == ("gnn",)
    assert interests.liked == ("2511.00001", "2511.00002")  # votes are not form fields
    assert interests.authors == ()
    assert store.set_paper_vote(alice.id, "2511.00001", None) is Vote.LIKE
    assert store.get_subscriber(alice.id).interests.liked == ("2511.00002",)


def test_the_oldest_votes_drop_out_beyond_the_limit(store: Store) -> None:
    alice = add_subscriber(store)
    for number in range(MAX_PAPER_VOTES + 2):
        store.set_paper_vote(alice.id, f"2511.{number:05d}", Vote.LIKE)
    liked = store.get_subscriber(alice.id).interests.liked
    assert len(liked) == MAX_PAPER_VOTES
    assert liked[0] == "2511.00002"
    assert liked[-1] == f"2511.{MAX_PAPER_VOTES + 1:05d}"


def test_a_vote_on_something_that_is_no_paper_id_is_refused(store: Store) -> None:
    alice = add_subscriber(store)
    with pytest.raises(InvalidInput, match="not a paper id"):
        store.set_paper_vote(alice.id, "2511.00001 <script>", Vote.LIKE)
    assert store.get_subscriber(alice.id).interests.liked == ()


def _check_0010_keeps_0009(store: Store) -> None:
    """0009's subscribers, ledger and papers come through 0010 whole: no item kept of an old
    issue, nobody feed-only, no repository known."""
    ledger_before = _ledger_rows(store)
    store.upgrade("0010")
    with store.engine.connect() as connection:
        subscribers = connection.execute(text("SELECT id, email FROM subscribers ORDER BY id"))
        assert [tuple(row) for row in subscribers] == [(n, f"s{n}@example.org") for n in (1, 2, 3)]
    assert _ledger_rows(store) == ledger_before
    with store.engine.connect() as connection:
        items = connection.execute(text("SELECT items FROM deliveries")).scalars().all()
        feed_only = connection.execute(text("SELECT feed_only FROM subscribers")).scalars().all()
        repos = connection.execute(text("SELECT github_repo FROM papers")).scalars().all()
    assert [json.loads(value) if isinstance(value, str) else value for value in items] == [[]] * 3
    assert [bool(value) for value in feed_only] == [False] * 3
    assert repos == []


def test_migration_0010_keeps_subscribers_and_ledger_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade("0009")
        _check_0010_keeps_0009(store)
    finally:
        store.close()


def test_migration_0010_keeps_subscribers_and_ledger_on_postgresql(postgres_url: str) -> None:
    with _fresh_postgres_store(postgres_url, "0010") as store:
        store.upgrade("0006")
        _seed_0006(store)
        store.upgrade("0009")
        _check_0010_keeps_0009(store)
