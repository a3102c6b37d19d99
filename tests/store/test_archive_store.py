"""What the archive and the feed read from the store, on SQLite and PostgreSQL: each issue's
items as the reader saw them, kept by every way the ledger records an issue going out, and a
subscriber's issues sent, newest first, a page at a time."""

from datetime import UTC, datetime, timedelta

from service.delivery.planning import plan_day
from service.models import DeliveryStatus, IssueItem
from service.store import DataStart, Store
from tests.support.factories import NOW, TODAY, add_subscriber, send_issue

LEASE = timedelta(minutes=10)
ITEMS = (
    IssueItem(paper_id="p2", why="Matches “diffusion models”; trending this week."),
    IssueItem(paper_id="p1", why="Trending this week.", section="Robotics"),
)
PAPER_IDS = ["p2", "p1"]


def test_an_issue_sent_keeps_its_items_in_the_order_sent(store: Store) -> None:
    alice = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        (attempt,) = ledger.claim(TODAY, [alice.id], now=NOW, lease=LEASE).values()
        started = ledger.mark_data_started(
            alice.id, TODAY, now=NOW, paper_ids=PAPER_IDS, items=ITEMS, attempt=attempt
        )
        assert started is DataStart.STARTED
        ledger.record_sent(
            alice.id,
            TODAY,
            message_id="<m@x>",
            paper_ids=PAPER_IDS,
            items=ITEMS,
            now=NOW,
            attempt=attempt,
        )
    delivery = store.get_delivery(alice.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.SENT
    assert delivery.items == ITEMS
    assert delivery.paper_ids == tuple(PAPER_IDS)


def test_an_issue_whose_sender_was_lost_mid_message_keeps_its_items(store: Store) -> None:
    alice = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        (attempt,) = ledger.claim(TODAY, [alice.id], now=NOW, lease=LEASE).values()
        ledger.mark_data_started(
            alice.id, TODAY, now=NOW, paper_ids=PAPER_IDS, items=ITEMS, attempt=attempt
        )
    # The sender died after the data started; the next claim finds the issue in doubt.
    with store.ledger() as ledger:
        assert ledger.claim(TODAY, [alice.id], now=NOW + LEASE * 2, lease=LEASE) == {}
    delivery = store.get_delivery(alice.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.IN_DOUBT
    assert delivery.items == ITEMS


def test_an_issue_in_doubt_keeps_its_items(store: Store) -> None:
    alice = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        (attempt,) = ledger.claim(TODAY, [alice.id], now=NOW, lease=LEASE).values()
        ledger.record_in_doubt(
            alice.id,
            TODAY,
            message_id="<m@x>",
            error="connection closed after the final dot",
            now=NOW,
            paper_ids=PAPER_IDS,
            items=ITEMS,
            attempt=attempt,
        )
    delivery = store.get_delivery(alice.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.IN_DOUBT
    assert delivery.items == ITEMS


def test_an_issue_for_the_feed_alone_is_sent_with_no_message_id(store: Store) -> None:
    alice = add_subscriber(store)
    plan_day(store, TODAY, now=NOW)
    with store.ledger() as ledger:
        (attempt,) = ledger.claim(TODAY, [alice.id], now=NOW, lease=LEASE).values()
        ledger.record_sent(
            alice.id,
            TODAY,
            message_id=None,
            paper_ids=PAPER_IDS,
            items=ITEMS,
            now=NOW,
            attempt=attempt,
        )
    delivery = store.get_delivery(alice.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.message_id, delivery.sent_at, delivery.items) == (
        DeliveryStatus.SENT,
        None,
        NOW,
        ITEMS,
    )


def test_the_archive_reads_a_subscribers_issues_sent_newest_first_a_page_at_a_time(
    store: Store,
) -> None:
    alice = add_subscriber(store)
    bob = add_subscriber(store, "bob@example.org")
    days = [TODAY - timedelta(days=n) for n in range(5)]
    for day in days:
        sent_at = datetime.combine(day, NOW.time(), tzinfo=UTC)
        send_issue(store, alice, day, paper_ids=[f"p-{day}"], now=sent_at)
    send_issue(store, bob, TODAY, paper_ids=["b"])
    # Planned, skipped and failed issues are not in the archive.
    for status_day, record in (
        (TODAY + timedelta(days=1), "skip"),
        (TODAY + timedelta(days=2), "fail"),
    ):
        plan_day(store, status_day, now=NOW)
        with store.ledger() as ledger:
            (attempt,) = ledger.claim(status_day, [alice.id], now=NOW, lease=LEASE).values()
            if record == "skip":
                ledger.record_skipped(alice.id, status_day, now=NOW, attempt=attempt)
            else:
                ledger.record_failure(alice.id, status_day, error="550", now=NOW, attempt=attempt)
    plan_day(store, TODAY + timedelta(days=3), now=NOW)

    first = store.archived_issues(alice.id, limit=2)
    second = store.archived_issues(alice.id, limit=2, offset=2)
    last = store.archived_issues(alice.id, limit=2, offset=4)

    assert [d.issue_date for d in (*first, *second, *last)] == days
    assert all(d.subscriber_id == alice.id for d in (*first, *second, *last))
    assert store.archived_issues(alice.id, limit=2, offset=6) == []
    assert store.count_archived_issues(alice.id) == 5
    assert store.count_archived_issues(bob.id) == 1
    assert first[0].paper_ids == (f"p-{TODAY}",)
