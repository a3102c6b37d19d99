"""Mail that comes back after a digest, built with the standard library's `email` package as
the servers that send it lay it out: RFC 3464 DSNs, RFC 5965 ARF complaints, and the plain-text
bounces of qmail, Exim and old Postfix."""

from email import policy
from email.message import EmailMessage, Message

REPORTING_MTA = "mx.example.org"


def returned_headers(original: EmailMessage) -> str:
    """The returned message's header section, as a DSN quotes it."""
    return "".join(f"{name}: {value}\n" for name, value in original.items())


def delivery_status_notification(
    original: EmailMessage,
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected",
) -> bytes:
    """A DSN (multipart/report; report-type=delivery-status) for `original`, mailed to `to`:
    a note for people, the per-recipient fields, and the returned message's headers."""
    dsn = EmailMessage()
    dsn["From"] = f"Mail Delivery System <MAILER-DAEMON@{REPORTING_MTA}>"
    dsn["To"] = to
    dsn["Subject"] = "Undelivered Mail Returned to Sender"
    dsn["Auto-Submitted"] = "auto-replied"
    dsn.set_type("multipart/report")
    dsn.set_param("report-type", "delivery-status")

    note = EmailMessage()
    note.set_content(f"This is the mail system at host {REPORTING_MTA}, reporting on {recipient}.")
    status_part = EmailMessage()
    status_part.set_type("message/delivery-status")
    status_part.set_payload(
        [
            _fields({"Reporting-MTA": f"dns; {REPORTING_MTA}", "Arrival-Date": original["Date"]}),
            _fields(
                {
                    "Final-Recipient": f"rfc822; {recipient}",
                    "Original-Recipient": f"rfc822; {recipient}",
                    "Action": action,
                    "Status": status,
                    "Remote-MTA": "dns; mailbox.example.org",
                    "Diagnostic-Code": diagnostic.format(recipient=recipient),
                }
            ),
        ]
    )
    headers = EmailMessage()
    headers.set_content(returned_headers(original), subtype="rfc822-headers")
    dsn.set_payload([note, status_part, headers])
    return dsn.as_bytes(policy=policy.SMTP)


def feedback_report(
    original: EmailMessage, *, to: str, feedback_type: str | None = "abuse"
) -> bytes:
    """An ARF report (RFC 5965) of `original`, as a mailbox provider's feedback loop sends it:
    a note, the machine-readable report, and the whole message complained of."""
    report = EmailMessage()
    report["From"] = "Feedback Loop <fbl@isp.example>"
    report["To"] = to
    report["Subject"] = "FW: complaint about a message from your network"
    report.set_type("multipart/report")
    report.set_param("report-type", "feedback-report")
    note = EmailMessage()
    note.set_content("This is an email abuse report for an email message received from you.")
    fields = {"User-Agent": "ExampleFBL/1.0", "Version": "1", "Original-Rcpt-To": original["To"]}
    if feedback_type is not None:
        fields = {"Feedback-Type": feedback_type, **fields}
    machine = EmailMessage()
    machine.set_type("message/feedback-report")
    machine.set_payload([_fields(fields)])
    returned = EmailMessage()
    returned.set_type("message/rfc822")
    returned.set_payload([original])
    report.set_payload([note, machine, returned])
    return report.as_bytes(policy=policy.SMTP)


def qmail_bounce(original: EmailMessage, *, to: str, recipient: str) -> bytes:
    """qmail's bounce (QSBMF, http://cr.yp.to/proto/qsbmf.txt): plain text, the returned
    message quoted after the break line."""
    body = (
        f"Hi. This is the qmail-send program at {REPORTING_MTA}.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n"
        "\n"
        f"<{recipient}>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n"
        "\n"
        "--- Below this line is a copy of the message.\n"
        "\n"
        f"{returned_headers(original)}\n"
        "(body omitted)\n"
    )
    return plain_message(to, "failure notice", body)


def exim_bounce(original: EmailMessage, *, to: str, recipient: str) -> bytes:
    """Exim's bounce: plain text naming the failed addresses in X-Failed-Recipients."""
    body = (
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"  {recipient}\n    mailbox is full\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        f"{returned_headers(original)}\n"
    )
    return plain_message(to, "Mail delivery failed: returning message to sender", body, {
        "X-Failed-Recipients": recipient
    })  # fmt: skip


def old_postfix_bounce(original: EmailMessage, *, to: str, recipient: str) -> bytes:
    """Postfix before it sent DSNs: multipart/mixed, the notification in a text part."""
    bounce = EmailMessage()
    bounce["From"] = f"MAILER-DAEMON@{REPORTING_MTA} (Mail Delivery System)"
    bounce["To"] = to
    bounce["Subject"] = "Undelivered Mail Returned to Sender"
    notification = EmailMessage()
    notification.set_content(
        f'\t\tThe Postfix program\n\n<{recipient}>: unknown user: "{recipient.partition("@")[0]}"\n'
    )
    notification["Content-Description"] = "Notification"
    returned = EmailMessage()
    returned.set_type("message/rfc822")
    returned.set_payload([original])
    bounce.make_mixed()
    bounce.set_payload([notification, returned])
    return bounce.as_bytes(policy=policy.SMTP)


def plain_message(
    to: str,
    subject: str,
    body: str,
    headers: dict[str, str] | None = None,
    *,
    sender: str = f"MAILER-DAEMON@{REPORTING_MTA}",
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes(policy=policy.SMTP)


def _fields(values: dict[str, str]) -> Message:
    """One block of report fields (a header section with no body)."""
    block = Message(policy=policy.default)
    for name, value in values.items():
        block[name] = value
    return block
