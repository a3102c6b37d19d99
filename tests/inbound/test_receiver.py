"""The inbound receiver end to end: digests go out to the SMTP sink, what comes back for them
(DSNs, complaints, mailed unsubscribes) is built from the received copies and mailed to the
receiver with smtplib, on SQLite and PostgreSQL."""

import asyncio
import re
import smtplib
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.delivery.pipeline import run_day
from service.delivery.planning import plan_day
from service.models import DeliveryStatus, MailEventKind, Subscriber, SubscriptionStatus
from service.settings import Settings
from service.store import Store
from tests.inbound.conftest import Receiver, start
from tests.support.factories import (
    BACKGROUND_PAPERS,
    NOW,
    TODAY,
    add_subscriber,
    make_paper,
    make_settings,
)
from tests.support.returned_mail import (
    delivery_status_notification,
    feedback_report,
    plain_message,
    qmail_bounce,
)
from tests.support.smtp_sink import ReceivedMessage, SmtpSink

ADA, GRACE = "ada@example.org", "grace@example.org"


@pytest.fixture
def smtp_settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return settings.model_copy(update={"mail_url": smtp_sink.url})


@pytest.fixture
def ada(store: Store) -> Subscriber:
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    return add_subscriber(store, ADA)


def send_digests(
    store: Store, settings: Settings, sink: SmtpSink, day: date = TODAY
) -> dict[str, ReceivedMessage]:
    """Run `day` with one new paper on diffusion models; what each recipient received."""
    at = datetime.combine(day, NOW.timetz())
    paper = make_paper(
        id=f"2511.{day.toordinal() % 100000:05d}",
        title=f"Diffusion models that sample in {day.day} steps",
    )
    store.upsert_papers([paper], now=at - timedelta(hours=3))
    summary = asyncio.run(run_day(store, issue_date=day, settings=settings, now=lambda: at))
    assert set(summary.outcomes) == {DeliveryStatus.SENT}, summary.outcomes
    issue = f"<digest-{day.isoformat()}-"
    return {m.rcpt_tos[0]: m for m in sink.messages if m.message["Message-ID"].startswith(issue)}


def dsn_for(received: ReceivedMessage, **fields: str) -> bytes:
    return delivery_status_notification(
        received.message, to=received.mail_from, recipient=received.rcpt_tos[0], **fields
    )


def mailto_address(received: ReceivedMessage) -> str:
    """The address of the `mailto:` URI in the digest's List-Unsubscribe header."""
    header = str(received.message["List-Unsubscribe"])
    match = re.search(r"<mailto:([^?>]+)(?:\?[^>]*)?>", header)
    assert match is not None, header
    return match.group(1)


def test_bounces_on_five_days_suppress_the_subscriber_who_is_then_not_planned(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, receiver: Receiver, ada: Subscriber
) -> None:
    add_subscriber(store, GRACE)
    for day_number in range(5):
        day = TODAY + timedelta(days=day_number)
        received = send_digests(store, smtp_settings, smtp_sink, day)[ADA]
        assert received.mail_from.startswith(f"bounces+{day.isoformat()}-{ada.id}-")
        receiver.clock.now = NOW + timedelta(days=day_number, hours=2)

        receiver.send(dsn_for(received), [received.mail_from])

        after = store.get_subscriber(ada.id)
        assert after.bounce_score == day_number + 1
        expected = (
            SubscriptionStatus.SUPPRESSED if day_number == 4 else SubscriptionStatus.CONFIRMED
        )
        assert after.status is expected

    suppressed = store.get_subscriber(ada.id)
    assert (suppressed.consent[-1].event, suppressed.consent[-1].reason) == (
        "suppressed",
        "bouncing",
    )
    events = store.mail_events(ada.id)
    assert [e.kind for e in events] == [MailEventKind.HARD_BOUNCE] * 5
    assert {(e.via, e.status_code) for e in events} == {("dsn", "5.1.1")}
    assert events[0].issue_date == TODAY + timedelta(days=4)
    assert "Recipient address rejected" in events[0].detail
    next_day = TODAY + timedelta(days=5)
    planned = plan_day(store, next_day, now=datetime.combine(next_day, NOW.timetz()))
    assert [subscriber_id for subscriber_id, _ in planned] == [store.find_subscriber(GRACE).id]
    assert store.inbound_messages() == []


def test_a_delayed_delivery_is_a_soft_bounce_adding_half(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, receiver: Receiver, ada: Subscriber
) -> None:
    received = send_digests(store, smtp_settings, smtp_sink)[ADA]

    receiver.send(
        dsn_for(received, action="delayed", status="4.2.2", diagnostic="smtp; 452 4.2.2 full"),
        [received.mail_from],
    )

    assert store.get_subscriber(ada.id).bounce_score == 0.5
    (event,) = store.mail_events(ada.id)
    assert (event.kind, event.status_code) == (MailEventKind.SOFT_BOUNCE, "4.2.2")


def test_a_complaint_about_a_digest_suppresses_at_once(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, receiver: Receiver, ada: Subscriber
) -> None:
    received = send_digests(store, smtp_settings, smtp_sink)[ADA]

    receiver.send(
        feedback_report(received.message, to="abuse@paperwire.test"),
        ["abuse@paperwire.test"],
        mail_from="fbl-bounces@isp.example",
    )

    after = store.get_subscriber(ada.id)
    assert after.status is SubscriptionStatus.SUPPRESSED
    assert (after.consent[-1].event, after.consent[-1].reason) == ("suppressed", "complaint")
    (event,) = store.mail_events(ada.id)
    assert (event.kind, event.via, event.issue_date) == (MailEventKind.COMPLAINT, "arf", TODAY)


def test_a_mail_to_the_list_unsubscribe_address_unsubscribes(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, receiver: Receiver, ada: Subscriber
) -> None:
    received = send_digests(store, smtp_settings, smtp_sink)[ADA]
    address = mailto_address(received)
    assert address.startswith("unsubscribe+") and address.endswith("@paperwire.test")

    receiver.send(plain_message(address, "unsubscribe", "", sender=ADA), [address], mail_from=ADA)

    assert store.get_subscriber(ada.id).status is SubscriptionStatus.UNSUBSCRIBED
    (event,) = store.mail_events(ada.id)
    assert (event.kind, event.via) == (MailEventKind.UNSUBSCRIBE, "mailto")
    assert store.inbound_messages() == []


@pytest.mark.parametrize("envelope", ["forged", "untagged"])
def test_a_bounce_naming_no_genuine_issue_changes_nothing_and_is_kept(
    store: Store,
    smtp_settings: Settings,
    smtp_sink: SmtpSink,
    receiver: Receiver,
    ada: Subscriber,
    envelope: str,
) -> None:
    received = send_digests(store, smtp_settings, smtp_sink)[ADA]
    genuine = received.mail_from
    # The last character of the MAC changed, or the address without a tag.
    to = _altered(genuine) if envelope == "forged" else "bounces@paperwire.test"
    returned = _copy(received.message)
    returned.replace_header("Message-ID", "<unknown-message@elsewhere.example>")
    returned.replace_header("From", "Paperwire <digest@paperwire.test>")
    before = store.get_subscriber(ada.id)

    receiver.send(delivery_status_notification(returned, to=to, recipient=ADA), [to], mail_from="")

    assert store.get_subscriber(ada.id) == before
    assert store.mail_events(ada.id) == []
    (kept,) = store.inbound_messages()
    assert kept.rcpt_to == to
    assert kept.note == "a hard bounce (5.1.1): names no subscriber"


def test_a_forged_envelope_tag_falls_back_to_the_returned_message_id(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, receiver: Receiver, ada: Subscriber
) -> None:
    received = send_digests(store, smtp_settings, smtp_sink)[ADA]
    forged = _altered(received.mail_from)

    receiver.send(
        delivery_status_notification(received.message, to=forged, recipient=ADA), [forged]
    )

    assert store.get_subscriber(ada.id).bounce_score == 1


def test_a_qmail_bounce_is_read_through_flufl_bounce(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, receiver: Receiver, ada: Subscriber
) -> None:
    received = send_digests(store, smtp_settings, smtp_sink)[ADA]

    receiver.send(
        qmail_bounce(received.message, to=received.mail_from, recipient=ADA),
        [received.mail_from],
    )

    (event,) = store.mail_events(ada.id)
    assert (event.kind, event.via, event.status_code) == (MailEventKind.HARD_BOUNCE, "dsn", None)
    assert store.get_subscriber(ada.id).bounce_score == 1


@pytest.mark.parametrize(
    "address",
    [
        "ada@paperwire.test",
        "digest@paperwire.test",
        "postmaster+x@paperwire.test",
        "bounces@elsewhere.example",
        "bouncesx@paperwire.test",
        "unsubscribe+1-aaaaaaaaaaaaaaaa@paperwire.test.example",
    ],
)
def test_mail_for_an_address_not_ours_is_refused_at_rcpt(
    store: Store, receiver: Receiver, address: str
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        receiver.send(plain_message(address, "hello", "hi"), [address])
    ((code, reply),) = refused.value.recipients.values()
    assert (code, reply) == (550, b"5.1.1 No such mailbox here")
    assert store.inbound_messages() == []


def test_our_addresses_are_taken_in_any_case(store: Store, receiver: Receiver) -> None:
    addresses = [
        "Bounces@PaperWire.Test",
        "BOUNCES+2026-11-25-1-AAAAAAAAAAAAAAAA@paperwire.test",
        "Postmaster@paperwire.test",
        "abuse@paperwire.test",
        "unsubscribe@paperwire.test",
    ]
    with receiver.connect() as client:
        client.ehlo()
        client.mail("")
        assert [client.rcpt(address)[0] for address in addresses] == [250] * len(addresses)
        assert client.rcpt("ada@paperwire.test")[0] == 550
        assert client.rcpt("unsubscribe+2@paperwire.test")[0] == 452  # a sixth recipient
        assert client.data(plain_message("x@paperwire.test", "hello", "hi"))[0] == 250
    (kept,) = store.inbound_messages()
    assert kept.rcpt_to == ", ".join(addresses)
    assert kept.note == "a delivery notice that no bounce detector could read"  # from <>


def test_a_message_over_the_size_cap_is_refused_with_552(store: Store, settings: Settings) -> None:
    capped = settings.model_copy(update={"inbound_max_bytes": 10_000})
    small = plain_message("bounces@paperwire.test", "small", "hello\n")
    big = plain_message("bounces@paperwire.test", "big", ("x" * 70 + "\n") * 200)
    for receiver in start(store, capped):
        receiver.send(small, ["bounces@paperwire.test"])
        # smtplib announces the size (SIZE=) since the receiver offers SIZE: refused at MAIL.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            receiver.send(big, ["bounces@paperwire.test"])
        assert refused.value.smtp_code == 552
        # Without SIZE=, refused once the message is in.
        with receiver.connect() as client:
            client.ehlo()
            assert client.mail("")[0] == 250
            assert client.rcpt("bounces@paperwire.test")[0] == 250
            assert client.data(big)[0] == 552
            assert client.noop()[0] == 250  # the session goes on
    assert [kept.subject for kept in store.inbound_messages()] == ["small"]


def test_a_database_error_answers_451_for_a_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unmigrated = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    settings = make_settings(database_url=str(unmigrated.url))
    try:
        for receiver in start(unmigrated, settings):
            with receiver.connect() as client:
                client.ehlo()
                client.mail("")
                client.rcpt("bounces@paperwire.test")
                code, reply = client.data(plain_message("bounces@paperwire.test", "x", "y"))
            assert (code, reply) == (451, b"4.3.0 Temporary failure, try again later")
        # One line, without the statement's parameters (the message and its addresses).
        (logged,) = [r.getMessage() for r in caplog.records if r.name.startswith("service.")]
        assert logged == "message answered 451, database error: no such table: inbound_messages"
    finally:
        unmigrated.close()


def _altered(address: str) -> str:
    local, _, domain = address.partition("@")
    last = "b" if local[-1] != "b" else "c"
    return f"{local[:-1]}{last}@{domain}"


def _copy(message: EmailMessage) -> EmailMessage:
    """Its header section but the MIME fields, and a short body."""
    copy = EmailMessage()
    for name, value in message.items():
        if not name.lower().startswith(("content-", "mime-")):
            copy[name] = value
    copy.set_content("body")
    return copy
