"""The addresses mail comes back to, each naming its subscriber under a MAC:

- an issue's envelope sender (VERP), `bounces+TAG@BOUNCE_DOMAIN`, where a bounce goes;
- its Message-ID, `<digest-TAG@MAIL_DOMAIN>`, which bounces and complaints quote back;
- the `List-Unsubscribe` mailto address, `unsubscribe+ID-MAC@BOUNCE_DOMAIN`.

An issue's TAG is `YYYY-MM-DD-ID-MAC`: its date, its subscriber and an 80-bit MAC over both
and the subscriber's link key, in lower-case base32, since mail systems may change the case of
a local part. A forged or altered tag names nobody, and every tag dies with its subscriber.
Tags are the same for every rendering of an issue, so a resend keeps its Message-ID.
"""

import contextlib
import hmac
import re
from datetime import date

from service.errors import UnknownSubscriber
from service.models import Subscriber
from service.settings import Settings
from service.signup.tokens import InvalidToken, TokenPurpose, address_mac
from service.store import Store

BOUNCE_LOCAL_PART = "bounces"
UNSUBSCRIBE_LOCAL_PART = "unsubscribe"
_MAC = r"[a-z2-7]{16}"
ISSUE_TAG = re.compile(rf"(\d{{4}}-\d{{2}}-\d{{2}})-(\d{{1,18}})-({_MAC})", re.IGNORECASE)
UNSUBSCRIBE_TAG = re.compile(rf"(\d{{1,18}})-({_MAC})", re.IGNORECASE)
# Where tags turn up in returned mail: an envelope sender (Return-Path, X-Original-Sender,
# a relay's rewritten copy) or our Message-ID.
_TAGGED = re.compile(rf"(?:{BOUNCE_LOCAL_PART}\+|<?digest-)({ISSUE_TAG.pattern})@", re.IGNORECASE)


def issue_tag(subscriber: Subscriber, issue_date: date, *, settings: Settings) -> str:
    body = f"{issue_date.isoformat()}-{subscriber.id}"
    mac = address_mac(
        TokenPurpose.ISSUE_TAG,
        body,
        secret_key=settings.secret_keys[0],
        binding=subscriber.link_key,
    )
    return f"{body}-{mac}"


def bounce_address(subscriber: Subscriber, issue_date: date, *, settings: Settings) -> str:
    return issue_addresses(subscriber, issue_date, settings=settings)[0]


def digest_message_id(subscriber: Subscriber, issue_date: date, *, settings: Settings) -> str:
    return issue_addresses(subscriber, issue_date, settings=settings)[1]


def issue_addresses(
    subscriber: Subscriber, issue_date: date, *, settings: Settings
) -> tuple[str, str]:
    """An issue's envelope sender and Message-ID, from one tag. The Message-ID is built by
    hand: `make_msgid()` without a domain calls `socket.getfqdn()`, which can stall."""
    tag = issue_tag(subscriber, issue_date, settings=settings)
    return (
        f"{BOUNCE_LOCAL_PART}+{tag}@{settings.bounce_address_domain}",
        f"<digest-{tag}@{settings.mail_domain}>",
    )


def unsubscribe_address(subscriber: Subscriber, *, settings: Settings) -> str:
    mac = address_mac(
        TokenPurpose.MAILTO_UNSUBSCRIBE,
        str(subscriber.id),
        secret_key=settings.secret_keys[0],
        binding=subscriber.link_key,
    )
    return f"{UNSUBSCRIBE_LOCAL_PART}+{subscriber.id}-{mac}@{settings.bounce_address_domain}"


def issue_tags_in(text: str) -> list[str]:
    """Every issue tag in `text` (a returned message), in order of appearance, once each."""
    return list(dict.fromkeys(match.group(1).lower() for match in _TAGGED.finditer(text)))


def read_issue_tag(store: Store, tag: str, *, settings: Settings) -> tuple[Subscriber, date]:
    """The subscriber and issue date of a genuine tag; `InvalidToken` otherwise, also for a
    subscriber who is gone."""
    match = ISSUE_TAG.fullmatch(tag.strip())
    if match is None:
        raise InvalidToken("not an issue tag")
    day, subscriber_id, mac = match.groups()
    try:
        issue_date = date.fromisoformat(day)
    except ValueError as exc:
        raise InvalidToken("not an issue tag") from exc
    subscriber = _genuine(
        store,
        int(subscriber_id),
        TokenPurpose.ISSUE_TAG,
        f"{issue_date.isoformat()}-{int(subscriber_id)}",
        mac,
        settings=settings,
    )
    return subscriber, issue_date


def read_unsubscribe_address(store: Store, address: str, *, settings: Settings) -> Subscriber:
    """The subscriber of a genuine `unsubscribe+ID-MAC@…` address; `InvalidToken` otherwise."""
    local = address.strip().strip("<>").rpartition("@")[0]
    base, plus, tag = local.partition("+")
    match = UNSUBSCRIBE_TAG.fullmatch(tag)
    if base.lower() != UNSUBSCRIBE_LOCAL_PART or not plus or match is None:
        raise InvalidToken("not an unsubscribe address")
    subscriber_id, mac = match.groups()
    return _genuine(
        store,
        int(subscriber_id),
        TokenPurpose.MAILTO_UNSUBSCRIBE,
        str(int(subscriber_id)),
        mac,
        settings=settings,
    )


def _genuine(
    store: Store,
    subscriber_id: int,
    purpose: TokenPurpose,
    body: str,
    mac: str,
    *,
    settings: Settings,
) -> Subscriber:
    subscriber = None
    with contextlib.suppress(UnknownSubscriber):
        subscriber = store.get_subscriber(subscriber_id)
    if subscriber is None:
        raise InvalidToken("no such subscriber")
    for key in settings.secret_keys:
        expected = address_mac(purpose, body, secret_key=key, binding=subscriber.link_key)
        # Compared in constant time; the case of a local part is not the sender's to keep.
        if hmac.compare_digest(expected.encode("ascii"), mac.lower().encode("ascii")):
            return subscriber
    raise InvalidToken("tag signature does not match")
