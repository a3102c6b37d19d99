"""Mailgun's event webhooks (documentation.mailgun.com, "Securing Webhooks" and the event
types), signed as Mailgun documents: the call's `signature` holds a timestamp, a random token
and the hex HMAC-SHA256 of the timestamp and the token joined, keyed with the webhook signing
key. A call older than `webhook_max_age_seconds` is refused, and a fresher one whose token was
seen before (the receipts of `service.web.webhooks`).

Its `event-data` is read into a report: `failed` with severity permanent is a hard bounce,
with severity temporary a soft one; `complained` is a complaint; any other event, nothing.
Issue tags come from the message's Message-ID and its envelope sender; the recipient is
believed, since the call is signed.
"""

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from service.errors import PaperwireError
from service.inbound.payloads import (
    MAX_ID_CHARS,
    MalformedPayload,
    as_object,
    id_field,
    object_field,
    text_field,
)
from service.inbound.reports import MailReport
from service.models import MailEventKind
from service.settings import Settings
from service.signup.return_addresses import issue_tags_in

VIA = "mailgun"
FAILURE_KINDS = {
    "permanent": MailEventKind.HARD_BOUNCE,
    "temporary": MailEventKind.SOFT_BOUNCE,
}
STATUS_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class MailgunRefused(PaperwireError):
    """A call not signed with the webhook signing key, or not fresh: answered 401."""


def verified_token(payload: dict[str, Any], *, settings: Settings, now: datetime) -> str:
    """The token of a call signed with the webhook signing key, at most the maximum age old
    (or ahead); `MailgunRefused` otherwise. The token is what a replay would repeat."""
    try:
        signed = as_object(payload.get("signature"), "signature")
        timestamp = id_field(signed, "timestamp")
        token = id_field(signed, "token")
        signature = text_field(signed, "signature")
    except MalformedPayload as exc:
        raise MailgunRefused("no signature") from exc
    if not HEX_SHA256.fullmatch(signature) or len(token) > MAX_ID_CHARS:
        raise MailgunRefused("no signature")
    key = settings.mailgun_webhook_signing_key.get_secret_value().encode("utf-8")
    expected = hmac.new(key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii")):
        raise MailgunRefused("signature does not match")
    if not timestamp.isdigit():
        raise MailgunRefused("timestamp is not a time")
    if abs(now.timestamp() - int(timestamp)) > settings.webhook_max_age_seconds:
        raise MailgunRefused("timestamp too old or in the future")
    return token


def mailgun_reports(payload: dict[str, Any]) -> list[MailReport]:
    """The report in a signed call's event-data; none for an event that changes nothing.
    `MalformedPayload` if it is not the JSON Mailgun documents."""
    event = payload.get("event-data")
    if event is None:
        raise MalformedPayload("event-data is missing")
    event = as_object(event, "event-data")
    name = text_field(event, "event")
    if name == "failed":
        kind = FAILURE_KINDS.get(text_field(event, "severity"))
    elif name == "complained":
        kind = MailEventKind.COMPLAINT
    else:
        return []
    if kind is None:
        return []
    recipient = text_field(event, "recipient")
    if not recipient:
        raise MalformedPayload("recipient is missing")
    headers = object_field(object_field(event, "message"), "headers")
    sender = text_field(object_field(event, "envelope"), "sender")
    status = object_field(event, "delivery-status")
    code = text_field(status, "enhanced-code").strip()
    return [
        MailReport(
            kind=kind,
            via=VIA,
            issue_tags=tuple(issue_tags_in(f"{sender}\n{text_field(headers, 'message-id')}")),
            recipients=(recipient,),
            trusted_recipients=True,
            status_code=code if STATUS_CODE.fullmatch(code) else None,
            detail=text_field(status, "description")
            or text_field(status, "message")
            or text_field(event, "reason"),
        )
    ]
