"""👍/👎 from a digest's feedback links as service functions, on SQLite and PostgreSQL: reading a
link records nothing, a verdict is recorded once and replaced by the other, links are bound to
their subscriber, and the export and erasure cover the verdicts."""

import pytest

from service.errors import UnknownSubscriber
from service.models import Subscriber, Vote
from service.settings import Settings
from service.signup.feedback import feedback_target, record_feedback
from service.signup.links import feedback_urls
from service.signup.subscriptions import erase_subscriber, export_subscriber
from service.signup.tokens import InvalidToken, make_feedback_token
from service.store import Store
from tests.support.factories import NOW, add_subscriber, make_paper, make_settings

PAPER_ID = "2511.00001"


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def token_for(subscriber: Subscriber, paper_id: str, settings: Settings) -> str:
    url = feedback_urls(subscriber, [paper_id], settings=settings, now=NOW)[paper_id]
    return url.rpartition("/f/")[2]


def tampered(token: str) -> str:
    replacement = "A" if token[-3] != "A" else "B"
    return token[:-3] + replacement + token[-2:]


def votes(store: Store, subscriber: Subscriber) -> tuple[tuple[str, ...], tuple[str, ...]]:
    interests = store.get_subscriber(subscriber.id).interests
    return interests.liked, interests.disliked


def test_reading_a_link_names_the_paper_and_records_nothing(
    store: Store, settings: Settings
) -> None:
    alice = add_subscriber(store)
    store.upsert_papers([make_paper()], now=NOW)
    token = token_for(alice, PAPER_ID, settings)

    target = feedback_target(store, token, settings=settings, now=NOW)

    assert (target.subscriber.id, target.paper_id, target.vote) == (alice.id, PAPER_ID, None)
    assert target.paper is not None and target.paper.title.startswith("Consistency models")
    assert votes(store, alice) == ((), ())


def test_a_verdict_is_recorded_once_replaced_by_the_other_and_undone(
    store: Store, settings: Settings
) -> None:
    alice = add_subscriber(store)
    token = token_for(alice, PAPER_ID, settings)

    def record(vote: Vote | None) -> tuple[Vote | None, Vote | None, bool]:
        recorded = record_feedback(store, token, vote, settings=settings, now=NOW)
        return recorded.target.vote, recorded.previous, recorded.changed

    assert record(Vote.LIKE) == (Vote.LIKE, None, True)
    assert record(Vote.LIKE) == (Vote.LIKE, Vote.LIKE, False)
    assert votes(store, alice) == ((PAPER_ID,), ())
    assert record(Vote.DISLIKE) == (Vote.DISLIKE, Vote.LIKE, True)
    assert votes(store, alice) == ((), (PAPER_ID,))
    # Undo puts back what the thanks page carried: the verdict replaced.
    assert record(Vote.LIKE) == (Vote.LIKE, Vote.DISLIKE, True)
    assert record(None) == (None, Vote.LIKE, True)
    assert votes(store, alice) == ((), ())
    assert feedback_target(store, token, settings=settings, now=NOW).vote is None


def test_a_paper_not_in_the_store_still_records(store: Store, settings: Settings) -> None:
    alice = add_subscriber(store)
    token = token_for(alice, "gone-paper", settings)

    recorded = record_feedback(store, token, Vote.DISLIKE, settings=settings, now=NOW)

    assert (recorded.target.paper, recorded.target.paper_id) == (None, "gone-paper")
    assert votes(store, alice) == ((), ("gone-paper",))


def test_a_link_works_for_its_own_subscriber_only(store: Store, settings: Settings) -> None:
    alice = add_subscriber(store)
    bob = add_subscriber(store, "bob@example.org")
    key = settings.secret_key.get_secret_value()
    # Bob's id with Alice's link key, Alice's id with Bob's, a tampered one, one of another key.
    forged = [
        make_feedback_token(bob.id, PAPER_ID, link_key=alice.link_key, secret_key=key),
        make_feedback_token(alice.id, PAPER_ID, link_key=bob.link_key, secret_key=key),
        make_feedback_token(alice.id, PAPER_ID, link_key=None, secret_key=key),
        make_feedback_token(alice.id, PAPER_ID, link_key=alice.link_key, secret_key="other"),
        tampered(token_for(alice, PAPER_ID, settings)),
    ]
    for token in forged:
        with pytest.raises(InvalidToken):
            feedback_target(store, token, settings=settings, now=NOW)
        with pytest.raises(InvalidToken):
            record_feedback(store, token, Vote.LIKE, settings=settings, now=NOW)
    assert votes(store, alice) == votes(store, bob) == ((), ())


def test_the_export_holds_the_verdicts_and_erasure_removes_them(
    store: Store, settings: Settings
) -> None:
    alice = add_subscriber(store)
    record_feedback(
        store, token_for(alice, "2511.00001", settings), Vote.LIKE, settings=settings, now=NOW
    )
    record_feedback(
        store, token_for(alice, "2511.00002", settings), Vote.DISLIKE, settings=settings, now=NOW
    )

    (exported,) = export_subscriber(store, alice.id)["profiles"]
    assert (exported["liked_papers"], exported["disliked_papers"]) == (
        ["2511.00001"],
        ["2511.00002"],
    )

    token = token_for(alice, "2511.00001", settings)
    erase_subscriber(store, alice.id, settings=settings, now=NOW)
    with pytest.raises(UnknownSubscriber):
        store.subscriber_record(alice.id)
    # The row is gone, verdicts and all; its links with it, even one for a paper it liked.
    with pytest.raises(InvalidToken):
        record_feedback(store, token, Vote.DISLIKE, settings=settings, now=NOW)
    carol = add_subscriber(store, "carol@example.org")
    assert carol.id != alice.id and votes(store, carol) == ((), ())
