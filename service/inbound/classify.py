"""What one received message says: a bounce, a spam complaint or a mailed unsubscribe, read
into `MailReport`s for `reports.apply_report`, or a note saying why nothing is done, for the
operator's inbox.

Tried in this order:
1. sent to an `unsubscribe+…` address: an unsubscribe, whatever the message says (RFC 8058's
   mailto alternative: the signed address is the request);
2. an ARF report (RFC 5965) of abuse or fraud, or of no stated type: a complaint; other
   feedback types (not-spam, virus, …) are only kept;
3. a bounce as flufl.bounce (Mailman's detector) finds one, an RFC 3464 DSN or one of the
   formats servers send instead: permanent (5.x.x) is hard, temporary (4.x.x, delayed) soft.
   One report per message: a digest has one recipient;
4. anything else (auto-replies, replies, spam): only kept.

A complaint or a bounce names its issue by the tags (`service.signup.return_addresses`) in
the address it came back to, then in its text: the returned Message-ID and Return-Path. Tags
are checked when the report is applied, so a forged one names nobody. The receiver caps the
message's size before it gets here.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import collapse_rfc2231_value

from flufl.bounce import all_failures

from service.inbound.reports import MailReport
from service.models import MailEventKind
from service.signup.return_addresses import UNSUBSCRIBE_LOCAL_PART, issue_tags_in

# Tags tried per report: each costs a database lookup when applied, and a genuine bounce
# repeats one tag (envelope, Return-Path, Message-ID).
MAX_TAGS = 8
# flufl.bounce searches decoded lines with patterns that take time quadratic in a line's
# length; RFC 5322 allows 998 characters, and a message with longer lines is not scanned.
MAX_SCANNED_LINE_CHARS = 998
COMPLAINT_FEEDBACK_TYPES = ("abuse", "fraud", "")
DELIVERED_ACTIONS = ("delivered", "relayed", "expanded")
STATUS_CODE = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
MAX_NOTE_FIELD_CHARS = 80


@dataclass(frozen=True)
class Classification:
    """The reports a message makes, if any, and what it is in a few words (the inbox note
    when no report names anyone)."""

    reports: tuple[MailReport, ...]
    note: str
    subject: str = ""


def classify_message(data: bytes, *, rcpt_tos: Sequence[str], mail_from: str) -> Classification:
    """Read one message as received: its bytes, the RCPT TO addresses, the MAIL FROM."""
    unsubscribes = tuple(
        MailReport(kind=MailEventKind.UNSUBSCRIBE, via="mailto", unsubscribe_address=address)
        for address in dict.fromkeys(rcpt_tos)
        if _local_part(address).startswith(f"{UNSUBSCRIBE_LOCAL_PART}+")
    )
    subject = ""
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        subject = _header(message, "Subject")
        if unsubscribes:
            return Classification(unsubscribes, "an unsubscribe mail", subject)
        return _classify_report(
            message, data, rcpt_tos=rcpt_tos, mail_from=mail_from, subject=subject
        )
    # Whatever the parser or a detector trips over in a hostile message, the message is kept
    # for the operator with a note, and the sender gets the same answer as for any other.
    except Exception as exc:
        if unsubscribes:
            return Classification(unsubscribes, "an unsubscribe mail", subject)
        return Classification((), f"not readable as mail ({type(exc).__name__})", subject)


def _classify_report(
    message: Message, data: bytes, *, rcpt_tos: Sequence[str], mail_from: str, subject: str
) -> Classification:
    if _is_report(message, "feedback-report"):
        return _complaint(message, data, rcpt_tos=rcpt_tos, subject=subject)
    if _is_report(message, "delivery-status") and not _reports_a_failure(message):
        # Read by its standard fields alone: the heuristics below might take its text for
        # a bounce.
        note = "a delivery status notification reporting no failure"
        return Classification((), note, subject)
    longest = _longest_decoded_line(message)
    if longest > MAX_SCANNED_LINE_CHARS:
        note = f"not scanned for a bounce: a line of {longest} characters"
        return Classification((), note, subject)
    temporary, permanent = all_failures(message)
    if temporary or permanent:
        return _bounce(message, data, rcpt_tos=rcpt_tos, permanent=bool(permanent), subject=subject)
    if _header(message, "Auto-Submitted").lower() not in ("", "no"):
        note = "an automatic reply"
    elif mail_from in ("", "<>"):
        note = "a delivery notice that no bounce detector could read"
    else:
        note = "not a bounce, a complaint or an unsubscribe"
    return Classification((), note, subject)


def _complaint(
    message: Message, data: bytes, *, rcpt_tos: Sequence[str], subject: str
) -> Classification:
    fields = _feedback_fields(message)
    feedback_type = _header(fields, "Feedback-Type").lower()[:MAX_NOTE_FIELD_CHARS]
    if feedback_type not in COMPLAINT_FEEDBACK_TYPES:
        return Classification((), f"a feedback report of type {feedback_type!r}", subject)
    detail = f"feedback type {feedback_type or 'not given'}"
    if agent := _header(fields, "User-Agent")[:MAX_NOTE_FIELD_CHARS]:
        detail += f", from {agent}"
    report = MailReport(
        kind=MailEventKind.COMPLAINT,
        via="arf",
        issue_tags=_issue_tags(message, data, rcpt_tos),
        detail=detail,
    )
    return Classification((report,), f"a complaint ({detail})", subject)


def _bounce(
    message: Message, data: bytes, *, rcpt_tos: Sequence[str], permanent: bool, subject: str
) -> Classification:
    status_code, diagnostic = _delivery_status(message)
    if status_code is not None:
        # A stated status decides: a relay that gave up on a 4.x.x failure (Action: failed)
        # still says the mailbox may work later.
        permanent = status_code.startswith("5")
    kind = MailEventKind.HARD_BOUNCE if permanent else MailEventKind.SOFT_BOUNCE
    what = "permanent failure" if permanent else "temporary failure"
    report = MailReport(
        kind=kind,
        via="dsn",
        issue_tags=_issue_tags(message, data, rcpt_tos),
        status_code=status_code,
        detail=diagnostic or f"{what}, read by flufl.bounce",
    )
    word = "hard" if permanent else "soft"
    note = f"a {word} bounce" + (f" ({status_code})" if status_code else "")
    return Classification((report,), note, subject)


def _delivery_status(message: Message) -> tuple[str | None, str]:
    """The worst Status of the per-recipient fields of a DSN, and its Diagnostic-Code."""
    found: list[tuple[str, str]] = []
    for fields in _recipient_fields(message):
        match = STATUS_CODE.match(_header(fields, "Status"))
        if match is not None and match.group(1) != "2":
            found.append((match.group(0), _header(fields, "Diagnostic-Code")))
    if not found:
        return None, ""
    return max(found, key=lambda status: status[0][0])


def _reports_a_failure(message: Message) -> bool:
    """Whether a DSN says of any recipient that delivery failed or is delayed (RFC 3464
    §2.3.3), or names none: not when each was delivered, relayed or expanded."""
    actions = [_header(fields, "Action").lower() for fields in _recipient_fields(message)]
    return not actions or any(not action.startswith(DELIVERED_ACTIONS) for action in actions)


def _recipient_fields(message: Message) -> list[Message]:
    """The per-recipient field blocks of a DSN's delivery-status parts."""
    found: list[Message] = []
    for part in message.walk():
        blocks = part.get_payload()
        if part.get_content_type() == "message/delivery-status" and isinstance(blocks, list):
            # The first block holds the per-message fields; each next one, a recipient's.
            found.extend(block for block in blocks[1:] if isinstance(block, Message))
    return found


def _feedback_fields(message: Message) -> Message:
    """The machine-readable part of an ARF report (RFC 5965 §3.1); empty if it has none."""
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        if isinstance(payload, str):
            return HeaderParser(policy=policy.default).parsestr(payload)
    return Message()


def _issue_tags(message: Message, data: bytes, rcpt_tos: Sequence[str]) -> tuple[str, ...]:
    """The tags in the addresses it came to, then in its text, raw and decoded (a returned
    message may be quoted in base64 or quoted-printable)."""
    texts = [" ".join(rcpt_tos), data.decode("utf-8", "replace")]
    for part in message.walk():
        if part.get_content_maintype() in ("multipart", "message"):
            continue
        if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
            decoded = part.get_payload(decode=True)
            if isinstance(decoded, bytes):
                texts.append(decoded.decode("utf-8", "replace"))
    tags = dict.fromkeys(tag for text in texts for tag in issue_tags_in(text))
    return tuple(tags)[:MAX_TAGS]


def _longest_decoded_line(message: Message) -> int:
    longest = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        decoded = part.get_payload(decode=True)
        if isinstance(decoded, bytes) and decoded:
            longest = max(longest, max(len(line) for line in decoded.splitlines() or [b""]))
    return longest


def _is_report(message: Message, report_type: str) -> bool:
    if message.get_content_type() != "multipart/report":
        return False
    value = message.get_param("report-type")
    if value is None:
        return False
    return collapse_rfc2231_value(value).strip().lower() == report_type


def _header(message: Message, name: str) -> str:
    """A header or report field as one line of text; empty when missing or unreadable."""
    try:
        value = message.get(name)
    except (ValueError, LookupError, TypeError):
        return ""
    if value is None:
        return ""
    return " ".join(CONTROL_CHARACTERS.sub(" ", str(value)).split())


def _local_part(address: str) -> str:
    return address.rpartition("@")[0].lower()
