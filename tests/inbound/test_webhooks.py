"""The relays' webhooks over real HTTP (uvicorn on 127.0.0.1) on SQLite and PostgreSQL, with
each relay's documented example payload (tests/inbound/relays.py) signed or authenticated
with keys made in the test: Amazon SES through SNS, its signing certificate served on
127.0.0.1; Postmark; Mailgun. Accepted calls change the subscriber's bounce score or status;
unauthenticated, tampered, stale and replayed calls get 401 and change nothing."""

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from service.inbound import sns
from service.inbound.sns import (
    SigningCertificates,
    SnsRefused,
    SnsUnavailable,
    string_to_sign,
    verify_sns_message,
)
from service.models import MailEventKind, Subscriber, SubscriptionStatus
from service.settings import Settings
from service.signup.return_addresses import bounce_address, digest_message_id
from service.store import Store
from service.web.guards import WEBHOOK_MAX_BODY_BYTES
from tests.inbound.relays import (
    MAILGUN_COMPLAINED,
    MAILGUN_PERMANENT_FAILURE,
    MAILGUN_SIGNING_KEY,
    POSTMARK_BOUNCE,
    POSTMARK_PASSWORD,
    POSTMARK_SPAM_COMPLAINT,
    POSTMARK_USER,
    TOPIC_ARN,
    mailgun_call,
    mailgun_event,
    postmark_auth,
    postmark_record,
    resign,
    ses_bounce,
    ses_bounce_event,
    ses_complaint,
    sns_certificate_pem,
    sns_notification,
    sns_subscription_confirmation,
)
from tests.support.factories import NOW, TODAY, add_subscriber, make_settings
from tests.support.paper_server import PaperServer, Reply
from tests.support.services import free_port
from tests.support.web_server import serve

CERTIFICATE_PATH = "/sns/SimpleNotificationService-test.pem"
REFUSED = {"detail": "not authenticated"}


def relay_settings(amazon: PaperServer, **overrides: Any) -> Settings:
    """Every relay on; Amazon's SNS host is the local server's /sns/."""
    fields: dict[str, Any] = {
        "sns_topic_arns": [TOPIC_ARN],
        "sns_certificate_url_pattern": f"^{re.escape(amazon.url)}/sns/",
        "postmark_webhook_user": POSTMARK_USER,
        "postmark_webhook_password": POSTMARK_PASSWORD,
        "mailgun_webhook_signing_key": MAILGUN_SIGNING_KEY,
        **overrides,
    }
    return make_settings(**fields)


@dataclass
class Relays:
    url: str
    settings: Settings
    store: Store
    amazon: PaperServer

    @property
    def certificate_url(self) -> str:
        return self.amazon.url + CERTIFICATE_PATH

    def post(self, path: str, payload: object, **headers: str) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.post(path, content=body, headers=headers)

    def post_sns(self, message: dict[str, str]) -> httpx.Response:
        # As SNS posts: a JSON body declared as plain text, the type in a header of its own.
        return self.post(
            "/webhooks/ses",
            message,
            **{"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "x"},
        )

    def notification(self, ses: dict[str, Any], **options: Any) -> dict[str, str]:
        return sns_notification(ses, certificate_url=self.certificate_url, **options)

    def post_postmark(
        self, payload: object, *, password: str = POSTMARK_PASSWORD
    ) -> httpx.Response:
        return self.post("/webhooks/postmark", payload, **postmark_auth(password))


@pytest.fixture
def relays(store: Store, paper_server: PaperServer) -> Iterator[Relays]:
    paper_server.script(
        CERTIFICATE_PATH,
        Reply(body=sns_certificate_pem(), headers=(("Content-Type", "application/x-pem-file"),)),
    )
    port = free_port()
    settings = relay_settings(paper_server, public_base_url=f"http://127.0.0.1:{port}")
    # The server's clock stands still at NOW: every timestamp below is made from it.
    for _ in serve(settings, store, port, clock=lambda: NOW):
        yield Relays(f"http://127.0.0.1:{port}", settings, store, paper_server)


def assert_unchanged(store: Store, subscriber: Subscriber) -> None:
    now = store.get_subscriber(subscriber.id)
    assert (now.status, now.bounce_score) == (SubscriptionStatus.CONFIRMED, 0)
    assert store.mail_events(subscriber.id) == []


def accepted(answer: httpx.Response, *, reports: int = 1, matched: int = 1) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"detail": "accepted", "reports": reports, "matched": matched}


# The string to sign, and the two signature versions.


def test_a_notification_signs_its_fields_in_order_and_its_subject_only_when_present() -> None:
    # The example of "HTTP/HTTPS notification JSON format" (docs.aws.amazon.com/sns).
    notification = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Subject": "My First Message",
        "Message": "Hello world!",
        "Timestamp": "2012-05-02T00:54:06.655Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3e.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
    }
    assert string_to_sign(notification) == (
        b"Message\nHello world!\n"
        b"MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nMy First Message\n"
        b"Timestamp\n2012-05-02T00:54:06.655Z\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nNotification\n"
    )
    del notification["Subject"]
    assert b"Subject" not in string_to_sign(notification)
    assert string_to_sign(notification).startswith(b"Message\nHello world!\nMessageId\n")


def test_a_confirmation_signs_its_subscribe_url_and_token() -> None:
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Message": "You have chosen to subscribe to the topic.\nTo confirm, visit the URL.",
        "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
        "Timestamp": "2012-04-26T20:45:04.751Z",
        "Subject": "not signed in a confirmation",
    }
    assert string_to_sign(confirmation) == (
        b"Message\nYou have chosen to subscribe to the topic.\nTo confirm, visit the URL.\n"
        b"MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n"
        b"SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\n"
        b"Timestamp\n2012-04-26T20:45:04.751Z\n"
        b"Token\n2336412f37\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nSubscriptionConfirmation\n"
    )
    for broken in ({**confirmation, "Type": "Gossip"}, {**confirmation, "Token": None}):
        with pytest.raises(SnsRefused):
            string_to_sign(broken)


def test_signature_versions_one_and_two_each_verify_with_their_own_hash(
    paper_server: PaperServer,
) -> None:
    paper_server.script(CERTIFICATE_PATH, Reply(body=sns_certificate_pem()))
    settings = relay_settings(paper_server)
    certificate_url = paper_server.url + CERTIFICATE_PATH
    certificates = SigningCertificates()

    def verify(message: dict[str, str]) -> str:
        body = json.dumps(message).encode()
        verified = verify_sns_message(body, settings=settings, now=NOW, certificates=certificates)
        return asyncio.run(verified).message_id

    for version in ("1", "2"):
        signed = sns_notification({}, certificate_url=certificate_url, version=version)
        assert verify(signed) == signed["MessageId"]
        other = "2" if version == "1" else "1"
        with pytest.raises(SnsRefused, match="signature does not match"):
            verify({**signed, "SignatureVersion": other})
    with pytest.raises(SnsRefused, match="signature version"):
        verify({**signed, "SignatureVersion": "3"})
    # One fetch of the certificate served every verification.
    assert paper_server.count(CERTIFICATE_PATH) == 1


def test_a_certificate_is_read_only_if_small_quick_and_where_it_was_said_to_be(
    paper_server: PaperServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sns, "FETCH_TIMEOUT_SECONDS", 0.5)
    paper_server.script("/sns/large.pem", Reply(body=b"-" * (sns.MAX_CERTIFICATE_BYTES + 1)))
    paper_server.script("/sns/slow.pem", Reply(body=sns_certificate_pem(), delay=3))
    paper_server.script(
        "/sns/moved.pem", Reply(status=302, headers=(("Location", "/elsewhere/cert.pem"),))
    )
    paper_server.script("/sns/garbage.pem", Reply(body=b"-----BEGIN CERTIFICATE-----\nno"))
    certificates = SigningCertificates()

    def fetch(path: str) -> None:
        asyncio.run(certificates.public_key(paper_server.url + path))

    for path, refusal in [
        ("/sns/large.pem", "too large"),
        ("/sns/moved.pem", "HTTP 302"),
        ("/sns/garbage.pem", "not a PEM certificate"),
    ]:
        with pytest.raises(SnsRefused, match=refusal):
            fetch(path)
    started = time.monotonic()
    with pytest.raises(SnsUnavailable):
        fetch("/sns/slow.pem")
    assert time.monotonic() - started < 2
    assert paper_server.count("/elsewhere/cert.pem") == 0


# Amazon SES through SNS.


def test_an_ses_bounce_scores_the_subscriber_its_envelope_sender_names(relays: Relays) -> None:
    jane = add_subscriber(relays.store, "jane@example.org")
    verp = bounce_address(jane, TODAY, settings=relays.settings)
    # The bounced address is the one SES reports; the signed VERP sender names the issue too.
    answer = relays.post_sns(relays.notification(ses_bounce("jane@example.org", source=verp)))
    accepted(answer)
    assert relays.store.get_subscriber(jane.id).bounce_score == 1
    (event,) = relays.store.mail_events(jane.id)
    assert (event.kind, event.via, event.status_code, event.issue_date) == (
        MailEventKind.HARD_BOUNCE,
        "ses",
        "5.1.1",
        TODAY,
    )
    assert event.detail == "smtp; 550 5.1.1 <jane@example.com>... User"  # as documented
    # A second notification (signature version 2) uses the certificate fetched before.
    message_id = digest_message_id(jane, TODAY - timedelta(days=1), settings=relays.settings)
    later = ses_bounce("bounced-elsewhere@example.net", message_id=message_id)
    accepted(relays.post_sns(relays.notification(later, message_id="second", version="2")))
    (newest, _) = relays.store.mail_events(jane.id)
    assert newest.issue_date == TODAY - timedelta(days=1)
    assert relays.amazon.count(CERTIFICATE_PATH) == 1


def test_an_ses_transient_bounce_event_is_a_soft_bounce(relays: Relays) -> None:
    recipient = add_subscriber(relays.store, "recipient@example.com")
    accepted(relays.post_sns(relays.notification(ses_bounce_event("recipient@example.com"))))
    assert relays.store.get_subscriber(recipient.id).bounce_score == 0.5
    (event,) = relays.store.mail_events(recipient.id)
    assert (event.kind, event.status_code) == (MailEventKind.SOFT_BOUNCE, "4.2.2")


def test_an_ses_complaint_suppresses_and_a_not_spam_report_does_not(relays: Relays) -> None:
    richard = add_subscriber(relays.store, "richard@example.com")
    not_spam = ses_complaint("richard@example.com", feedback_type="not-spam")
    answer = relays.post_sns(relays.notification(not_spam, message_id="not-spam"))
    assert answer.json() == {"detail": "nothing to act on"}
    assert_unchanged(relays.store, richard)

    accepted(relays.post_sns(relays.notification(ses_complaint("richard@example.com"))))
    assert relays.store.get_subscriber(richard.id).status is SubscriptionStatus.SUPPRESSED
    (event,) = relays.store.mail_events(richard.id)
    assert (event.kind, event.via, event.detail) == (MailEventKind.COMPLAINT, "ses", "abuse")


def test_an_ses_bounce_naming_nobody_is_accepted_and_changes_nothing(relays: Relays) -> None:
    jane = add_subscriber(relays.store, "jane@example.org")
    accepted(relays.post_sns(relays.notification(ses_bounce("nobody@example.org"))), matched=0)
    assert_unchanged(relays.store, jane)


def test_sns_calls_not_signed_by_amazon_for_our_topic_now_are_refused(relays: Relays) -> None:
    jane = add_subscriber(relays.store, "jane@example.org")
    genuine = relays.notification(ses_bounce("jane@example.org"))
    unsigned = {k: v for k, v in genuine.items() if k not in ("Signature", "SignatureVersion")}
    another = resign(genuine, Subject="another message")
    refused = {
        "tampered": {**genuine, "Message": genuine["Message"].replace("Permanent", "Transient")},
        "a field added after signing": {**genuine, "Subject": "added after signing"},
        "the signature of another message": {**genuine, "Signature": another["Signature"]},
        "unsigned": unsigned,
        "another topic": relays.notification(
            ses_bounce("jane@example.org"), topic_arn=TOPIC_ARN + "-other"
        ),
        "stale": relays.notification(
            ses_bounce("jane@example.org"), sent_at=NOW - timedelta(minutes=16)
        ),
        "from the future": relays.notification(
            ses_bounce("jane@example.org"), sent_at=NOW + timedelta(minutes=16)
        ),
        "not JSON": b"MessageId=1&Type=Notification",
        "nested too deep": b"[" * 50_000,
    }
    for name, message in refused.items():
        answer = relays.post("/webhooks/ses", message)
        assert (answer.status_code, answer.json()) == (401, REFUSED), name
    assert_unchanged(relays.store, jane)

    accepted(relays.post_sns(genuine))
    replayed = relays.post_sns(genuine)
    assert (replayed.status_code, replayed.json()) == (401, REFUSED)
    assert relays.store.get_subscriber(jane.id).bounce_score == 1
    assert len(relays.store.mail_events(jane.id)) == 1


def test_a_certificate_is_fetched_only_from_amazons_host(relays: Relays) -> None:
    jane = add_subscriber(relays.store, "jane@example.org")
    elsewhere = relays.amazon.url + "/elsewhere/cert.pem"
    relays.amazon.script("/elsewhere/cert.pem", Reply(body=sns_certificate_pem()))
    message = sns_notification(ses_bounce("jane@example.org"), certificate_url=elsewhere)
    assert relays.post_sns(message).status_code == 401
    assert relays.amazon.count("/elsewhere/cert.pem") == 0
    assert_unchanged(relays.store, jane)


def test_a_certificate_amazon_cannot_serve_now_is_a_503_and_a_missing_one_a_401(
    relays: Relays,
) -> None:
    jane = add_subscriber(relays.store, "jane@example.org")
    relays.amazon.script("/sns/busy.pem", Reply(status=503))
    busy = sns_notification(
        ses_bounce("jane@example.org"), certificate_url=relays.amazon.url + "/sns/busy.pem"
    )
    assert relays.post_sns(busy).status_code == 503
    missing = sns_notification(
        ses_bounce("jane@example.org"), certificate_url=relays.amazon.url + "/sns/missing.pem"
    )
    assert relays.post_sns(missing).status_code == 401
    assert_unchanged(relays.store, jane)
    # Neither took a receipt: the same message is accepted once its certificate is there.
    relays.amazon.script("/sns/busy.pem", Reply(body=sns_certificate_pem()))
    accepted(relays.post_sns(busy))


def test_a_subscription_confirmation_is_confirmed_by_getting_its_subscribe_url(
    relays: Relays,
) -> None:
    relays.amazon.script("/sns/", Reply(body=b"<ConfirmSubscriptionResponse/>"))
    subscribe_url = f"{relays.amazon.url}/sns/?Action=ConfirmSubscription&Token=2336412f37fb"
    confirmation = sns_subscription_confirmation(
        certificate_url=relays.certificate_url, subscribe_url=subscribe_url, token="2336412f37fb"
    )
    answer = relays.post_sns(confirmation)
    assert (answer.status_code, answer.json()) == (200, {"detail": "subscription confirmed"})
    assert ("/sns/", {"Action": "ConfirmSubscription", "Token": "2336412f37fb"}) in (
        relays.amazon.requests
    )
    assert relays.post_sns(confirmation).status_code == 401  # replayed

    # A signed confirmation cannot send the server anywhere but Amazon's host.
    relays.amazon.script("/elsewhere", Reply())
    foreign = sns_subscription_confirmation(
        certificate_url=relays.certificate_url,
        subscribe_url=f"{relays.amazon.url}/elsewhere?Token=1",
        token="1",
        message_id="another-confirmation",
    )
    assert relays.post_sns(foreign).status_code == 401
    assert relays.amazon.count("/elsewhere") == 0


def test_a_signed_notification_whose_message_is_not_ses_json_is_a_400(relays: Relays) -> None:
    not_json = "Successfully validated SNS topic for Amazon SES event destination"
    for number, message in enumerate((not_json, '{"notificationType": "Bounce", "bounce": 5}')):
        signed = resign(relays.notification({}), Message=message, MessageId=str(number))
        answer = relays.post_sns(signed)
        assert (answer.status_code, answer.json()) == (400, {"detail": "payload not understood"})


# Postmark.


def test_postmark_bounce_and_spam_complaint_webhooks_change_the_subscriber(relays: Relays) -> None:
    john = add_subscriber(relays.store, "john@example.com")
    accepted(relays.post_postmark(postmark_record(POSTMARK_BOUNCE, "john@example.com")))
    assert relays.store.get_subscriber(john.id).bounce_score == 1
    (bounce,) = relays.store.mail_events(john.id)
    assert (bounce.kind, bounce.via, bounce.detail) == (
        MailEventKind.HARD_BOUNCE,
        "postmark",
        "Test bounce details",
    )
    accepted(relays.post_postmark(postmark_record(POSTMARK_SPAM_COMPLAINT, "john@example.com")))
    assert relays.store.get_subscriber(john.id).status is SubscriptionStatus.SUPPRESSED


def test_postmark_reads_bounce_types_and_issue_tags_in_the_returned_message(
    relays: Relays,
) -> None:
    mary = add_subscriber(relays.store, "mary@example.com")
    auto_reply = postmark_record(POSTMARK_BOUNCE, "mary@example.com", Type="AutoResponder", ID=1)
    answer = relays.post_postmark(auto_reply)
    assert (answer.status_code, answer.json()) == (200, {"detail": "nothing to act on"})
    delivery = {"RecordType": "Delivery", "Recipient": "mary@example.com", "MessageID": "x"}
    assert relays.post_postmark(delivery).json() == {"detail": "nothing to act on"}
    assert_unchanged(relays.store, mary)

    message_id = digest_message_id(mary, TODAY, settings=relays.settings)
    dump = f"Return-Path: <x@pm-bounces.example>\nMessage-ID: {message_id}\n\nHello"
    soft = postmark_record(POSTMARK_BOUNCE, "old-address@example.com", Type="SoftBounce", ID=2)
    accepted(relays.post_postmark(soft | {"Content": dump}))
    (event,) = relays.store.mail_events(mary.id)
    assert (event.kind, event.issue_date) == (MailEventKind.SOFT_BOUNCE, TODAY)


def test_postmark_calls_without_its_credentials_or_replayed_are_refused(relays: Relays) -> None:
    john = add_subscriber(relays.store, "john@example.com")
    bounce = postmark_record(POSTMARK_BOUNCE, "john@example.com")
    without = relays.post("/webhooks/postmark", bounce)
    wrong = relays.post_postmark(bounce, password=POSTMARK_PASSWORD + "x")
    bearer = relays.post("/webhooks/postmark", bounce, Authorization=f"Bearer {POSTMARK_PASSWORD}")
    garbled = relays.post("/webhooks/postmark", bounce, Authorization="Basic !!not base64!!")
    for answer in (without, wrong, bearer, garbled):
        assert (answer.status_code, answer.json()) == (401, REFUSED)
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert_unchanged(relays.store, john)

    accepted(relays.post_postmark(bounce))
    replayed = relays.post_postmark(bounce)
    assert (replayed.status_code, replayed.json()) == (401, REFUSED)
    # The same ID of another RecordType is another call.
    accepted(
        relays.post_postmark(
            postmark_record(POSTMARK_SPAM_COMPLAINT, "john@example.com", ID=POSTMARK_BOUNCE["ID"])
        )
    )
    assert [event.kind for event in relays.store.mail_events(john.id)] == [
        MailEventKind.COMPLAINT,
        MailEventKind.HARD_BOUNCE,
    ]


def test_postmark_payloads_that_are_not_its_json_are_a_400_once_authenticated(
    relays: Relays,
) -> None:
    john = add_subscriber(relays.store, "john@example.com")
    for payload in (
        b"not json",
        [POSTMARK_BOUNCE],
        postmark_record(POSTMARK_BOUNCE, "john@example.com", ID=None),
        postmark_record(POSTMARK_BOUNCE, "john@example.com", ID="9" * 300),
        postmark_record(POSTMARK_BOUNCE, "", ID=3),
        postmark_record(POSTMARK_BOUNCE, "john@example.com", Details=["a list"]),
    ):
        answer = relays.post_postmark(payload)
        assert (answer.status_code, answer.json()) == (400, {"detail": "payload not understood"})
    assert relays.post("/webhooks/postmark", b"not json").status_code == 401
    assert_unchanged(relays.store, john)


# Mailgun.


def test_mailgun_failures_and_complaints_change_the_subscriber(relays: Relays) -> None:
    alice = add_subscriber(relays.store, "alice@example.com")
    temporary = mailgun_event(MAILGUN_PERMANENT_FAILURE, "alice@example.com", severity="temporary")
    accepted(relays.post("/webhooks/mailgun", mailgun_call(temporary, token="t1" * 25)))
    assert relays.store.get_subscriber(alice.id).bounce_score == 0.5

    permanent = mailgun_event(MAILGUN_PERMANENT_FAILURE, "alice@example.com")
    accepted(relays.post("/webhooks/mailgun", mailgun_call(permanent, token="t2" * 25)))
    # One bounce day counts once, at its worst.
    assert relays.store.get_subscriber(alice.id).bounce_score == 1
    newest = relays.store.mail_events(alice.id)[0]
    assert (newest.kind, newest.via, newest.detail) == (
        MailEventKind.HARD_BOUNCE,
        "mailgun",
        "Not delivering to previously bounced address",
    )

    complained = mailgun_event(MAILGUN_COMPLAINED, "alice@example.com")
    accepted(relays.post("/webhooks/mailgun", mailgun_call(complained, token="t3" * 25)))
    assert relays.store.get_subscriber(alice.id).status is SubscriptionStatus.SUPPRESSED


def test_mailgun_reads_issue_tags_from_the_message_id_and_envelope_sender(relays: Relays) -> None:
    alice = add_subscriber(relays.store, "alice@example.com")
    message_id = digest_message_id(alice, TODAY, settings=relays.settings).strip("<>")
    permanent = mailgun_event(MAILGUN_PERMANENT_FAILURE, "forwarded@example.net")
    permanent["message"]["headers"]["message-id"] = message_id
    accepted(relays.post("/webhooks/mailgun", mailgun_call(permanent)))
    (event,) = relays.store.mail_events(alice.id)
    assert (event.kind, event.issue_date) == (MailEventKind.HARD_BOUNCE, TODAY)

    delivered = {"event": "delivered", "recipient": "alice@example.com"}
    answer = relays.post("/webhooks/mailgun", mailgun_call(delivered, token="d" * 50))
    assert answer.json() == {"detail": "nothing to act on"}


def test_mailgun_calls_not_signed_with_the_key_stale_or_replayed_are_refused(
    relays: Relays, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alice = add_subscriber(relays.store, "alice@example.com")
    failure = mailgun_event(MAILGUN_PERMANENT_FAILURE, "alice@example.com")
    genuine = mailgun_call(failure)
    token = genuine["signature"]["token"]
    refused = {
        "another key": mailgun_call(failure, key="not-the-key"),
        "tampered token": genuine | {"signature": genuine["signature"] | {"token": "x" * 50}},
        "unsigned": {"event-data": failure},
        "signature not an object": genuine | {"signature": "abc"},
        "stale": mailgun_call(failure, sent_at=NOW - timedelta(minutes=16)),
        "from the future": mailgun_call(failure, sent_at=NOW + timedelta(minutes=16)),
        "not JSON": b"signature=abc",
    }
    for name, payload in refused.items():
        answer = relays.post("/webhooks/mailgun", payload)
        assert (answer.status_code, answer.json()) == (401, REFUSED), name
    assert_unchanged(relays.store, alice)

    accepted(relays.post("/webhooks/mailgun", genuine))
    replayed = relays.post("/webhooks/mailgun", genuine)
    assert (replayed.status_code, replayed.json()) == (401, REFUSED)
    assert len(relays.store.mail_events(alice.id)) == 1
    # The log says what was refused and why, never whom or with which token.
    assert "webhook mailgun refused: replayed" in caplog.text
    assert "alice@example.com" not in caplog.text and token not in caplog.text


def test_mailgun_event_data_that_is_not_its_json_is_a_400_once_signed(relays: Relays) -> None:
    for event_data in (None, "failed", {"event": "failed", "severity": "permanent"}):
        answer = relays.post("/webhooks/mailgun", mailgun_call(event_data, token=f"{event_data}"))
        assert (answer.status_code, answer.json()) == (400, {"detail": "payload not understood"})


# All three.


def test_a_relay_that_is_not_configured_is_not_there(store: Store) -> None:
    port = free_port()
    settings = make_settings(public_base_url=f"http://127.0.0.1:{port}")
    for _ in serve(settings, store, port, clock=lambda: NOW):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for relay in ("ses", "postmark", "mailgun"):
                answer = client.post(f"/webhooks/{relay}", content=b"{}", headers=postmark_auth())
                assert (answer.status_code, answer.json()) == (404, {"detail": "not configured"})


@pytest.mark.parametrize("relay", ["ses", "postmark", "mailgun"])
def test_no_body_gets_a_500_and_a_large_body_is_not_read(relays: Relays, relay: str) -> None:
    headers = postmark_auth()
    for body in (b"", b"null", b"[]", b"{}", b"\xff\xfe", b"[" * 50_000, b'{"a":' * 10_000):
        answer = relays.post(f"/webhooks/{relay}", body, **headers)
        assert answer.status_code in (400, 401), (body[:10], answer.text)
    # An SNS message may be 256 KB: the webhooks take more than the pages' cap, up to theirs.
    assert relays.settings.max_request_body_bytes < 300_000
    large = b" " * 300_000
    assert relays.post(f"/webhooks/{relay}", large, **headers).status_code in (400, 401)
    too_large = b" " * (WEBHOOK_MAX_BODY_BYTES + 1)
    assert relays.post(f"/webhooks/{relay}", too_large, **headers).status_code == 413
