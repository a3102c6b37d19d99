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

from service.addresses import mailbox_key, normalise_email
from service.emails import compose_already_subscribed, compose_confirmation
from service.errors import AlreadySubscribed, UnknownSubscriber
from service.models import ConsentEvent, Subscriber, SubscriptionPreferences, SubscriptionStatus
from service.outgoing import OutgoingMail
from service.ratelimit import WindowLimiter
from service.settings import Settings
from service.store import Store
from service.tokens import (
    InvalidToken,
    TokenPurpose,
    make_confirm_token,
    make_subscriber_token,
    read_confirm_token,
    read_subscriber_token,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Statuses in which a person gets (or chose to pause) issues: signing up again changes nothing.
ACTIVE = (SubscriptionStatus.CONFIRMED, SubscriptionStatus.PAUSED)
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
        user_agent = (self.user_agent or "")[:512] or None
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
    """Record a signup and return the confirmation email to send, or None.

    What the visitor sees never depends on the outcome: a new, pending, confirmed or
    unsubscribed address, or a request over a limit, all end in "check your inbox". Within
    the mailbox's limits a new, pending or unsubscribed address gets a confirmation link; an
    active one is left exactly as it was and gets its manage link instead. Raises
    `InvalidInput` for a malformed address.
    """
    email = normalise_email(raw_email, check_deliverability=settings.check_email_deliverability)
    if origin.ip is not None and not limiter.hit(
        f"signup-ip:{origin.ip}", limit=settings.signups_per_ip_per_hour, window=HOUR
    ):
        return None
    existing = store.find_subscriber_by_email(email)
    may_send = _may_send_confirmation(limiter, email, settings=settings)
    if existing is not None and existing.status in ACTIVE:
        # Nothing changes; the mailbox's owner gets their manage link, within the same limits.
        if not may_send:
            return None
        manage = make_subscriber_token(
            TokenPurpose.MANAGE, existing.id, secret_key=settings.secret_key.get_secret_value()
        )
        return compose_already_subscribed(
            email,
            manage_url=f"{settings.public_base_url}/m/{manage}",
            message_key=f"{existing.id}-{new_nonce()}",
            settings=settings,
            now=now,
        )
    nonce = new_nonce() if may_send else None
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
    if nonce is None:
        return None
    token = make_confirm_token(
        subscriber.id, nonce, secret_key=settings.secret_key.get_secret_value(), now=now
    )
    return compose_confirmation(
        email,
        confirm_url=f"{settings.public_base_url}/c/{token}",
        message_key=f"{subscriber.id}-{nonce}",
        settings=settings,
        now=now,
    )


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


def pending_signup(store: Store, token: str, *, settings: Settings, now: datetime) -> Subscriber:
    """The subscriber a confirmation link would confirm, without confirming (the GET page).
    Raises `InvalidToken`, `TokenExpired` or `LinkUsed`."""
    subscriber_id, nonce = read_confirm_token(token, secret_keys=settings.secret_keys, now=now)
    if not store.confirm_nonce_matches(subscriber_id, nonce):
        raise LinkUsed("this confirmation link was used or replaced by a newer one")
    return store.get_subscriber(subscriber_id)


def confirm_signup(
    store: Store, token: str, *, origin: RequestOrigin, settings: Settings, now: datetime
) -> Subscriber:
    """Confirm the signup a link names. Raises `InvalidToken`, `TokenExpired` or `LinkUsed`
    (confirming twice changes nothing the second time)."""
    subscriber_id, nonce = read_confirm_token(token, secret_keys=settings.secret_keys, now=now)
    consent = origin.event("confirmed", now=now)
    if not store.confirm_subscriber(subscriber_id, nonce, consent=consent):
        raise LinkUsed("this confirmation link was used or replaced by a newer one")
    subscriber = store.get_subscriber(subscriber_id)
    # Signed up and confirmed anew: an erased address may be mailed again.
    store.lift_suppression(suppression_hashes(subscriber.email, settings=settings))
    return subscriber


def subscriber_for_link(
    store: Store, purpose: TokenPurpose, token: str, *, settings: Settings
) -> Subscriber:
    """The subscriber of a manage or unsubscribe link; these never expire and are read with
    every key still listed. Raises `InvalidToken`, or `UnknownSubscriber` once erased."""
    subscriber_id = read_subscriber_token(purpose, token, secret_keys=settings.secret_keys)
    return store.get_subscriber(subscriber_id)


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


def unsubscribe(store: Store, subscriber_id: int, *, origin: RequestOrigin, now: datetime) -> None:
    """Stop every issue; idempotent, and quiet about subscribers erased meanwhile."""
    still_subscribed = [s for s in SubscriptionStatus if s is not SubscriptionStatus.UNSUBSCRIBED]
    with contextlib.suppress(UnknownSubscriber):
        store.change_status(
            subscriber_id,
            SubscriptionStatus.UNSUBSCRIBED,
            consent=origin.event("unsubscribed", now=now),
            allowed_from=still_subscribed,
        )


def unsubscribe_with_link(
    store: Store, token: str, *, origin: RequestOrigin, settings: Settings, now: datetime
) -> None:
    """RFC 8058 one-click and the unsubscribe page. Raises `InvalidToken` for a bad link."""
    subscriber_id = read_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, token, secret_keys=settings.secret_keys
    )
    unsubscribe(store, subscriber_id, origin=origin, now=now)


def export_subscriber(store: Store, subscriber_id: int) -> dict[str, Any]:
    """Everything held about one subscriber, as JSON-able data (a data-access request)."""
    subscriber = store.get_subscriber(subscriber_id)
    deliveries = store.list_deliveries(subscriber_id=subscriber_id)
    return {
        "subscriber": subscriber.model_dump(mode="json"),
        "deliveries": [
            delivery.model_dump(mode="json", exclude={"subscriber_id"}) for delivery in deliveries
        ],
    }


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
