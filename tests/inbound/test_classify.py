"""Reading received messages into reports: DSNs, the bounce formats servers send instead (read
by flufl.bounce), ARF complaints, mailed unsubscribes, and what is only kept."""

from email import policy
from email.message import EmailMessage

import pytest

from service.inbound.classify import MAX_TAGS, classify_message
from service.models import MailEventKind
from tests.support.returned_mail import (
    delivery_status_notification,
    exim_bounce,
    feedback_report,
    old_postfix_bounce,
    plain_message,
    qmail_bounce,
)

TAG = "2026-11-25-7-abcdefghijklmnop"
OTHER_TAG = "2026-11-24-7-qrstuvwxyz234567"
VERP = f"bounces+{TAG}@paperwire.test"
ADA = "ada@example.org"


def digest(message_id_tag: str = TAG) -> EmailMessage:
    """A digest as it went out: what comes back quotes its headers."""
    message = EmailMessage()
    message["From"] = "Paperwire <digest@paperwire.test>"
    message["To"] = ADA
    message["Subject"] = "Your papers for Wed 25 Nov"
    message["Message-ID"] = f"<digest-{message_id_tag}@paperwire.test>"
    message.set_content("Consistency models for fast diffusion sampling")
    return message


@pytest.mark.parametrize("bounce", [qmail_bounce, exim_bounce, old_postfix_bounce])
def test_bounce_formats_other_than_dsns_are_read_as_hard_bounces(bounce: object) -> None:
    assert callable(bounce)
    data = bounce(digest(), to="bounces@paperwire.test", recipient=ADA)

    result = classify_message(data, rcpt_tos=["bounces@paperwire.test"], mail_from="")

    (report,) = result.reports
    assert (report.kind, report.via, report.issue_tags) == (
        MailEventKind.HARD_BOUNCE,
        "dsn",
        (TAG,),  # from the returned Message-ID: the envelope has no tag
    )
    assert report.recipients == () and not report.trusted_recipients


def test_a_dsn_gives_its_status_and_diagnostic_and_the_envelope_tag_comes_first() -> None:
    data = delivery_status_notification(digest(OTHER_TAG), to=VERP, recipient=ADA)

    (report,) = classify_message(data, rcpt_tos=[VERP], mail_from="").reports

    assert report.issue_tags == (TAG, OTHER_TAG)
    assert (report.status_code, report.detail) == (
        "5.1.1",
        f"smtp; 550 5.1.1 <{ADA}>: Recipient address rejected",
    )


@pytest.mark.parametrize(
    ("action", "status", "kind"),
    [
        ("failed", "5.2.1", MailEventKind.HARD_BOUNCE),
        ("delayed", "4.4.1", MailEventKind.SOFT_BOUNCE),
        # Given up on, but for a temporary reason: the status decides.
        ("failed", "4.4.7", MailEventKind.SOFT_BOUNCE),
        # No usable status: flufl.bounce's reading of the action decides.
        ("failed", "unknown", MailEventKind.HARD_BOUNCE),
        ("delayed", "", MailEventKind.SOFT_BOUNCE),
    ],
)
def test_a_dsn_is_hard_or_soft_by_its_status(action: str, status: str, kind: MailEventKind) -> None:
    data = delivery_status_notification(
        digest(), to=VERP, recipient=ADA, action=action, status=status
    )

    (report,) = classify_message(data, rcpt_tos=[VERP], mail_from="").reports

    assert report.kind is kind


def test_a_dsn_reporting_a_delivery_is_only_kept() -> None:
    data = delivery_status_notification(
        digest(), to=VERP, recipient=ADA, action="delivered", status="2.0.0"
    )

    result = classify_message(data, rcpt_tos=[VERP], mail_from="")

    assert result.reports == ()
    assert result.note == "a delivery status notification reporting no failure"


@pytest.mark.parametrize("feedback_type", ["abuse", "fraud", "Abuse", None])
def test_an_arf_report_of_abuse_is_a_complaint(feedback_type: str | None) -> None:
    data = feedback_report(digest(), to="abuse@paperwire.test", feedback_type=feedback_type)

    result = classify_message(data, rcpt_tos=["abuse@paperwire.test"], mail_from="fbl@isp")

    (report,) = result.reports
    assert (report.kind, report.via, report.issue_tags) == (MailEventKind.COMPLAINT, "arf", (TAG,))
    assert report.detail.endswith("from ExampleFBL/1.0")


@pytest.mark.parametrize("feedback_type", ["not-spam", "virus", "auth-failure"])
def test_other_feedback_reports_are_only_kept(feedback_type: str) -> None:
    data = feedback_report(digest(), to="abuse@paperwire.test", feedback_type=feedback_type)

    result = classify_message(data, rcpt_tos=["abuse@paperwire.test"], mail_from="fbl@isp")

    assert result.reports == ()
    assert result.note == f"a feedback report of type {feedback_type!r}"


def test_a_mail_to_an_unsubscribe_address_unsubscribes_whatever_it_says() -> None:
    address = "Unsubscribe+7-ABCDEFGHIJKLMNOP@paperwire.test"
    data = feedback_report(digest(), to=address)  # even a complaint

    result = classify_message(data, rcpt_tos=[address, address], mail_from=ADA)

    (report,) = result.reports
    assert (report.kind, report.via, report.unsubscribe_address) == (
        MailEventKind.UNSUBSCRIBE,
        "mailto",
        address,
    )


@pytest.mark.parametrize(
    ("data", "mail_from", "note"),
    [
        (
            plain_message(VERP, "Away", "Back on Monday.", {"Auto-Submitted": "auto-replied"}),
            ADA,
            "an automatic reply",
        ),
        (
            plain_message(VERP, "Re: your papers", "Thanks!"),
            ADA,
            "not a bounce, a complaint or an unsubscribe",
        ),
        (
            plain_message(VERP, "Warning", "Something happened."),
            "<>",
            "a delivery notice that no bounce detector could read",
        ),
        (b"\x00\xff\xfe not mail at all", "x@y", "not readable as mail (IndexError)"),
    ],
)  # fmt: skip
def test_what_is_not_a_report_is_kept_with_a_note(data: bytes, mail_from: str, note: str) -> None:
    result = classify_message(data, rcpt_tos=[VERP], mail_from=mail_from)

    assert (result.reports, result.note) == ((), note)


def test_a_returned_message_quoted_in_base64_is_searched_for_tags() -> None:
    quoted = exim_bounce(digest(), to="bounces@paperwire.test", recipient=ADA)
    message = EmailMessage()
    message["From"] = "MAILER-DAEMON@mx.example.org"
    message["Subject"] = "Mail delivery failed"
    message["X-Failed-Recipients"] = ADA
    body = quoted.split(b"\r\n\r\n", 1)[1]
    message.set_content(body, maintype="text", subtype="plain", cte="base64")
    data = message.as_bytes(policy=policy.SMTP)
    assert TAG.encode() not in data

    (report,) = classify_message(data, rcpt_tos=["bounces@paperwire.test"], mail_from="").reports

    assert report.issue_tags == (TAG,)


def test_a_message_quoting_many_tags_yields_a_few() -> None:
    tags = [f"2026-11-25-{n}-abcdefghijklmnop" for n in range(1, 50)]
    quoted = "\n".join(f"Message-ID: <digest-{tag}@paperwire.test>" for tag in tags)
    data = plain_message(
        "bounces@paperwire.test", "failure", "x", {"X-Failed-Recipients": ADA}
    ).replace(b"\r\n\r\n", f"\r\n\r\n{quoted}\r\n".replace("\n", "\r\n").encode(), 1)

    (report,) = classify_message(data, rcpt_tos=["bounces@paperwire.test"], mail_from="").reports

    assert report.issue_tags == tuple(tags[:MAX_TAGS])


def test_a_line_longer_than_mail_allows_is_not_scanned_for_a_bounce() -> None:
    # Postfix's pattern would take hours over a line of a million "<" (its time is quadratic
    # in the line's length); base64 hides the line from the SMTP line limit.
    body = b"\t\tThe Postfix program\n\n" + b"<" * 1_000_000 + b"\n"
    message = EmailMessage()
    message["From"] = "MAILER-DAEMON@mx.example.org"
    message.set_content(body, maintype="text", subtype="plain", cte="base64")
    message["Content-Description"] = "notification"
    message.make_mixed()

    result = classify_message(message.as_bytes(policy=policy.SMTP), rcpt_tos=[VERP], mail_from="")

    assert (result.reports, result.note) == (
        (),
        "not scanned for a bounce: a line of 1000000 characters",
    )
