"""Signup with double opt-in, and self-service from the links in every email.

Plain functions over the store, the rate limiter and the templates: the web app and the CLI
call them and turn their exceptions into pages, JSON or exit codes.
"""

import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.errors import AlreadySubscribed, UnknownSubscriber
from service.mail.compose import (
    compose_already_subscribed,
    compose_confirmation,
    compose_manage_link,
)
from service.mail.wire import OutgoingMail
from service.models import (
    ConsentEvent,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
    UnsubscribeChannel,
)
from service.observability import metrics
from service.settings import Settings
from service.signup.addresses import mailbox_key, normalise_email
from service.signup.limits import WindowLimiter
from service.signup.links import (
    confirm_url,
    manage_link_max_age,
    signup_for_link,
    subscriber_for_link,
    subscriber_url,
)
from service.signup.notices import queue_notice
from service.signup.tokens import InvalidToken, TokenPurpose
from service.store import Store

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Statuses in which a person gets (or chose to pause) issues: signing up again changes nothing.
ACTIVE = (SubscriptionStatus.CONFIRMED, SubscriptionStatus.PAUSED)
# What the consent record keeps of a user agent.
MAX_USER_AGENT_CHARS = 256
# Interests typed into one box: one per line, or separated by commas or semicolons.
_INTEREST_SEPARATORS = re.compile(r"[\n,;]+")


class LinkUsed(InvalidToken):
    """A genuine confirmation link that was used already, or replaced by a newer one."""


@dataclass(frozen=True)
class RequestOrigin:
    """Where a request came from, for the consent record and per-client limits."""

    ip: str | None
    user_agent: str | None
    via: str

    def event(self, name: str, *, now: datetime) -> ConsentEvent:
        # Printable and short: the record is kept for years and any client can send any header.
        printable = "".join(ch for ch in (self.user_agent or "") if ch.isprintable())
        user_agent = printable[:MAX_USER_AGENT_CHARS] or None
        return ConsentEvent(event=name, at=now, ip=self.ip, user_agent=user_agent, via=self.via)


def parse_interests(typed: str) -> tuple[str, ...]:
    """Phrases typed one per line or comma-separated; `Interests` cleans and limits them."""
    return tuple(part for part in _INTEREST_SEPARATORS.split(typed) if part.strip())


def request_signup(
    store: Store,
    limiter: WindowLimiter,
    raw_email: str,
    preferences: SubscriptionPreferences,
    *,
    origin: RequestOrigin,
    settings: Settings,
    now: datetime,
) -> OutgoingMail | None:
    """Record a signup and return the confirmation email, queued for sending (see
    `service.signup.notices`), or None.

    What the visitor sees never depends on the outcome: a new, pending, confirmed or
    unsubscribed address, or a request over a limit, all end in "check your inbox". Within
    the mailbox's limits a new, pending or unsubscribed address gets a confirmation link, which
    confirms exactly the preferences of this request; an active one is left exactly as it was
    and gets its manage link instead. Over a limit nothing is stored or changed: a signup that
    mails nothing must not alter what an earlier link confirms. Raises `InvalidInput` for a
    malformed address.
    """
    email = normalise_email(raw_email, check_deliverability=settings.check_email_deliverability)
    if origin.ip is not None and not limiter.hit(
        f"signup-ip:{origin.ip}", limit=settings.signups_per_ip_per_hour, window=HOUR
    ):
        return None
    existing = store.find_subscriber_by_email(email)
    if not _may_send_confirmation(limiter, email, settings=settings):
        return None
    if existing is not None and existing.status in ACTIVE:
        # Nothing changes; the mailbox's owner gets their manage link, within the same limits.
        already = compose_already_subscribed(
            email,
            manage_url=subscriber_url(TokenPurpose.MANAGE, existing, settings=settings, now=now),
            message_key=f"{existing.id}-{new_nonce()}",
            settings=settings,
            now=now,
        )
        return queue_notice(
            store, already, subscriber_id=existing.id, kind="already-subscribed", now=now
        )
    nonce = new_nonce()
    consent = origin.event("requested", now=now)
    if existing is None:
        try:
            subscriber = store.add_subscriber(
                email,
                preferences,
                status=SubscriptionStatus.PENDING,
                now=now,
                consent=[consent],
                confirm_nonce=nonce,
            )
        except AlreadySubscribed:
            return None  # the same address signed up at the same moment: that one mails
    else:
        store.renew_signup(existing.id, preferences, consent=consent, confirm_nonce=nonce)
        subscriber = existing
    confirmation = compose_confirmation(
        email,
        confirm_url=confirm_url(subscriber, nonce, settings=settings, now=now),
        message_key=f"{subscriber.id}-{nonce}",
        settings=settings,
        now=now,
    )
    queued = queue_notice(
        store, confirmation, subscriber_id=subscriber.id, kind="confirmation", now=now
    )
    metrics.SIGNUPS.inc()
    return queued


def new_nonce() -> str:
    return secrets.token_urlsafe(6)


def _may_send_confirmation(limiter: WindowLimiter, email: str, *, settings: Settings) -> bool:
    """Within both mailbox limits: one email per interval, a few per day. The key is a hash,
    so Redis never holds an address."""
    key = _mailbox_hash(mailbox_key(email), settings=settings)
    interval = timedelta(seconds=settings.confirm_email_interval_seconds)
    if interval and not limiter.hit(f"confirm-interval:{key}", limit=1, window=interval):
        return False
    return limiter.hit(f"confirm-day:{key}", limit=settings.confirm_emails_per_day, window=DAY)


def pending_signup(
    store: Store, token: str, *, settings: Settings, now: datetime
) -> tuple[Subscriber, SubscriptionPreferences]:
    """The subscriber a confirmation link would confirm and the preferences it would confirm
    them with, without confirming (the GET page). Raises `InvalidToken`, `TokenExpired` or
    `LinkUsed`."""
    subscriber, nonce = signup_for_link(store, token, settings=settings, now=now)
    preferences = store.preferences_to_confirm(subscriber.id, nonce)
    if preferences is None:
        raise LinkUsed("this confirmation link was used or replaced by a newer one")
    return subscriber, preferences


def confirm_signup(
    store: Store, token: str, *, origin: RequestOrigin, settings: Settings, now: datetime
) -> Subscriber:
    """Confirm the signup a link names, with the preferences asked for when that link was
    sent. Raises `InvalidToken`, `TokenExpired` or `LinkUsed` (confirming twice changes
    nothing the second time)."""
    subscriber, nonce = signup_for_link(store, token, settings=settings, now=now)
    consent = origin.event("confirmed", now=now)
    if not store.confirm_subscriber(subscriber.id, nonce, consent=consent):
        raise LinkUsed("this confirmation link was used or replaced by a newer one")
    metrics.CONFIRMATIONS.inc()
    # Signed up and confirmed anew: an erased address may be mailed again.
    store.lift_suppression(suppression_hashes(subscriber.email, settings=settings))
    return store.get_subscriber(subscriber.id)


def request_fresh_manage_link(
    store: Store, limiter: WindowLimiter, token: str, *, settings: Settings, now: datetime
) -> OutgoingMail | None:
    """The email with a fresh manage link, asked for from the page of an expired one: it goes
    to the subscriber's own address, within the mailbox limits of confirmation emails (None
    over them). Raises `InvalidToken` unless the link is genuine and its subscriber exists."""
    subscriber = subscriber_for_link(
        store, TokenPurpose.MANAGE, token, settings=settings, now=now, expires=False
    )
    if not _may_send_confirmation(limiter, subscriber.email, settings=settings):
        return None
    fresh = compose_manage_link(
        subscriber.email,
        manage_url=subscriber_url(TokenPurpose.MANAGE, subscriber, settings=settings, now=now),
        valid_days=max(1, manage_link_max_age(settings).days),
        message_key=f"{subscriber.id}-{new_nonce()}",
        settings=settings,
        now=now,
    )
    return queue_notice(store, fresh, subscriber_id=subscriber.id, kind="manage-link", now=now)


def update_preferences(
    store: Store, subscriber_id: int, preferences: SubscriptionPreferences
) -> Subscriber:
    """New interests, schedule or mix; the next issue is planned from them."""
    store.update_preferences(subscriber_id, preferences)
    return store.get_subscriber(subscriber_id)


def set_paused(
    store: Store, subscriber_id: int, *, paused: bool, origin: RequestOrigin, now: datetime
) -> Subscriber:
    """Pause or resume a confirmed subscription; anything else is left as it is."""
    if paused:
        target, allowed_from = SubscriptionStatus.PAUSED, [SubscriptionStatus.CONFIRMED]
    else:
        target, allowed_from = SubscriptionStatus.CONFIRMED, [SubscriptionStatus.PAUSED]
    event = origin.event("paused" if paused else "resumed", now=now)
    store.change_status(subscriber_id, target, consent=event, allowed_from=allowed_from)
    return store.get_subscriber(subscriber_id)


def unsubscribe(
    store: Store,
    subscriber_id: int,
    *,
    origin: RequestOrigin,
    now: datetime,
    channel: UnsubscribeChannel,
) -> bool:
    """Stop every issue; idempotent, and quiet about subscribers erased meanwhile. True if
    this call unsubscribed them (and counted it under `channel`)."""
    still_subscribed = [s for s in SubscriptionStatus if s is not SubscriptionStatus.UNSUBSCRIBED]
    with contextlib.suppress(UnknownSubscriber):
        unsubscribed = store.change_status(
            subscriber_id,
            SubscriptionStatus.UNSUBSCRIBED,
            consent=origin.event("unsubscribed", now=now),
            allowed_from=still_subscribed,
            channel=channel,
        )
        if unsubscribed:
            metrics.count_unsubscribe(channel)
        return unsubscribed
    return False


def unsubscribe_with_link(
    store: Store,
    token: str,
    *,
    origin: RequestOrigin,
    settings: Settings,
    now: datetime,
    channel: UnsubscribeChannel,
) -> None:
    """RFC 8058 one-click and the unsubscribe page. Raises `InvalidToken` for a bad link, or
    one whose subscriber is gone."""
    subscriber = subscriber_for_link(
        store, TokenPurpose.UNSUBSCRIBE, token, settings=settings, now=now
    )
    unsubscribe(store, subscriber.id, origin=origin, now=now, channel=channel)


def export_subscriber(store: Store, subscriber_id: int) -> dict[str, Any]:
    """Everything held about one subscriber, as JSON-able data (a data-access request): every
    column of their row and every row of each table that refers to them."""
    return store.subscriber_record(subscriber_id)


def erase_subscriber(
    store: Store, subscriber_id: int, *, settings: Settings, now: datetime
) -> None:
    """Delete the subscriber and their ledger rows; keep only a keyed hash of the address so
    it is never mailed again unless its owner signs up and confirms anew."""
    subscriber = store.get_subscriber(subscriber_id)
    address_hash = suppression_hashes(subscriber.email, settings=settings)[0]
    store.erase_subscriber(subscriber_id, address_hash=address_hash, now=now)


def is_suppressed(store: Store, email: str, *, settings: Settings) -> bool:
    return store.is_suppressed(suppression_hashes(email, settings=settings))


def suppression_hashes(email: str, *, settings: Settings) -> list[str]:
    """HMAC-SHA256 of the address under each key: the address cannot be read back from it,
    and entries made before a key rotation still match while the old key stays listed."""
    return [_keyed_hash("suppression", email, key) for key in settings.secret_keys]


def _mailbox_hash(mailbox: str, *, settings: Settings) -> str:
    return _keyed_hash("mailbox", mailbox, settings.secret_keys[0])[:32]


def _keyed_hash(purpose: str, value: str, key: str) -> str:
    message = f"{purpose}\0{value}".encode()
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
