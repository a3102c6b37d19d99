"""Amazon SES bounce and complaint notifications (the Message of an SNS notification, see
`service.inbound.sns`) read into `MailReport`s, one per recipient, as AWS documents them
("Amazon SNS notification contents for Amazon SES"; event publishing names the same
`eventType`).

- Bounce: bounceType Permanent is a hard bounce; Transient and Undetermined are soft ones,
  since SES itself cannot tell that the address is gone.
- Complaint: a complaint, unless its complaintFeedbackType is "not-spam" (a mailbox provider
  saying the mail was wrongly marked as spam).
- Delivery, and every other event SES publishes: nothing.

The issue tags come from the envelope sender the mail was sent with (`mail.source`, our VERP
address) and from its original Message-ID (`mail.commonHeaders`, `mail.headers`, which SES
keeps though it sends with one of its own); the recipient's address is believed, since the
notification is signed by Amazon.
"""

import re
from typing import Any

from service.inbound.payloads import (
    MalformedPayload,
    as_object,
    list_field,
    load_object,
    object_field,
    text_field,
)
from service.inbound.reports import MailReport
from service.models import MailEventKind
from service.signup.return_addresses import issue_tags_in

VIA = "ses"
HARD_BOUNCE_TYPES = frozenset({"Permanent"})
NOT_A_COMPLAINT = "not-spam"
# The headers of the original message that may quote an issue tag.
TAGGED_HEADERS = frozenset({"message-id", "return-path"})
STATUS_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def ses_reports(message: str) -> list[MailReport]:
    """The reports in an SES notification; none for a kind that changes nothing.
    `MalformedPayload` if it is not the JSON SES documents."""
    notification = load_object(message)
    kind = text_field(notification, "notificationType") or text_field(notification, "eventType")
    if kind == "Bounce":
        return _bounce_reports(notification)
    if kind == "Complaint":
        return _complaint_reports(notification)
    return []


def _bounce_reports(notification: dict[str, Any]) -> list[MailReport]:
    bounce = object_field(notification, "bounce")
    bounce_type = text_field(bounce, "bounceType")
    kind = (
        MailEventKind.HARD_BOUNCE if bounce_type in HARD_BOUNCE_TYPES else MailEventKind.SOFT_BOUNCE
    )
    summary = f"{bounce_type}/{text_field(bounce, 'bounceSubType')}"
    tags = _issue_tags(notification)
    reports = []
    for entry in list_field(bounce, "bouncedRecipients"):
        recipient = as_object(entry, "a bounced recipient")
        status = text_field(recipient, "status").strip()
        reports.append(
            MailReport(
                kind=kind,
                via=VIA,
                issue_tags=tags,
                recipients=(_address(recipient),),
                trusted_recipients=True,
                status_code=status if STATUS_CODE.fullmatch(status) else None,
                detail=text_field(recipient, "diagnosticCode") or summary,
            )
        )
    return reports


def _complaint_reports(notification: dict[str, Any]) -> list[MailReport]:
    complaint = object_field(notification, "complaint")
    feedback_type = text_field(complaint, "complaintFeedbackType")
    if feedback_type == NOT_A_COMPLAINT:
        return []
    tags = _issue_tags(notification)
    return [
        MailReport(
            kind=MailEventKind.COMPLAINT,
            via=VIA,
            issue_tags=tags,
            recipients=(_address(as_object(entry, "a complained recipient")),),
            trusted_recipients=True,
            detail=feedback_type or "complaint",
        )
        for entry in list_field(complaint, "complainedRecipients")
    ]


def _address(recipient: dict[str, Any]) -> str:
    address = text_field(recipient, "emailAddress")
    if not address:
        raise MalformedPayload("a recipient without emailAddress")
    return address


def _issue_tags(notification: dict[str, Any]) -> tuple[str, ...]:
    mail = object_field(notification, "mail")
    quoted = [
        text_field(mail, "source"),
        text_field(object_field(mail, "commonHeaders"), "messageId"),
    ]
    for entry in list_field(mail, "headers"):
        header = as_object(entry, "a header")
        if text_field(header, "name").lower() in TAGGED_HEADERS:
            quoted.append(text_field(header, "value"))
    return tuple(issue_tags_in("\n".join(quoted)))
