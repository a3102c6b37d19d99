"""Amazon SNS messages posted to /webhooks/ses, verified as AWS documents it ("Verifying the
signatures of Amazon SNS messages") before anything in them is believed:

1. the message's Type is one SNS sends, and its TopicArn one of `sns_topic_arns`;
2. its Timestamp is within `webhook_max_age_seconds` of now: an older copy is refused outright,
   a fresher one by its MessageId (the receipts of `service.web.webhooks`);
3. its SigningCertURL matches `sns_certificate_url_pattern` (https on Amazon's SNS hosts), and
   the certificate found there holds the RSA key that signed the string to sign, SHA1withRSA
   for SignatureVersion 1 and SHA256withRSA for 2.

A certificate is fetched once per URL for the life of the app, its size and the time it may
take both bounded. Its chain is not walked: the URL is https on Amazon's own host, so TLS has
already said who served it, as in AWS's own SDK validators.

A SubscriptionConfirmation is confirmed by a GET of its SubscribeURL, which must match the same
pattern: a signed message cannot send the server to fetch anything but Amazon's pages.
"""

import asyncio
import base64
import binascii
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from service.errors import PaperwireError
from service.inbound.payloads import MAX_ID_CHARS, MalformedPayload, load_object
from service.settings import Settings

log = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
# The fields each Type signs, in the order they are signed.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_FIELDS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_FIELDS,
}
# A Notification published without a subject has no Subject, and signs none.
OPTIONAL_FIELDS = frozenset({"Subject"})
SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# An SNS signing certificate is under 2 KB of PEM.
MAX_CERTIFICATE_BYTES = 16 * 1024
# A signature of a 2048- or 4096-bit key, in base64, with room to spare.
MAX_SIGNATURE_CHARS = 2048
FETCH_TIMEOUT_SECONDS = 5.0
# Amazon signs with one certificate per region, changed rarely.
MAX_CACHED_CERTIFICATES = 16


class SnsRefused(PaperwireError):
    """Not a message of Amazon SNS for an accepted topic, or not now: answered 401."""


class SnsUnavailable(PaperwireError):
    """Amazon's certificate or confirmation page could not be fetched now."""


@dataclass(frozen=True)
class SnsMessage:
    """A verified message; `message` is what was published (for SES, a notification's JSON)."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str = ""  # confirmations only


def string_to_sign(fields: Mapping[str, Any]) -> bytes:
    """What SNS signs: each field its Type signs, in order, as its name and its value each on a
    line of its own. `SnsRefused` for a Type SNS does not send, or a signed field missing."""
    kind = fields.get("Type")
    names = SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if names is None:
        raise SnsRefused("not a message type SNS sends")
    lines: list[str] = []
    for name in names:
        value = fields.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise SnsRefused(f"{name} is missing")
        lines += [name, value]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


class SigningCertificates:
    """The public keys of SNS signing certificates by URL, each fetched once, the oldest
    dropped past `max_entries`. One per app (`WebState`): never shared through a module."""

    def __init__(self, max_entries: int = MAX_CACHED_CERTIFICATES) -> None:
        self.max_entries = max_entries
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        key = self._keys.get(url)
        if key is None:
            status, pem = await _get(url, max_bytes=MAX_CERTIFICATE_BYTES)
            if status != httpx.codes.OK:
                raise _failed_fetch("signing certificate", status)
            key = _public_key(pem)
            self._keys[url] = key
            while len(self._keys) > self.max_entries:
                self._keys.popitem(last=False)
        return key


async def verify_sns_message(
    body: bytes, *, settings: Settings, now: datetime, certificates: SigningCertificates
) -> SnsMessage:
    """The message in `body` once it is shown to be Amazon's, for an accepted topic, and fresh
    (see the module's docstring); `SnsRefused` otherwise, or `SnsUnavailable` when the signing
    certificate cannot be fetched now. The checks that need no fetch come first."""
    try:
        fields = load_object(body)
    except MalformedPayload as exc:
        raise SnsRefused("not an SNS message") from exc
    signed = string_to_sign(fields)
    # `string_to_sign` has checked that each field signed is a string.
    message = SnsMessage(
        type=fields["Type"],
        message_id=fields["MessageId"],
        topic_arn=fields["TopicArn"],
        message=fields["Message"],
        subscribe_url="" if fields["Type"] == NOTIFICATION else fields["SubscribeURL"],
    )
    if message.topic_arn not in settings.sns_topic_arns:
        raise SnsRefused("not an accepted topic")
    if not message.message_id or len(message.message_id) > MAX_ID_CHARS:
        raise SnsRefused("not a message id")
    _check_fresh(fields["Timestamp"], settings=settings, now=now)
    algorithm = SIGNATURE_HASHES.get(str(fields.get("SignatureVersion")))
    if algorithm is None:
        raise SnsRefused("not a signature version SNS uses")
    signature = _signature(fields.get("Signature"))
    certificate_url = fields.get("SigningCertURL")
    if not isinstance(certificate_url, str) or not is_amazon_url(certificate_url, settings):
        raise SnsRefused("signing certificate not on Amazon's SNS host")
    if message.type != NOTIFICATION and not is_amazon_url(message.subscribe_url, settings):
        raise SnsRefused("SubscribeURL not on Amazon's SNS host")
    key = await certificates.public_key(certificate_url)
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise SnsRefused("signature does not match") from exc
    return message


async def confirm_subscription(message: SnsMessage) -> None:
    """Confirm the subscription a verified SubscriptionConfirmation asks for, by a GET of its
    SubscribeURL (which `verify_sns_message` matched against the pattern)."""
    status, _ = await _get(message.subscribe_url, max_bytes=0)
    if not httpx.codes.is_success(status):
        raise _failed_fetch("subscription confirmation", status)


def is_amazon_url(url: str, settings: Settings) -> bool:
    try:
        return re.match(settings.sns_certificate_url_pattern, url) is not None
    except re.error:
        log.error("PAPERWIRE_SNS_CERTIFICATE_URL_PATTERN is not a regular expression")
        return False


def _check_fresh(timestamp: str, *, settings: Settings, now: datetime) -> None:
    """A Timestamp further from now than the maximum age either way is refused: one from the
    future would outlive the receipt that catches its replay."""
    try:
        sent = datetime.fromisoformat(timestamp)
    except ValueError as exc:
        raise SnsRefused("Timestamp is not a time") from exc
    if sent.tzinfo is None:
        raise SnsRefused("Timestamp has no time zone")
    if abs(now - sent) > timedelta(seconds=settings.webhook_max_age_seconds):
        raise SnsRefused("Timestamp too old or in the future")


def _signature(value: object) -> bytes:
    if not isinstance(value, str) or not value or len(value) > MAX_SIGNATURE_CHARS:
        raise SnsRefused("no signature")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SnsRefused("signature is not base64") from exc


def _public_key(pem: bytes) -> rsa.RSAPublicKey:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SnsRefused("signing certificate is not a PEM certificate") from exc
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRefused("signing certificate has no RSA key")
    return key


def _failed_fetch(what: str, status: int) -> PaperwireError:
    """Amazon's own trouble (5xx, 429) is worth a retry later; any other answer means the URL
    names nothing Amazon serves."""
    if status >= 500 or status == httpx.codes.TOO_MANY_REQUESTS:
        return SnsUnavailable(f"{what}: HTTP {status}")
    return SnsRefused(f"{what}: HTTP {status}")


async def _get(url: str, *, max_bytes: int) -> tuple[int, bytes]:
    """The status of GET `url` and at most `max_bytes` of its body (`SnsRefused` past that),
    within `FETCH_TIMEOUT_SECONDS` in all, following no redirect: a redirect could lead off
    Amazon's host. The body is read as sent, never decompressed."""
    try:
        async with (
            asyncio.timeout(FETCH_TIMEOUT_SECONDS),
            httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
        ):
            body = bytearray()
            if max_bytes:
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > max_bytes:
                        raise SnsRefused("answer too large")
            return response.status_code, bytes(body)
    except (httpx.InvalidURL, ValueError) as exc:
        raise SnsRefused("not a URL") from exc
    except (httpx.HTTPError, TimeoutError) as exc:
        raise SnsUnavailable(f"{type(exc).__name__} fetching from Amazon SNS") from exc
