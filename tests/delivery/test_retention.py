"""The ledger's retention: issues older than the cut-off go, a few thousand per transaction;
the last 30 days never do, nor an issue being sent; the reading history is untouched."""

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from service.delivery import retention
from service.delivery.retention import check_cutoff, prune_ledger, retention_cutoff
from service.delivery.schedule import Schedule
from service.errors import InvalidInput
from service.models import DeliveryStatus, Subscriber
from service.store import Store
from tests.support.factories import NOW, TODAY, add_subscriber, make_settings, send_issue

LEASE = timedelta(minutes=5)


def issue_dates(store: Store, subscriber: Subscriber) -> list[date]:
    history = [
        day
        for day in (TODAY - timedelta(days=offset) for offset in range(0, 500))
        if store.get_delivery(subscriber.id, day) is not None
    ]
    return sorted(history)


def test_issues_before_the_cutoff_go_in_transactions_of_a_few(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PRUNED_PER_TRANSACTION", 2)
    alice = add_subscriber(store, "alice@example.org")
    bob = add_subscriber(store, "bob@example.org")
    old_days = [TODAY - timedelta(days=days) for days in (450, 420, 401)]
    kept_days = [TODAY - timedelta(days=days) for days in (400, 31, 1)]
    for day in [*old_days, *kept_days]:
        for subscriber in (alice, bob):
            send_issue(store, subscriber, day, paper_ids=[f"p-{day}"], now=NOW)
    deleted_per_transaction: list[int] = []

    cutoff = retention_cutoff(TODAY, 400)
    assert cutoff == TODAY - timedelta(days=400)
    assert store.count_deliveries_before(cutoff) == 6
    pruned = prune_ledger(
        store, before=cutoff, today=TODAY, on_pruned=deleted_per_transaction.append
    )

    assert pruned == 6 and deleted_per_transaction == [2, 2, 2]
    assert issue_dates(store, alice) == issue_dates(store, bob) == sorted(kept_days)
    # What the next issue must leave out is still known.
    history = store.reading_history([alice.id], before=TODAY + timedelta(days=1))
    assert f"p-{TODAY - timedelta(days=1)}" in history[alice.id].sent_paper_ids
    assert store.count_deliveries_before(cutoff) == 0


def test_an_issue_being_sent_is_never_pruned(store: Store) -> None:
    alice = add_subscriber(store)
    old_day = TODAY - timedelta(days=90)
    send_issue(store, alice, old_day, paper_ids=["p1"])
    bob = add_subscriber(store, "bob@example.org")
    store.plan_issues(Schedule.of(bob), old_day, now=NOW, expires_at=None)
    with store.ledger() as ledger:
        ledger.claim(old_day, [bob.id], now=NOW, lease=LEASE)
    assert prune_ledger(store, before=TODAY - timedelta(days=60), today=TODAY) == 1
    delivery = store.get_delivery(bob.id, old_day)
    assert delivery is not None and delivery.status is DeliveryStatus.SENDING
    assert store.get_delivery(alice.id, old_day) is None


def test_the_last_thirty_days_are_always_kept(store: Store) -> None:
    alice = add_subscriber(store)
    send_issue(store, alice, TODAY - timedelta(days=10), paper_ids=["p1"])
    with pytest.raises(InvalidInput, match="keeps the last 30 days"):
        prune_ledger(store, before=TODAY - timedelta(days=29), today=TODAY)
    assert store.get_delivery(alice.id, TODAY - timedelta(days=10)) is not None
    check_cutoff(TODAY - timedelta(days=30), today=TODAY)


def test_retention_zero_keeps_everything_and_short_retention_is_refused() -> None:
    assert retention_cutoff(TODAY, 0) is None
    assert make_settings(ledger_retention_days=30).ledger_retention_days == 30
    with pytest.raises(ValidationError, match="keep at least 30 days"):
        make_settings(ledger_retention_days=29)
