"""The links in every email to a subscriber's pages, made for one subscriber and read back only
for that subscriber.

Each link token names a subscriber id and its MAC covers that subscriber's `link_key`, which
lives in their row only (see `service.signup.tokens`). Reading a link looks the claimed row up first
and checks the MAC with its key: once a subscriber is erased or removed, every link ever made
for them is dead, and no later row can answer to it. Manage links, which can read, export and
erase a subscription, expire (`manage_link_max_age_days`); unsubscribe, archive, feed and
feedback links never do, so a digest's way out keeps working however old it is.
"""

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import TypeVar

from service.errors import UnknownSubscriber
from service.models import Subscriber
from service.observability.logs import note_subscriber
from service.settings import Settings
from service.signup.tokens import (
    InvalidToken,
    TokenPurpose,
    claimed_subscriber_id,
    make_confirm_token,
    make_feedback_tokens,
    make_issue_token,
    make_subscriber_token,
    read_confirm_token,
    read_issue_token,
    read_section_feedback_token,
    read_subscriber_token,
    token_issued_at,
)
from service.store import Store

T = TypeVar("T")

# The subscriber link purposes whose token carries only the subscriber id, and the path each
# page is served under.
SUBSCRIBER_PATHS = {
    TokenPurpose.MANAGE: "m",
    TokenPurpose.UNSUBSCRIBE: "u",
    TokenPurpose.ARCHIVE_LIST: "archive",
    TokenPurpose.FEED: "feed",
}
SUBSCRIBER_PURPOSES = tuple(SUBSCRIBER_PATHS)


def manage_link_max_age(settings: Settings) -> timedelta:
    return timedelta(days=settings.manage_link_max_age_days)


def subscriber_url(
    purpose: TokenPurpose, subscriber: Subscriber, *, settings: Settings, now: datetime
) -> str:
    """The manage (`/m/…`), unsubscribe (`/u/…`), archive (`/archive/…`) or feed (`/feed/…`)
    page of one subscriber."""
    if purpose not in SUBSCRIBER_PURPOSES:
        raise ValueError(f"{purpose} links name more than a subscriber")
    token = make_subscriber_token(
        purpose,
        subscriber.id,
        link_key=subscriber.link_key,
        secret_key=settings.secret_key.get_secret_value(),
        now=now,
    )
    return f"{settings.public_base_url}/{SUBSCRIBER_PATHS[purpose]}/{token}"


def archive_list_url(subscriber: Subscriber, *, settings: Settings) -> str:
    """The subscriber's archive: the list of their past issues (`/archive/…`)."""
    return _lasting_url(TokenPurpose.ARCHIVE_LIST, subscriber, settings=settings)


def feed_url(subscriber: Subscriber, *, settings: Settings) -> str:
    """The subscriber's Atom feed of their issues (`/feed/…`)."""
    return _lasting_url(TokenPurpose.FEED, subscriber, settings=settings)


def _lasting_url(purpose: TokenPurpose, subscriber: Subscriber, *, settings: Settings) -> str:
    # Made as of the subscriber's signup rather than now: the same URL every time, in every
    # digest and on every page, which a feed reader keeps polling for years and which a
    # reader can bookmark. It never expires and dies with the subscriber's row, like the
    # unsubscribe link; a new secret key changes it, and the old one keeps working while it
    # is listed in `previous_secret_keys`.
    return subscriber_url(purpose, subscriber, settings=settings, now=subscriber.created_at)


def issue_url(
    subscriber: Subscriber, issue_date: date, *, settings: Settings, now: datetime
) -> str:
    """The "view in browser" page (`/a/…`) of one issue."""
    token = make_issue_token(
        subscriber.id,
        issue_date,
        link_key=subscriber.link_key,
        secret_key=settings.secret_key.get_secret_value(),
        now=now,
    )
    return f"{settings.public_base_url}/a/{token}"


def confirm_url(subscriber: Subscriber, nonce: str, *, settings: Settings, now: datetime) -> str:
    """The confirmation page (`/c/…`) of a pending signup's latest link."""
    token = make_confirm_token(
        subscriber.id,
        nonce,
        link_key=subscriber.link_key,
        secret_key=settings.secret_key.get_secret_value(),
        now=now,
    )
    return f"{settings.public_base_url}/c/{token}"


def feedback_urls(
    subscriber: Subscriber,
    paper_ids: Sequence[str],
    *,
    settings: Settings,
    now: datetime,
    profile_id: int | None = None,
) -> dict[str, str]:
    """The feedback page (`/f/…`) of each paper of an issue, by paper id; the verdict goes in
    the query (`?vote=like`), so one token serves both buttons. With `profile_id`, the verdict
    trains that profile (the section the papers are in)."""
    tokens = make_feedback_tokens(
        subscriber.id,
        paper_ids,
        link_key=subscriber.link_key,
        secret_key=settings.secret_key.get_secret_value(),
        now=now,
        profile_id=profile_id,
    )
    base = f"{settings.public_base_url}/f/"
    return {paper_id: base + token for paper_id, token in zip(paper_ids, tokens, strict=True)}


def subscriber_for_link(
    store: Store,
    purpose: TokenPurpose,
    token: str,
    *,
    settings: Settings,
    now: datetime,
    expires: bool = True,
) -> Subscriber:
    """The subscriber of a manage, unsubscribe, archive or feed link. Raises `InvalidToken`
    for a link that is not genuine or whose subscriber is gone, `TokenExpired` for a genuine
    manage link past its lifetime (`expires=False` accepts it: asking for a fresh one by
    mail). Only manage links expire."""
    if purpose not in SUBSCRIBER_PURPOSES:
        raise ValueError(f"{purpose} links name more than a subscriber")
    max_age = manage_link_max_age(settings) if purpose is TokenPurpose.MANAGE and expires else None
    subscriber, _ = _read_linked(
        store,
        token,
        lambda link_key: read_subscriber_token(
            purpose,
            token,
            link_key=link_key,
            secret_keys=settings.secret_keys,
            max_age=max_age,
            now=now,
        ),
    )
    return subscriber


def issue_for_link(
    store: Store, token: str, *, settings: Settings, now: datetime
) -> tuple[Subscriber, date]:
    """The subscriber and issue date of an archive link; raises `InvalidToken`."""
    subscriber, (_, issue_date) = _read_linked(
        store,
        token,
        lambda link_key: read_issue_token(
            token, link_key=link_key, secret_keys=settings.secret_keys, now=now
        ),
    )
    return subscriber, issue_date


def feedback_for_link(
    store: Store, token: str, *, settings: Settings, now: datetime
) -> tuple[Subscriber, int | None, str]:
    """The subscriber, profile id (None for a link that names none) and paper id of a
    feedback link; raises `InvalidToken`."""
    subscriber, (_, profile_id, paper_id) = _read_linked(
        store,
        token,
        lambda link_key: read_section_feedback_token(
            token, link_key=link_key, secret_keys=settings.secret_keys, now=now
        ),
    )
    return subscriber, profile_id, paper_id


def signup_for_link(
    store: Store, token: str, *, settings: Settings, now: datetime
) -> tuple[Subscriber, str]:
    """The subscriber and nonce of a confirmation link at most 72 hours old; raises
    `InvalidToken` or `TokenExpired`. Whether the nonce is still the latest is the caller's."""
    subscriber, (_, nonce) = _read_linked(
        store,
        token,
        lambda link_key: read_confirm_token(
            token, link_key=link_key, secret_keys=settings.secret_keys, now=now
        ),
    )
    return subscriber, nonce


def _read_linked(store: Store, token: str, read: Callable[[str | None], T]) -> tuple[Subscriber, T]:
    """Look up the row a token claims, then verify the token with that row's link key."""
    try:
        subscriber = store.get_subscriber(claimed_subscriber_id(token))
    except UnknownSubscriber as exc:
        raise InvalidToken("the link's subscriber is gone") from exc
    value = read(subscriber.link_key)
    if subscriber.link_key is None:
        # A row from before link keys: its links are unbound, so one made before the row
        # existed was made for someone else who once had the same id.
        created = subscriber.created_at.replace(microsecond=0)
        if token_issued_at(token) < created:
            raise InvalidToken("the link is older than its subscriber")
    # The request's log line names whose link it was, by id (never by address or token).
    note_subscriber(subscriber.id)
    return subscriber, value
