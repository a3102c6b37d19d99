"""Bounce scoring as Mailman does it, complaints, unsubscribe counts, the operator inbox and
webhook receipts, on SQLite and PostgreSQL."""

from datetime import timedelta

from service.models import BouncePolicy, MailEventKind, SubscriptionStatus, UnsubscribeChannel
from service.signup.subscriptions import RequestOrigin, unsubscribe
from service.store import Store
from service.store.mail_events import INBOUND_KEPT_BYTES
from tests.support.factories import NOW, TODAY, add_subscriber, send_issue

POLICY = BouncePolicy(limit=5, stale_after=timedelta(days=7))
HARD, SOFT = MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE


def _bounce(store: Store, subscriber_id: int, kind: MailEventKind, days: float) -> float:
    outcome = store.record_bounce(
        subscriber_id, kind, via="dsn", at=NOW + timedelta(days=days), policy=POLICY
    )
    assert outcome is not None
    return outcome.score


def test_a_hard_bounce_adds_one_and_a_soft_one_half(store: Store) -> None:
    subscriber = add_subscriber(store)
    assert _bounce(store, subscriber.id, HARD, 0) == 1
    assert _bounce(store, subscriber.id, SOFT, 1) == 1.5
    assert _bounce(store, subscriber.id, HARD, 2) == 2.5


def test_a_day_counts_once_at_its_worst(store: Store) -> None:
    subscriber = add_subscriber(store)
    assert _bounce(store, subscriber.id, SOFT, 0) == 0.5
    assert _bounce(store, subscriber.id, SOFT, 0.01) == 0.5  # the relay's webhook, same bounce
    assert _bounce(store, subscriber.id, HARD, 0.02) == 1  # worse: the day now counts 1
    assert _bounce(store, subscriber.id, HARD, 0.03) == 1
    # Every report is kept as history all the same.
    assert len(store.mail_events(subscriber.id)) == 4


def test_bounce_information_older_than_a_week_is_stale(store: Store) -> None:
    subscriber = add_subscriber(store)
    for day in range(4):
        _bounce(store, subscriber.id, HARD, day)
    assert store.get_subscriber(subscriber.id).bounce_score == 4
    # Eight days of silence: the next bounce starts afresh.
    assert _bounce(store, subscriber.id, HARD, 3 + 8) == 1
    row = store.get_subscriber(subscriber.id)
    assert row.last_bounce_at == NOW + timedelta(days=11)
    at = NOW + timedelta(days=11)
    assert POLICY.current_score(row.bounce_score, row.last_bounce_at, now=at) == 1
    later = at + timedelta(days=8)
    assert POLICY.current_score(row.bounce_score, row.last_bounce_at, now=later) == 0


def test_five_bounce_days_suppress_with_reason_bouncing(store: Store) -> None:
    subscriber = add_subscriber(store)
    for day in range(4):
        _bounce(store, subscriber.id, HARD, day)
        assert store.get_subscriber(subscriber.id).status is SubscriptionStatus.CONFIRMED
    outcome = store.record_bounce(
        subscriber.id, HARD, via="dsn", at=NOW + timedelta(days=4), policy=POLICY
    )
    assert outcome is not None and outcome.suppressed and outcome.score == 5
    suppressed = store.get_subscriber(subscriber.id)
    assert suppressed.status is SubscriptionStatus.SUPPRESSED
    assert (suppressed.consent[-1].event, suppressed.consent[-1].reason) == (
        "suppressed",
        "bouncing",
    )
    # A sixth bounce is history only: suppressed once.
    again = store.record_bounce(
        subscriber.id, HARD, via="dsn", at=NOW + timedelta(days=5), policy=POLICY
    )
    assert again is not None and not again.suppressed
    assert [e.event for e in store.get_subscriber(subscriber.id).consent].count("suppressed") == 1


def test_a_later_successful_delivery_leaves_the_history(store: Store) -> None:
    subscriber = add_subscriber(store)
    _bounce(store, subscriber.id, HARD, 0)
    send_issue(store, subscriber, paper_ids=["p1"], issue_date=TODAY + timedelta(days=1))
    assert store.get_subscriber(subscriber.id).bounce_score == 1
    assert [e.kind for e in store.mail_events(subscriber.id)] == [HARD]


def test_a_complaint_suppresses_at_once(store: Store) -> None:
    subscriber = add_subscriber(store)
    assert store.record_complaint(subscriber.id, via="arf", at=NOW, issue_date=TODAY)
    complained = store.get_subscriber(subscriber.id)
    assert complained.status is SubscriptionStatus.SUPPRESSED
    assert complained.consent[-1].reason == "complaint"
    assert complained.unsubscribed_at == NOW
    [event] = store.mail_events(subscriber.id)
    assert (event.kind, event.via, event.issue_date) == (MailEventKind.COMPLAINT, "arf", TODAY)
    assert not store.record_complaint(10_000, via="arf", at=NOW)


def test_reports_about_someone_gone_change_nothing(store: Store) -> None:
    assert store.record_bounce(10_000, HARD, via="dsn", at=NOW, policy=POLICY) is None


def test_events_are_counted_per_day_by_kind_and_channel(store: Store) -> None:
    first, second, third = (add_subscriber(store, f"p{n}@example.org") for n in range(3))
    origin = RequestOrigin(ip=None, user_agent=None, via="test")
    unsubscribe(store, first.id, origin=origin, now=NOW, channel=UnsubscribeChannel.ONE_CLICK)
    # Twice: the second changes nothing and is not counted.
    unsubscribe(store, first.id, origin=origin, now=NOW, channel=UnsubscribeChannel.LINK)
    unsubscribe(store, second.id, origin=origin, now=NOW, channel=UnsubscribeChannel.MAILTO)
    _bounce(store, third.id, SOFT, 1)
    store.record_complaint(third.id, via="ses", at=NOW + timedelta(days=1))
    counts = store.mail_event_counts(since=TODAY)
    assert counts[NOW.date()] == {("unsubscribe", "one-click"): 1, ("unsubscribe", "mailto"): 1}
    next_day = (NOW + timedelta(days=1)).date()
    assert counts[next_day] == {("soft_bounce", "dsn"): 1, ("complaint", "ses"): 1}
    assert store.mail_event_counts(since=next_day + timedelta(days=1)) == {}


def test_an_erased_subscriber_takes_their_events_along(store: Store) -> None:
    subscriber = add_subscriber(store)
    _bounce(store, subscriber.id, HARD, 0)
    store.erase_subscriber(subscriber.id, address_hash="h" * 64, now=NOW)
    assert store.mail_event_counts(since=TODAY) == {}


def test_the_inbox_keeps_the_newest_messages_cut_short(store: Store) -> None:
    big = b"x" * (INBOUND_KEPT_BYTES + 10)
    first = store.add_inbound_message(
        received_at=NOW, mail_from="a@x.org", rcpt_to="bounces@p.test", subject="Hi",
        note="not a report", data=big,
    )  # fmt: skip
    kept = store.get_inbound_message(first)
    assert kept is not None
    assert (kept.size, len(kept.data), kept.note) == (len(big), INBOUND_KEPT_BYTES, "not a report")
    assert [m.id for m in store.inbound_messages()] == [first]
    assert store.get_inbound_message(first + 1) is None


def test_a_webhook_receipt_is_accepted_once(store: Store) -> None:
    keep = timedelta(hours=1)
    assert store.remember_webhook_receipt("mailgun", "t1", now=NOW, keep=keep)
    assert not store.remember_webhook_receipt("mailgun", "t1", now=NOW, keep=keep)
    assert store.remember_webhook_receipt("postmark", "t1", now=NOW, keep=keep)
    # Forgotten after `keep`: by then the caller refuses the call by its timestamp.
    later = NOW + keep * 2
    assert store.remember_webhook_receipt("mailgun", "t1", now=later, keep=keep)
