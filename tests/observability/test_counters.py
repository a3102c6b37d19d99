"""The subscription counters count what happened, once: a signup that queued its confirmation,
a confirmation, a vote that changed a verdict, an unsubscribe that unsubscribed. Counted in
the process's registry, which other tests share: each check is of a difference."""

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from service.mail.wire import OutgoingMail
from service.models import UnsubscribeChannel, Vote
from service.signup.feedback import record_feedback
from service.signup.limits import MemoryWindowLimiter
from service.signup.links import feedback_urls
from service.signup.subscriptions import (
    LinkUsed,
    RequestOrigin,
    confirm_signup,
    request_signup,
    unsubscribe,
)
from service.store import Store
from tests.support.factories import NOW, make_paper, make_preferences, make_settings

ORIGIN = RequestOrigin(ip="198.51.100.7", user_agent="test", via="test")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_counter_counts_what_happened_once(sqlite_store: Store, tmp_path: Path) -> None:
    settings = make_settings(mail_url=f"file://{tmp_path / 'outbox'}", signup_answer_seconds=0)
    limiter = MemoryWindowLimiter()
    signups, confirmations = (
        value("paperwire_signups_total"),
        value("paperwire_confirmations_total"),
    )
    api, likes, taken_back = (
        value("paperwire_unsubscribes_total", channel="api"),
        value("paperwire_feedback_votes_total", vote="like"),
        value("paperwire_feedback_votes_total", vote="none"),
    )

    def sign_up() -> OutgoingMail | None:
        return request_signup(
            sqlite_store,
            limiter,
            "ada@example.org",
            make_preferences(),
            origin=ORIGIN,
            settings=settings,
            now=NOW,
        )

    mail = sign_up()
    assert mail is not None
    assert sign_up() is None  # within the mailbox's interval: nothing mailed, nothing counted
    assert value("paperwire_signups_total") - signups == 1

    text = mail.as_email_message().get_body(preferencelist=("plain",))
    assert text is not None
    (link,) = [word for word in str(text.get_content()).split() if "/c/" in word]
    token = link.rsplit("/", 1)[1]
    reader = confirm_signup(sqlite_store, token, origin=ORIGIN, settings=settings, now=NOW)
    with pytest.raises(LinkUsed):
        confirm_signup(sqlite_store, token, origin=ORIGIN, settings=settings, now=NOW)
    assert value("paperwire_confirmations_total") - confirmations == 1

    sqlite_store.upsert_papers([make_paper()], now=NOW)
    vote_link = feedback_urls(reader, ["2511.00001"], settings=settings, now=NOW)["2511.00001"]
    vote_token = vote_link.rsplit("/", 1)[1]
    for vote in (Vote.LIKE, Vote.LIKE, None):
        record_feedback(sqlite_store, vote_token, vote, settings=settings, now=NOW)
    assert value("paperwire_feedback_votes_total", vote="like") - likes == 1
    assert value("paperwire_feedback_votes_total", vote="none") - taken_back == 1

    for _ in range(2):
        unsubscribe(sqlite_store, reader.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.API)
    assert value("paperwire_unsubscribes_total", channel="api") - api == 1
