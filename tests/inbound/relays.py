"""The relays' side of the webhook tests: each relay's documented example payload, with the
recipient and ids a test chooses, signed or authenticated as that relay would, with keys made
here.

For Amazon SNS, a self-signed certificate of an RSA key made here stands in for Amazon's; the
tests serve it on 127.0.0.1 (the `paper_server` fixture) and allow that URL by the
`sns_certificate_url_pattern` setting. The string to sign is built here as AWS's page
describes it, apart from the code under test, so that the two are checked against each other.
"""

import base64
import copy
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.factories import NOW

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:paperwire-feedback"
MAILGUN_SIGNING_KEY = "mailgun-test-signing-key"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "postmark-test-password"


@cache
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def sns_certificate_pem() -> bytes:
    """A self-signed certificate of `sns_key()`, as Amazon's would be served."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(sns_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(sns_key(), hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def sns_string_to_sign(message: dict[str, str]) -> bytes:
    """As "Verifying the signatures of Amazon SNS messages" has it: the name and the value of
    each field, each followed by a newline, in byte order of the names; a Notification signs
    Message, MessageId, Subject (if present), Timestamp, TopicArn and Type, a confirmation
    also SubscribeURL and Token, but no Subject."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{name}\n{message[name]}\n" for name in names if name in message).encode()


def sign_sns(message: dict[str, str], *, version: str = "1") -> dict[str, str]:
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = sns_key().sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def resign(message: dict[str, str], **changes: str) -> dict[str, str]:
    """`message` changed by `changes`, and signed again (by the same key, with its version)."""
    unsigned = {k: v for k, v in message.items() if k not in ("Signature", "SignatureVersion")}
    return sign_sns({**unsigned, **changes}, version=message.get("SignatureVersion", "1"))


def sns_notification(
    ses_notification: dict[str, Any],
    *,
    certificate_url: str,
    message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    sent_at: datetime = NOW - timedelta(minutes=1),
    topic_arn: str = TOPIC_ARN,
    version: str = "1",
) -> dict[str, str]:
    """An SNS notification carrying an SES notification, signed. The fields are those of the
    example in "HTTP/HTTPS notification JSON format" (docs.aws.amazon.com/sns)."""
    return sign_sns(
        {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic_arn,
            "Message": json.dumps(ses_notification),
            "Timestamp": sns_time(sent_at),
            "SigningCertURL": certificate_url,
            "UnsubscribeURL": certificate_url.rpartition("/")[0] + "/?Action=Unsubscribe",
        },
        version=version,
    )


def sns_subscription_confirmation(
    *,
    certificate_url: str,
    subscribe_url: str,
    token: str,
    message_id: str = "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    sent_at: datetime = NOW,
) -> dict[str, str]:
    """After "HTTP/HTTPS subscription confirmation JSON format" (docs.aws.amazon.com/sns)."""
    return sign_sns(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": message_id,
            "Token": token,
            "TopicArn": TOPIC_ARN,
            "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.\n"
            "To confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url,
            "Timestamp": sns_time(sent_at),
            "SigningCertURL": certificate_url,
        }
    )


def sns_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# "Amazon SNS notification examples for Amazon SES" (docs.aws.amazon.com/ses/latest/dg/
# notification-examples.html), "Bounce notification with a DSN".
SES_BOUNCE_WITH_DSN: dict[str, Any] = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "reportingMTA": "dns; email.example.com",
        "bouncedRecipients": [
            {
                "emailAddress": "jane@example.com",
                "status": "5.1.1",
                "action": "failed",
                "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User",
            }
        ],
        "bounceSubType": "General",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
        "remoteMtaIp": "127.0.2.0",
    },
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "source": "john@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "callerIdentity": "IAM_user_or_role_name",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": '"John Doe" <john@example.com>'},
            {
                "name": "To",
                "value": '"Jane Doe" <jane@example.com>, "Mary Doe" <mary@example.com>, '
                '"Richard Doe" <richard@example.com>',
            },
            {"name": "Message-ID", "value": "custom-message-ID"},
            {"name": "Subject", "value": "Hello"},
            {"name": "Content-Type", "value": 'text/plain; charset="UTF-8"'},
            {"name": "Content-Transfer-Encoding", "value": "base64"},
            {"name": "Date", "value": "Wed, 27 Jan 2016 14:05:45 +0000"},
        ],
        "commonHeaders": {
            "from": ["John Doe <john@example.com>"],
            "date": "Wed, 27 Jan 2016 14:05:45 +0000",
            "to": [
                "Jane Doe <jane@example.com>, Mary Doe <mary@example.com>, "
                "Richard Doe <richard@example.com>"
            ],
            "messageId": "custom-message-ID",
            "subject": "Hello",
        },
    },
}

# Same page, the complaint notification example; its mail object here is the bounce's.
SES_COMPLAINT: dict[str, Any] = {
    "notificationType": "Complaint",
    "complaint": {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": "richard@example.com"}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2016-01-27T14:59:38.237Z",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
    },
    "mail": copy.deepcopy(SES_BOUNCE_WITH_DSN["mail"]),
}

# "Examples of event data that Amazon SES publishes to Amazon SNS", "Bounce record": event
# publishing names the kind `eventType`. Made Transient here, as a mailbox-full bounce is.
SES_BOUNCE_EVENT: dict[str, Any] = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Transient",
        "bounceSubType": "MailboxFull",
        "bouncedRecipients": [
            {
                "emailAddress": "recipient@example.com",
                "action": "failed",
                "status": "4.2.2",
                "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
            }
        ],
        "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        "reportingMTA": "dsn; mta.example.com",
    },
    "mail": {
        "timestamp": "2017-08-05T00:40:02.012Z",
        "source": "Sender Name <sender@example.com>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
        "sendingAccountId": "123456789012",
        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
        "destination": ["recipient@example.com"],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Sender Name <sender@example.com>"},
            {"name": "To", "value": "recipient@example.com"},
            {"name": "Subject", "value": "Message sent from Amazon SES"},
        ],
        "commonHeaders": {
            "from": ["Sender Name <sender@example.com>"],
            "to": ["recipient@example.com"],
            "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "subject": "Message sent from Amazon SES",
        },
        "tags": {"ses:configuration-set": ["ConfigSet"]},
    },
}


def ses_bounce(
    recipient: str, *, source: str = "john@example.com", message_id: str = "custom-message-ID"
) -> dict[str, Any]:
    """The documented bounce, to `recipient`, sent with envelope sender `source` and
    Message-ID `message_id`."""
    notification = copy.deepcopy(SES_BOUNCE_WITH_DSN)
    notification["bounce"]["bouncedRecipients"][0]["emailAddress"] = recipient
    notification["mail"]["source"] = source
    notification["mail"]["destination"] = [recipient]
    notification["mail"]["commonHeaders"]["messageId"] = message_id
    for header in notification["mail"]["headers"]:
        if header["name"] == "Message-ID":
            header["value"] = message_id
    return notification


def ses_complaint(recipient: str, *, feedback_type: str = "abuse") -> dict[str, Any]:
    notification = copy.deepcopy(SES_COMPLAINT)
    notification["complaint"]["complainedRecipients"] = [{"emailAddress": recipient}]
    notification["complaint"]["complaintFeedbackType"] = feedback_type
    return notification


def ses_bounce_event(recipient: str) -> dict[str, Any]:
    event = copy.deepcopy(SES_BOUNCE_EVENT)
    event["bounce"]["bouncedRecipients"][0]["emailAddress"] = recipient
    return event


# postmarkapp.com/developer/webhooks/bounce-webhook, the example posted to the webhook.
POSTMARK_BOUNCE: dict[str, Any] = {
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, "
    "mailbox not found).",
    "Details": "Test bounce details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
    "Content": "<Full dump of bounce>",
}

# postmarkapp.com/developer/webhooks/spam-complaint-webhook, the example posted.
POSTMARK_SPAM_COMPLAINT: dict[str, Any] = {
    "RecordType": "SpamComplaint",
    "MessageStream": "outbound",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Tag": "Test",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ServerID": 1234,
    "Description": "",
    "Details": "Test spam complaint details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": False,
    "Subject": "Test subject",
    "Content": "<Abuse report dump>",
}


def postmark_record(example: dict[str, Any], recipient: str, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(example), "Email": recipient, **changes}


def postmark_auth(password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    credentials = base64.b64encode(f"{POSTMARK_USER}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


# documentation.mailgun.com, webhooks: the sample event-data of a permanent failure
# ("Test permanent_fail webhook") and of a complaint ("Test complained webhook").
MAILGUN_PERMANENT_FAILURE: dict[str, Any] = {
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "timestamp": 1521233195.375624,
    "log-level": "error",
    "event": "failed",
    "severity": "permanent",
    "reason": "suppress-bounce",
    "delivery-status": {
        "attempt-no": 1,
        "message": "",
        "code": 605,
        "enhanced-code": "",
        "description": "Not delivering to previously bounced address",
        "session-seconds": 0,
    },
    "flags": {
        "is-routed": False,
        "is-authenticated": True,
        "is-system-test": False,
        "is-test-mode": False,
    },
    "envelope": {
        "sender": "bob@sandbox.mailgun.org",
        "transport": "smtp",
        "targets": "alice@example.com",
    },
    "message": {
        "headers": {
            "to": "Alice <alice@example.com>",
            "message-id": "20130503192659.13651.20287@sandbox.mailgun.org",
            "from": "Bob <bob@sandbox.mailgun.org>",
            "subject": "Test permanent_fail webhook",
        },
        "attachments": [],
        "size": 111,
    },
    "recipient": "alice@example.com",
    "recipient-domain": "example.com",
    "storage": {
        "url": "https://se.api.mailgun.net/v3/domains/sandbox.mailgun.org/messages/message_key",
        "key": "message_key",
    },
    "campaigns": [],
    "tags": ["my_tag_1", "my_tag_2"],
    "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"},
}

MAILGUN_COMPLAINED: dict[str, Any] = {
    "id": "-Agny091SquKnsrW2NEKUA",
    "timestamp": 1521233123.501324,
    "log-level": "warn",
    "event": "complained",
    "envelope": {"sending-ip": "173.193.210.33"},
    "flags": {"is-test-mode": False},
    "message": {
        "headers": {
            "to": "Alice <alice@example.com>",
            "message-id": "20110215055645.25246.63817@sandbox.mailgun.org",
            "from": "Bob <bob@sandbox.mailgun.org>",
            "subject": "Test complained webhook",
        },
        "attachments": [],
        "size": 111,
    },
    "recipient": "alice@example.com",
    "tags": ["my_tag_1", "my_tag_2"],
    "campaigns": [],
    "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"},
}


def mailgun_event(example: dict[str, Any], recipient: str, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(example), "recipient": recipient, **changes}


def mailgun_call(
    event_data: object,
    *,
    token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    sent_at: datetime = NOW - timedelta(minutes=1),
    key: str = MAILGUN_SIGNING_KEY,
) -> dict[str, Any]:
    """A webhook call as Mailgun posts it, signed as "Securing Webhooks" describes."""
    timestamp = str(int(sent_at.timestamp()))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": event_data,
    }
