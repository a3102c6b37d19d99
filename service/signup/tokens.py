"""Signed, purpose-bound tokens for links in emails (confirm, unsubscribe, manage, archive) and
for the CSRF field of web forms.

A token is base64url(issued_at[4] + payload + mac[12]) with no padding: a link naming a
subscriber id is 24 to 30 characters. The MAC is HMAC-SHA256 over the purpose and the rest of
the token, truncated to 96 bits: plenty against forging a link, half the length of a full
digest.

Written here rather than with itsdangerous: its tokens for the same id, purpose and binding are
43 characters (59 with SHA-256) against 30, which keeps an unsubscribe URL on a short host within
the 78-character header line (`python -m bench.link_tokens`); and the links already in
subscribers' mailboxes are in this format, which must keep working.

A subscriber's link also covers their `link_key`, a random value stored in their row and never
put in the link: the link works for that row only, and dies with it, even if a later row were
ever given the same id. Reading such a link takes two steps: the id it claims names the row to
look up (`claimed_subscriber_id`), then the MAC is checked with that row's key.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from service.errors import PaperwireError

_TIMESTAMP_BYTES = 4  # seconds since the Unix epoch, unsigned: good until 2106
_MAC_BYTES = 12
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN_CHARS = 512  # far above any token made here; refuses junk before decoding it


class TokenPurpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"
    ARCHIVE = "archive"
    CONFIRM = "confirm"
    CSRF = "csrf"


# Mailman keeps a pending subscription three days; a confirmation link lives as long.
CONFIRM_MAX_AGE = timedelta(hours=72)


class InvalidToken(PaperwireError):
    """The token is malformed, tampered with, truncated or signed for another purpose."""


class TokenExpired(InvalidToken):
    """The token is genuine but older than the reader accepts."""


def make_token(
    purpose: TokenPurpose,
    payload: str,
    *,
    secret_key: str,
    now: datetime | None = None,
    binding: str | None = None,
) -> str:
    """Sign `payload` (a short string) for `purpose`; `binding`, if given, is covered by the
    MAC without being carried, so only a reader who knows it can accept the token."""
    issued_at = int((now or datetime.now(UTC)).timestamp())
    body = issued_at.to_bytes(_TIMESTAMP_BYTES, "big") + payload.encode("utf-8")
    return _encode(body + _mac(purpose, body, secret_key, binding))


def read_token(
    purpose: TokenPurpose,
    token: str,
    *,
    secret_keys: Sequence[str],
    max_age: timedelta | None = None,
    now: datetime | None = None,
    binding: str | None = None,
) -> str:
    """Return the payload of a token made for `purpose` with any of `secret_keys` (and the
    same `binding`).

    The first key is the current one; older keys stay listed while links signed with them
    should keep working. Raises `InvalidToken`, or `TokenExpired` if older than `max_age`.
    """
    if isinstance(secret_keys, str):
        raise TypeError("secret_keys must be a sequence of keys, not a single string")
    if not secret_keys:
        raise ValueError("at least one secret key is needed to read tokens")
    raw = _decode(token)
    if len(raw) < _TIMESTAMP_BYTES + _MAC_BYTES:
        raise InvalidToken("token is too short")
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not any(hmac.compare_digest(mac, _mac(purpose, body, key, binding)) for key in secret_keys):
        raise InvalidToken("token signature does not match")
    # Only a genuine token's age is checked, so a forged one never learns anything more.
    issued_at = datetime.fromtimestamp(int.from_bytes(body[:_TIMESTAMP_BYTES], "big"), UTC)
    if max_age is not None and (now or datetime.now(UTC)) - issued_at > max_age:
        raise TokenExpired(f"token issued at {issued_at:%Y-%m-%d %H:%M} UTC has expired")
    try:
        return body[_TIMESTAMP_BYTES:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidToken("token payload is not text") from exc


def token_issued_at(token: str) -> datetime:
    """When a token says it was made; trust it only after `read_token` accepted the token."""
    raw = _decode(token)
    if len(raw) < _TIMESTAMP_BYTES + _MAC_BYTES:
        raise InvalidToken("token is too short")
    return datetime.fromtimestamp(int.from_bytes(raw[:_TIMESTAMP_BYTES], "big"), UTC)


def claimed_subscriber_id(token: str) -> int:
    """The subscriber id a link token claims to be for, NOT verified: only the row to look up
    before `read_*_token` checks the MAC with that row's link key."""
    raw = _decode(token)
    if len(raw) < _TIMESTAMP_BYTES + _MAC_BYTES:
        raise InvalidToken("token is too short")
    payload = raw[_TIMESTAMP_BYTES:-_MAC_BYTES]
    subscriber, _, _rest = payload.partition(b":")
    if not subscriber.isdigit() or len(subscriber) > 18:
        raise InvalidToken("token does not carry a subscriber id")
    return int(subscriber)


def make_subscriber_token(
    purpose: TokenPurpose,
    subscriber_id: int,
    *,
    link_key: str | None,
    secret_key: str,
    now: datetime | None = None,
) -> str:
    return make_token(purpose, str(subscriber_id), secret_key=secret_key, now=now, binding=link_key)


def read_subscriber_token(
    purpose: TokenPurpose,
    token: str,
    *,
    link_key: str | None,
    secret_keys: Sequence[str],
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> int:
    """The subscriber id carried by a token from `make_subscriber_token` with `link_key`."""
    payload = read_token(
        purpose, token, secret_keys=secret_keys, max_age=max_age, now=now, binding=link_key
    )
    if not payload.isascii() or not payload.isdigit():
        raise InvalidToken("token does not carry a subscriber id")
    return int(payload)


def make_confirm_token(
    subscriber_id: int,
    nonce: str,
    *,
    link_key: str | None,
    secret_key: str,
    now: datetime | None = None,
) -> str:
    """A CONFIRM token for one confirmation link: the nonce ties it to the link last sent."""
    return make_token(
        TokenPurpose.CONFIRM,
        f"{subscriber_id}:{nonce}",
        secret_key=secret_key,
        now=now,
        binding=link_key,
    )


def read_confirm_token(
    token: str,
    *,
    link_key: str | None,
    secret_keys: Sequence[str],
    now: datetime | None = None,
) -> tuple[int, str]:
    """(subscriber id, nonce) of a CONFIRM token at most CONFIRM_MAX_AGE old."""
    payload = read_token(
        TokenPurpose.CONFIRM,
        token,
        secret_keys=secret_keys,
        max_age=CONFIRM_MAX_AGE,
        now=now,
        binding=link_key,
    )
    subscriber, _, nonce = payload.partition(":")
    if not subscriber.isascii() or not subscriber.isdigit() or not nonce:
        raise InvalidToken("token does not name a pending signup")
    return int(subscriber), nonce


def make_issue_token(
    subscriber_id: int,
    issue_date: date,
    *,
    link_key: str | None,
    secret_key: str,
    now: datetime | None = None,
) -> str:
    """An ARCHIVE token naming one issue: (subscriber id, issue date)."""
    payload = f"{subscriber_id}:{issue_date.isoformat()}"
    return make_token(
        TokenPurpose.ARCHIVE, payload, secret_key=secret_key, now=now, binding=link_key
    )


def read_issue_token(
    token: str,
    *,
    link_key: str | None,
    secret_keys: Sequence[str],
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[int, date]:
    payload = read_token(
        TokenPurpose.ARCHIVE,
        token,
        secret_keys=secret_keys,
        max_age=max_age,
        now=now,
        binding=link_key,
    )
    subscriber, _, issued = payload.partition(":")
    try:
        if not subscriber.isascii() or not subscriber.isdigit():
            raise ValueError(subscriber)
        return int(subscriber), date.fromisoformat(issued)
    except ValueError as exc:
        raise InvalidToken("token does not name an issue") from exc


def _mac(purpose: TokenPurpose, body: bytes, secret_key: str, binding: str | None) -> bytes:
    # The purpose is part of the signed message, so a token never verifies as another kind;
    # so is the binding (a subscriber's link key), so it verifies for one subscriber only.
    # Without a binding the message is that of links made before link keys existed.
    message = purpose.value.encode("ascii") + b"\0"
    if binding is not None:
        message += b"\1" + binding.encode("utf-8") + b"\0"
    message += body
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if len(token) > _MAX_TOKEN_CHARS or not _TOKEN_SHAPE.fullmatch(token):
        raise InvalidToken("token contains characters outside base64url")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError as exc:
        raise InvalidToken("token is not valid base64url") from exc
    # One spelling per token: reject strings that differ only in unused trailing bits.
    if _encode(raw) != token:
        raise InvalidToken("token is not canonical base64url")
    return raw
