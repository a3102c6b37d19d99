"""Signed, purpose-bound tokens for links in emails (confirm, unsubscribe, manage, an issue's
archived copy, the archive and its feed, feedback on a paper) and for the CSRF field of web
forms.

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

A feedback token names a subscriber and a paper; a digest carries one per paper, so an arXiv id
(`2511.01234`) travels packed into 4 bytes rather than as its 10 characters of text
(`pack_paper_id`): 31 characters for subscriber 42 instead of 39.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
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
    # One issue's "view in browser" copy.
    ARCHIVE = "archive"
    # The list of a subscriber's past issues, and their Atom feed.
    ARCHIVE_LIST = "archive-list"
    FEED = "feed"
    CONFIRM = "confirm"
    CSRF = "csrf"
    FEEDBACK = "feedback"
    # A 👍/👎 from a section of a digest: also names the interest profile it trains.
    PROFILE_FEEDBACK = "profile-feedback"
    # Mail addresses and Message-IDs (`service.signup.return_addresses`): an issue's envelope
    # sender and Message-ID, and the List-Unsubscribe mailto address.
    ISSUE_TAG = "issue-tag"
    MAILTO_UNSUBSCRIBE = "mailto-unsubscribe"


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
    return _make(purpose, payload.encode("utf-8"), secret_key=secret_key, now=now, binding=binding)


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
    payload = _read(
        purpose, token, secret_keys=secret_keys, max_age=max_age, now=now, binding=binding
    )
    try:
        return payload.decode("utf-8")
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


def make_feedback_token(
    subscriber_id: int,
    paper_id: str,
    *,
    link_key: str | None,
    secret_key: str,
    now: datetime | None = None,
) -> str:
    """A FEEDBACK token: one subscriber's say on one paper (the verdict is not in it)."""
    return make_feedback_tokens(
        subscriber_id, [paper_id], link_key=link_key, secret_key=secret_key, now=now
    )[0]


def make_feedback_tokens(
    subscriber_id: int,
    paper_ids: Iterable[str],
    *,
    link_key: str | None,
    secret_key: str,
    now: datetime | None = None,
    profile_id: int | None = None,
) -> list[str]:
    """The FEEDBACK tokens of one digest, one per paper, in order: the key and the
    subscriber's binding are prepared once for all of them. With `profile_id`, they are
    PROFILE_FEEDBACK tokens, which also name the profile whose section showed the papers."""
    issued_at = int((now or datetime.now(UTC)).timestamp()).to_bytes(_TIMESTAMP_BYTES, "big")
    prefix = issued_at + f"{subscriber_id}:".encode("ascii")
    purpose = TokenPurpose.FEEDBACK
    if profile_id is not None:
        prefix += f"{profile_id}:".encode("ascii")
        purpose = TokenPurpose.PROFILE_FEEDBACK
    keyed = _keyed_mac(purpose, secret_key, link_key)
    tokens = []
    for paper_id in paper_ids:
        body = prefix + pack_paper_id(paper_id)
        mac = keyed.copy()
        mac.update(body)
        tokens.append(_encode(body + mac.digest()[:_MAC_BYTES]))
    return tokens


def read_feedback_token(
    token: str,
    *,
    link_key: str | None,
    secret_keys: Sequence[str],
    now: datetime | None = None,
) -> tuple[int, str]:
    """(subscriber id, paper id) of a FEEDBACK token. These never expire, as the digest's
    unsubscribe link does not: the link dies with its subscriber's row instead."""
    payload = _read(
        TokenPurpose.FEEDBACK, token, secret_keys=secret_keys, now=now, binding=link_key
    )
    subscriber, _, paper = payload.partition(b":")
    if not subscriber.isdigit() or not paper:
        raise InvalidToken("token does not name a paper")
    return int(subscriber), unpack_paper_id(paper)


def read_section_feedback_token(
    token: str,
    *,
    link_key: str | None,
    secret_keys: Sequence[str],
    now: datetime | None = None,
) -> tuple[int, int | None, str]:
    """(subscriber id, profile id, paper id) of a PROFILE_FEEDBACK token, or of a FEEDBACK
    token with no profile (None): links from before profiles, or from a digest that named
    none, stay readable."""
    try:
        payload = _read(
            TokenPurpose.PROFILE_FEEDBACK,
            token,
            secret_keys=secret_keys,
            now=now,
            binding=link_key,
        )
    except InvalidToken:
        subscriber_id, paper_id = read_feedback_token(
            token, link_key=link_key, secret_keys=secret_keys, now=now
        )
        return subscriber_id, None, paper_id
    subscriber, _, rest = payload.partition(b":")
    profile, _, paper = rest.partition(b":")
    if not subscriber.isdigit() or not profile.isdigit() or not paper:
        raise InvalidToken("token does not name a paper of a profile")
    return int(subscriber), int(profile), unpack_paper_id(paper)


# An arXiv id since 2007 (YYMM.NNNN, or YYMM.NNNNN from 2015), as the sources store it: no version.
# ASCII digits only: `\d` would take other scripts' digits, which would not round-trip.
_ARXIV_ID = re.compile(r"([0-9]{2})(0[1-9]|1[0-2])\.([0-9]{4,5})")
_ARXIV_NUMBERS = 100_000
# Packed ids start with a byte 0x80-0x8E, which is never the first byte of UTF-8 text: a packed
# id and a paper id written as text can never be mistaken for each other.
_PACKED_MARK = 0x80 << 24
_PACKED_BYTES = 4


def pack_paper_id(paper_id: str) -> bytes:
    """A paper id as a token carries it: an arXiv id in 4 bytes, any other id as UTF-8."""
    match = _ARXIV_ID.fullmatch(paper_id)
    if match is None:
        return paper_id.encode("utf-8")
    year, month, number = match.groups()
    # Month of the century, then the width of the number (4 or 5 digits), then the number:
    # at most 2,400 x 100,000 values, well within the 30 bits left after the mark.
    months = int(year) * 12 + int(month) - 1
    value = (months * 2 + (len(number) == 5)) * _ARXIV_NUMBERS + int(number)
    return (_PACKED_MARK | value).to_bytes(_PACKED_BYTES, "big")


def unpack_paper_id(raw: bytes) -> str:
    if len(raw) == _PACKED_BYTES and 0x80 <= raw[0] <= 0xBF:
        value = int.from_bytes(raw, "big") - _PACKED_MARK
        rest, number = divmod(value, _ARXIV_NUMBERS)
        months, five_digits = divmod(rest, 2)
        year, month = divmod(months, 12)
        width = 5 if five_digits else 4
        if year > 99 or number >= 10**width:
            raise InvalidToken("token does not name a paper")
        return f"{year:02d}{month + 1:02d}.{number:0{width}d}"
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidToken("token does not name a paper") from exc


def address_mac(purpose: TokenPurpose, body: str, *, secret_key: str, binding: str | None) -> str:
    """An 80-bit MAC of `body` in lower-case base32 (16 characters): for the local part of a
    mail address, which mail systems may change the case of, and for a Message-ID."""
    mac = _keyed_mac(purpose, secret_key, binding)
    mac.update(body.encode("utf-8"))
    return base64.b32encode(mac.digest()[:10]).decode("ascii").lower()


def _make(
    purpose: TokenPurpose,
    payload: bytes,
    *,
    secret_key: str,
    now: datetime | None,
    binding: str | None,
) -> str:
    issued_at = int((now or datetime.now(UTC)).timestamp())
    body = issued_at.to_bytes(_TIMESTAMP_BYTES, "big") + payload
    return _encode(body + _mac(purpose, body, secret_key, binding))


def _read(
    purpose: TokenPurpose,
    token: str,
    *,
    secret_keys: Sequence[str],
    max_age: timedelta | None = None,
    now: datetime | None,
    binding: str | None,
) -> bytes:
    """The payload of a genuine token, as bytes; see `read_token`."""
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
    return body[_TIMESTAMP_BYTES:]


def _mac(purpose: TokenPurpose, body: bytes, secret_key: str, binding: str | None) -> bytes:
    mac = _keyed_mac(purpose, secret_key, binding)
    mac.update(body)
    return mac.digest()[:_MAC_BYTES]


def _keyed_mac(purpose: TokenPurpose, secret_key: str, binding: str | None) -> hmac.HMAC:
    """The MAC of a token so far, before its body: copied for each token of a digest."""
    # The purpose is part of the signed message, so a token never verifies as another kind;
    # so is the binding (a subscriber's link key), so it verifies for one subscriber only.
    # Without a binding the message is that of links made before link keys existed.
    message = purpose.value.encode("ascii") + b"\0"
    if binding is not None:
        message += b"\1" + binding.encode("utf-8") + b"\0"
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256)


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
