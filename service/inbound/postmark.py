"""Postmark's bounce and spam complaint webhooks (postmarkapp.com, "Bounce webhook" and "Spam
complaint webhook"), authenticated by HTTP basic authentication as Postmark documents for
webhooks: the user name and password are set in the webhook's URL, and checked here in
constant time.

A Bounce is read by its Type into a hard bounce, a soft one, an unsubscribe (a recipient's
"remove me" that Postmark recognised) or nothing (an auto-reply, a challenge, our own sending
error…); a SpamComplaint is a complaint. The recipient (`Email`) is believed, since the call is
authenticated; an issue tag is looked for in the returned message (`Content`), when Postmark
includes it. A call is known by its RecordType and ID, so a replay can be refused.
"""

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Any

from service.inbound.payloads import MalformedPayload, id_field, text_field
from service.inbound.reports import MailReport
from service.models import MailEventKind
from service.settings import Settings
from service.signup.return_addresses import issue_tags_in

VIA = "postmark"
BOUNCE_RECORD, COMPLAINT_RECORD = "Bounce", "SpamComplaint"
HARD, SOFT = MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE
# Postmark's bounce types (its Bounce API reference) that say something about the address.
# Unknown, SpamNotification, VirusNotification and Blocked are the receiving side refusing
# this message, not the address: soft. The rest (AutoResponder, Subscribe, AddressChange,
# ChallengeVerification, OpenRelayTest, Unconfirmed, SMTPApiError, InboundError, DMARCPolicy,
# TemplateRenderingFailed) are replies, or problems of the sender's own: nothing.
BOUNCE_KINDS: dict[str, MailEventKind] = {
    "HardBounce": HARD,
    "BadEmailAddress": HARD,
    "ManuallyDeactivated": HARD,
    "SoftBounce": SOFT,
    "Transient": SOFT,
    "DnsError": SOFT,
    "Unknown": SOFT,
    "SpamNotification": SOFT,
    "VirusNotification": SOFT,
    "Blocked": SOFT,
    "Unsubscribe": MailEventKind.UNSUBSCRIBE,
}
# The returned message is searched for a tag only this far: headers come first.
MAX_SEARCHED_CONTENT_CHARS = 64 * 1024


@dataclass(frozen=True)
class PostmarkCall:
    """A call that reports something, known by its RecordType and ID."""

    receipt_id: str
    report: MailReport


def is_postmark(authorization: str | None, *, settings: Settings) -> bool:
    """Whether an Authorization header carries the configured user name and password."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    expected_user = settings.postmark_webhook_user.encode("utf-8")
    expected_password = settings.postmark_webhook_password.get_secret_value().encode("utf-8")
    # Both compared every time, so the answer's timing tells nothing of which one was wrong.
    user_matches = hmac.compare_digest(user, expected_user)
    password_matches = hmac.compare_digest(password, expected_password)
    return bool(colon) and user_matches and password_matches


def postmark_call(payload: dict[str, Any]) -> PostmarkCall | None:
    """What a Bounce or SpamComplaint call reports; None for a call that changes nothing (a
    delivery, an open, a click, an auto-reply). `MalformedPayload` if it is not the JSON
    Postmark documents."""
    record_type = text_field(payload, "RecordType")
    if not record_type:
        raise MalformedPayload("RecordType is missing")
    if record_type == BOUNCE_RECORD:
        kind = BOUNCE_KINDS.get(text_field(payload, "Type"))
    elif record_type == COMPLAINT_RECORD:
        kind = MailEventKind.COMPLAINT
    else:
        return None
    if kind is None:
        return None
    receipt_id = f"{record_type}:{id_field(payload, 'ID')}"
    recipient = text_field(payload, "Email")
    if not recipient:
        raise MalformedPayload("Email is missing")
    content = text_field(payload, "Content")[:MAX_SEARCHED_CONTENT_CHARS]
    report = MailReport(
        kind=kind,
        via=VIA,
        issue_tags=tuple(issue_tags_in(content)),
        recipients=(recipient,),
        trusted_recipients=True,
        detail=text_field(payload, "Details") or text_field(payload, "Description"),
    )
    return PostmarkCall(receipt_id, report)
