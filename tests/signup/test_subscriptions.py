"""Signup, confirmation and self-service as service functions, on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy import text

from service.delivery.planning import due_subscribers
from service.errors import InvalidInput, UnknownSubscriber
from service.mail.wire import OutgoingMail
from service.models import SubscriptionPreferences, SubscriptionStatus, UnsubscribeChannel
from service.settings import Settings
from service.signup.addresses import mailbox_key
from service.signup.limits import MemoryWindowLimiter, RedisWindowLimiter
from service.signup.links import subscriber_for_link
from service.signup.subscriptions import (
    LinkUsed,
    RequestOrigin,
    confirm_signup,
    erase_subscriber,
    export_subscriber,
    is_suppressed,
    parse_interests,
    pending_signup,
    request_signup,
    set_paused,
    unsubscribe,
    update_preferences,
)
from service.signup.tokens import InvalidToken, TokenExpired, TokenPurpose
from service.store import Store
from tests.support.factories import (
    NOW,
    TODAY,
    add_subscriber,
    make_preferences,
    make_settings,
    send_issue,
)

ORIGIN = RequestOrigin(ip="203.0.113.7", user_agent="Firefox/140", via="web signup form")
CONFIRM_ORIGIN = RequestOrigin(ip="203.0.113.8", user_agent="Safari/18", via="web confirm page")


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def _signup(
    store: Store,
    limiter: MemoryWindowLimiter,
    settings: Settings,
    email: str = "alice@example.org",
    preferences: SubscriptionPreferences | None = None,
    *,
    minutes: float = 0,
) -> OutgoingMail | None:
    return request_signup(
        store,
        limiter,
        email,
        preferences or make_preferences(),
        origin=ORIGIN,
        settings=settings,
        now=NOW + timedelta(minutes=minutes),
    )


def _confirm_url(mail: OutgoingMail) -> str:
    body = mail.as_email_message().get_body(preferencelist=("plain",))
    assert body is not None
    url: str
    (url,) = [
        word for word in body.get_content().split() if word.startswith("https://paperwire.test/c/")
    ]
    return url


def _token(mail: OutgoingMail) -> str:
    return _confirm_url(mail).rsplit("/", 1)[1]


def test_parse_interests_takes_lines_and_commas() -> None:
    assert parse_interests("diffusion models, RLHF\n\n graph networks ;x") == (
        "diffusion models",
        " RLHF",
        " graph networks ",
        "x",
    )


@pytest.mark.parametrize(
    ("email", "mailbox"),
    [
        ("a.b+news@gmail.com", "ab@gmail.com"),
        ("a.b@googlemail.com", "ab@gmail.com"),
        ("a.b+x@outlook.com", "a.b@outlook.com"),
        ("a.b+x@example.org", "a.b+x@example.org"),
    ],
)
def test_mailbox_key_merges_variants_only_where_the_provider_does(email: str, mailbox: str) -> None:
    assert mailbox_key(email) == mailbox


def test_a_new_address_gets_a_pending_row_and_a_confirmation(
    store: Store, settings: Settings
) -> None:
    mail = _signup(store, MemoryWindowLimiter(), settings, "Alice@Example.org")

    assert mail is not None
    assert mail.recipients == ("alice@example.org",)
    subscriber = store.find_subscriber("alice@example.org")
    assert subscriber.status is SubscriptionStatus.PENDING
    (requested,) = subscriber.consent
    assert (requested.event, requested.ip, requested.user_agent) == (
        "requested",
        "203.0.113.7",
        "Firefox/140",
    )
    assert requested.via == "web signup form" and requested.at == NOW


def test_confirming_records_consent_and_a_second_use_changes_nothing(
    store: Store, settings: Settings
) -> None:
    mail = _signup(store, MemoryWindowLimiter(), settings)
    assert mail is not None
    token = _token(mail)
    subscriber, _ = pending_signup(store, token, settings=settings, now=NOW)
    assert subscriber.email == "alice@example.org"

    later = NOW + timedelta(hours=1)
    subscriber = confirm_signup(store, token, origin=CONFIRM_ORIGIN, settings=settings, now=later)

    assert subscriber.status is SubscriptionStatus.CONFIRMED
    assert subscriber.confirmed_at == later
    assert [event.event for event in subscriber.consent] == ["requested", "confirmed"]
    assert subscriber.consent[1].ip == "203.0.113.8"
    with pytest.raises(LinkUsed):
        confirm_signup(store, token, origin=CONFIRM_ORIGIN, settings=settings, now=later)
    with pytest.raises(LinkUsed):
        pending_signup(store, token, settings=settings, now=later)
    assert store.find_subscriber("alice@example.org").consent == subscriber.consent


def test_a_confirmation_link_expires_after_72_hours(store: Store, settings: Settings) -> None:
    mail = _signup(store, MemoryWindowLimiter(), settings)
    assert mail is not None
    with pytest.raises(TokenExpired):
        confirm_signup(
            store,
            _token(mail),
            origin=CONFIRM_ORIGIN,
            settings=settings,
            now=NOW + timedelta(hours=72, seconds=1),
        )


def test_a_newer_link_supersedes_the_older_one(store: Store, settings: Settings) -> None:
    limiter = MemoryWindowLimiter()
    first = _signup(store, limiter, settings)
    # A limiter that forgets: the interval is what the next test is about.
    second = _signup(store, MemoryWindowLimiter(), settings, minutes=20)
    assert first is not None and second is not None

    with pytest.raises(LinkUsed):
        confirm_signup(store, _token(first), origin=CONFIRM_ORIGIN, settings=settings, now=NOW)
    confirm_signup(store, _token(second), origin=CONFIRM_ORIGIN, settings=settings, now=NOW)


def test_confirmations_per_mailbox_are_limited(store: Store, settings: Settings) -> None:
    limiter = MemoryWindowLimiter()
    variants = ["a.lice@gmail.com", "alice+x@gmail.com", "Alice@googlemail.com"]

    sent = [_signup(store, limiter, settings, email) for email in variants]

    assert [mail is not None for mail in sent] == [True, False, False]


def test_an_active_subscription_is_left_alone_and_gets_its_manage_link(
    store: Store, settings: Settings
) -> None:
    before = add_subscriber(store, interests={"keywords": ["graph networks"]})
    limiter = MemoryWindowLimiter()

    mail = _signup(store, limiter, settings, preferences=make_preferences())
    again = _signup(store, limiter, settings, preferences=make_preferences())

    assert mail is not None and again is None  # the same mailbox limits apply
    message = mail.as_email_message()
    assert message["Subject"] == "You're already subscribed to Paperwire"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    (url,) = [w for w in body.get_content().split() if w.startswith("https://paperwire.test/m/")]
    token = url.rsplit("/", 1)[1]
    manage = subscriber_for_link(store, TokenPurpose.MANAGE, token, settings=settings, now=NOW)
    assert manage.id == before.id
    after = store.find_subscriber("alice@example.org")
    assert after.interests == before.interests
    assert after.consent == ()


def test_an_unsubscribed_person_can_sign_up_again(store: Store, settings: Settings) -> None:
    old = add_subscriber(store, interests={"keywords": ["graph networks"]})
    unsubscribe(store, old.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.LINK)
    wanted = make_preferences(interests={"keywords": ["protein folding"]})

    mail = _signup(store, MemoryWindowLimiter(), settings, preferences=wanted)

    assert mail is not None
    # Nothing changes until the link is used: typing an address proves nothing.
    waiting = store.find_subscriber("alice@example.org")
    assert waiting.status is SubscriptionStatus.UNSUBSCRIBED
    assert waiting.interests.keywords == ("graph networks",)
    confirmed = confirm_signup(
        store, _token(mail), origin=CONFIRM_ORIGIN, settings=settings, now=NOW
    )
    assert confirmed.status is SubscriptionStatus.CONFIRMED
    assert confirmed.interests.keywords == ("protein folding",)


def test_a_signup_that_mails_nothing_changes_nothing_a_link_confirms(
    store: Store, settings: Settings
) -> None:
    """Someone else typing the address within the mailbox interval gets no link, and must not
    change what the owner's link confirms."""
    limiter = MemoryWindowLimiter()
    wanted = make_preferences(interests={"keywords": ["protein folding"]})
    planted = make_preferences(interests={"keywords": ["casino bonus"]}, trending_weight=1.0)
    mail = _signup(store, limiter, settings, preferences=wanted)
    assert mail is not None
    assert _signup(store, limiter, settings, preferences=planted, minutes=1) is None

    _, shown = pending_signup(store, _token(mail), settings=settings, now=NOW)
    confirmed = confirm_signup(
        store, _token(mail), origin=CONFIRM_ORIGIN, settings=settings, now=NOW
    )

    assert shown.interests.keywords == ("protein folding",)
    assert confirmed.interests.keywords == ("protein folding",)
    assert confirmed.trending_weight == wanted.trending_weight
    assert [event.event for event in confirmed.consent] == ["requested", "confirmed"]


def test_each_link_confirms_what_was_asked_when_it_was_sent(
    store: Store, settings: Settings
) -> None:
    first_choice = make_preferences(interests={"keywords": ["protein folding"]})
    second_choice = make_preferences(interests={"keywords": ["graph networks"]}, delivery_hour=6)
    first = _signup(store, MemoryWindowLimiter(), settings, preferences=first_choice)
    second = _signup(store, MemoryWindowLimiter(), settings, preferences=second_choice, minutes=20)
    assert first is not None and second is not None

    _, shown = pending_signup(store, _token(second), settings=settings, now=NOW)
    assert (shown.interests.keywords, shown.delivery_hour) == (("graph networks",), 6)
    with pytest.raises(LinkUsed):
        pending_signup(store, _token(first), settings=settings, now=NOW)
    confirmed = confirm_signup(
        store, _token(second), origin=CONFIRM_ORIGIN, settings=settings, now=NOW
    )
    assert (confirmed.interests.keywords, confirmed.delivery_hour) == (("graph networks",), 6)


def test_the_consent_record_stays_bounded_and_keeps_how_it_began(
    store: Store, settings: Settings
) -> None:
    noisy = RequestOrigin(ip="203.0.113.9", user_agent="X" * 600 + "\x07", via="api signup")
    for day in range(40):
        mail = request_signup(
            store,
            MemoryWindowLimiter(),
            "alice@example.org",
            make_preferences(),
            origin=ORIGIN if day == 0 else noisy,
            settings=settings,
            now=NOW + timedelta(days=day),
        )
        assert mail is not None

    consent = store.find_subscriber("alice@example.org").consent
    assert len(consent) == 20
    assert (consent[0].at, consent[0].user_agent) == (NOW, "Firefox/140")
    assert consent[-1].at == NOW + timedelta(days=39)
    assert all(len(event.user_agent or "") <= 256 for event in consent)
    assert all((event.user_agent or "").isprintable() for event in consent)


def test_an_unsubscribe_voids_a_pending_link(store: Store, settings: Settings) -> None:
    mail = _signup(store, MemoryWindowLimiter(), settings)
    assert mail is not None
    subscriber = store.find_subscriber("alice@example.org")
    unsubscribe(store, subscriber.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.LINK)
    unsubscribe(
        store, subscriber.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.LINK
    )  # idempotent

    with pytest.raises(LinkUsed):
        confirm_signup(store, _token(mail), origin=CONFIRM_ORIGIN, settings=settings, now=NOW)
    after = store.get_subscriber(subscriber.id)
    assert after.status is SubscriptionStatus.UNSUBSCRIBED
    assert [event.event for event in after.consent] == ["requested", "unsubscribed"]


def test_a_bad_address_is_refused(store: Store, settings: Settings) -> None:
    with pytest.raises(InvalidInput):
        _signup(store, MemoryWindowLimiter(), settings, "not an address")
    with pytest.raises(InvalidToken):
        confirm_signup(store, "garbage", origin=CONFIRM_ORIGIN, settings=settings, now=NOW)


def test_pause_resume_and_preferences(store: Store, settings: Settings) -> None:
    subscriber = add_subscriber(store)

    paused = set_paused(store, subscriber.id, paused=True, origin=ORIGIN, now=NOW)
    assert paused.status is SubscriptionStatus.PAUSED
    assert due_subscribers(store, TODAY) == []
    resumed = set_paused(store, subscriber.id, paused=False, origin=ORIGIN, now=NOW)
    assert resumed.status is SubscriptionStatus.CONFIRMED

    changed = update_preferences(
        store, subscriber.id, make_preferences(delivery_hour=6, trending_weight=0.9)
    )
    assert (changed.delivery_hour, changed.trending_weight) == (6, 0.9)


def test_export_holds_the_consent_record_and_the_ledger(store: Store, settings: Settings) -> None:
    subscriber = add_subscriber(store)
    send_issue(store, subscriber, paper_ids=["p1"])
    set_paused(store, subscriber.id, paused=True, origin=ORIGIN, now=NOW)

    exported = export_subscriber(store, subscriber.id)

    assert exported["subscriber"]["email"] == "alice@example.org"
    assert exported["subscriber"]["consent"][0]["ip"] == "203.0.113.7"
    assert exported["deliveries"][0]["paper_ids"] == ["p1"]
    assert exported["deliveries"][0]["issue_date"] == TODAY.isoformat()


def test_erasure_leaves_only_a_hashed_suppression_entry(store: Store, settings: Settings) -> None:
    subscriber = add_subscriber(store)
    send_issue(store, subscriber, paper_ids=["p1"])

    erase_subscriber(store, subscriber.id, settings=settings, now=NOW)

    with pytest.raises(UnknownSubscriber):
        store.get_subscriber(subscriber.id)
    assert store.list_deliveries(subscriber_id=subscriber.id) == []
    assert is_suppressed(store, "alice@example.org", settings=settings)
    assert "alice@example.org" not in _every_text_in(store)
    # Signing up and confirming anew lifts the suppression.
    mail = _signup(store, MemoryWindowLimiter(), settings)
    assert mail is not None
    confirm_signup(store, _token(mail), origin=CONFIRM_ORIGIN, settings=settings, now=NOW)
    assert not is_suppressed(store, "alice@example.org", settings=settings)


def test_a_suppression_survives_a_key_rotation(store: Store, settings: Settings) -> None:
    subscriber = add_subscriber(store)
    erase_subscriber(store, subscriber.id, settings=settings, now=NOW)
    rotated = make_settings(secret_key="new-key", previous_secret_keys=["test-secret-key"])
    assert is_suppressed(store, "alice@example.org", settings=rotated)


def test_redis_windows_count_across_limiters(redis_url: str) -> None:
    first, second = RedisWindowLimiter(redis_url), RedisWindowLimiter(redis_url)
    try:
        hits = [
            limiter.hit("k", limit=3, window=timedelta(minutes=1))
            for limiter in (first, second, first, second, first)
        ]
        assert hits == [True, True, True, False, False]
        assert first.hit("other", limit=1, window=timedelta(minutes=1))
    finally:
        first.close()
        second.close()


def test_without_redis_limits_hold_in_process() -> None:
    limiter = RedisWindowLimiter("redis://127.0.0.1:1/0")
    try:
        hits = [limiter.hit("k", limit=2, window=timedelta(minutes=1)) for _ in range(4)]
        assert hits == [True, True, False, False]
        assert not limiter.ping()
    finally:
        limiter.close()


def test_memory_windows_reopen_after_the_window() -> None:
    clock = [100.0]
    limiter = MemoryWindowLimiter(clock=lambda: clock[0])
    window = timedelta(seconds=10)
    assert limiter.hit("k", limit=1, window=window)
    assert not limiter.hit("k", limit=1, window=window)
    clock[0] += 10
    assert limiter.hit("k", limit=1, window=window)


def _every_text_in(store: Store) -> str:
    """Every row of every table, as text: to look for an address anywhere."""
    from service.store.tables import Base

    dumped: list[str] = []
    with store.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            dumped.extend(str(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
    return "\n".join(dumped)
