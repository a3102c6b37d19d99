"""DKIM signing: digests received by a real SMTP server on 127.0.0.1 verify against the key."""

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import ValidationError

from service.mail.compose import compose_digest
from service.mail.wire import HEADER_WIDTH
from service.settings import Settings
from tests.support.factories import NOW, deliver, make_digest, make_paper, make_settings
from tests.support.smtp_sink import SmtpSink

SELECTOR = "pw2026"
DOMAIN = "paperwire.test"
REQUIRED = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
]


@dataclass(frozen=True)
class KeyPair:
    private_pem: Path
    dns_record: bytes  # the TXT record published at <selector>._domainkey.<domain>

    def dnsfunc(self) -> Callable[..., bytes]:
        """Answers the one name the verifier should ask for, and nothing else (no network)."""

        def lookup(name: bytes, timeout: int = 5) -> bytes:
            wanted = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
            return self.dns_record if name.rstrip(b".") + b"." == wanted else b""

        return lookup


def _public_der(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pair(directory: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> KeyPair:
    path = directory / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    kind = b"ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else b"rsa"
    record = b"v=DKIM1; k=" + kind + b"; p=" + base64.b64encode(_public_der(key))
    return KeyPair(private_pem=path, dns_record=record)


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    # Made once per module: a 2048-bit key takes tens of milliseconds.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _key_pair(tmp_path_factory.mktemp("rsa"), key)


def signing_settings(sink: SmtpSink, keys: KeyPair, **overrides: Any) -> Settings:
    return make_settings(
        mail_url=sink.url,
        mail_timeout_seconds=5.0,
        dkim_selector=SELECTOR,
        dkim_private_key_file=keys.private_pem,
        **overrides,
    )


def a_digest() -> Any:
    # A title with non-ASCII text: the body then goes as 8bit, the case a 7-bit relay changes.
    paper = make_paper(title="Diffusion für Moleküle — schnell und genau")
    return compose_digest(make_digest([paper]), settings=make_settings(), now=NOW)


def signature_tags(raw: bytes) -> dict[str, str]:
    match = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", raw, re.MULTILINE | re.DOTALL)
    assert match is not None
    unfolded = re.sub(r"\s+", "", match.group(1).decode("ascii"))
    return dict(tag.split("=", 1) for tag in unfolded.split(";") if tag)


def test_a_digest_received_over_smtp_verifies_against_the_published_key(
    smtp_sink: SmtpSink, rsa_key: KeyPair
) -> None:
    sent = a_digest()
    assert deliver(signing_settings(smtp_sink, rsa_key), sent) == [None]
    [received] = smtp_sink.messages
    raw = received.raw

    assert raw.startswith(b"DKIM-Signature: ")
    assert raw.endswith(sent.data)  # signed by adding a header, the message itself untouched
    assert dkim.verify(raw, dnsfunc=rsa_key.dnsfunc())
    tags = signature_tags(raw)
    assert tags["d"] == DOMAIN and tags["s"] == SELECTOR
    assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed"
    assert tags["h"].lower().split(":") == REQUIRED


def test_the_signature_header_is_folded_within_78_characters_with_crlf(
    smtp_sink: SmtpSink, rsa_key: KeyPair
) -> None:
    assert deliver(signing_settings(smtp_sink, rsa_key), a_digest()) == [None]
    raw = smtp_sink.messages[0].raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"") and b"\r" not in head.replace(b"\r\n", b"")
    signature = re.match(rb"DKIM-Signature:.*?\r\n(?![ \t])", raw, re.DOTALL)
    assert signature is not None
    lines = signature.group(0).split(b"\r\n")[:-1]
    assert len(lines) > 1
    assert all(len(line) <= HEADER_WIDTH for line in lines)


def test_a_subject_changed_after_signing_fails_verification(
    smtp_sink: SmtpSink, rsa_key: KeyPair
) -> None:
    assert deliver(signing_settings(smtp_sink, rsa_key), a_digest()) == [None]
    raw = smtp_sink.messages[0].raw
    tampered = re.sub(rb"^Subject: ", b"Subject: [SPAM] ", raw, count=1, flags=re.MULTILINE)
    assert tampered != raw
    assert not dkim.verify(tampered, dnsfunc=rsa_key.dnsfunc())


def test_a_relay_without_8bitmime_gets_a_7bit_form_that_verifies(
    smtp_sink: SmtpSink, rsa_key: KeyPair
) -> None:
    smtp_sink.hidden_extensions = {"8BITMIME"}
    sent = a_digest()
    assert not sent.data.isascii()
    assert deliver(signing_settings(smtp_sink, rsa_key), sent) == [None]
    raw = smtp_sink.messages[0].raw
    assert raw.isascii()
    assert raw.count(b"DKIM-Signature:") == 1
    assert dkim.verify(raw, dnsfunc=rsa_key.dnsfunc())


def test_without_a_key_nothing_is_signed(smtp_sink: SmtpSink) -> None:
    sent = a_digest()
    assert deliver(make_settings(mail_url=smtp_sink.url, mail_timeout_seconds=5.0), sent) == [None]
    raw = smtp_sink.messages[0].raw
    assert b"DKIM-Signature" not in raw
    assert raw == sent.data


def test_an_ed25519_key_signs_too(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    keys = _key_pair(tmp_path, ed25519.Ed25519PrivateKey.generate())
    assert deliver(signing_settings(smtp_sink, keys), a_digest()) == [None]
    raw = smtp_sink.messages[0].raw
    assert signature_tags(raw)["a"] == "ed25519-sha256"
    assert dkim.verify(raw, dnsfunc=keys.dnsfunc())


def test_the_signing_domain_can_differ_from_the_sender_domain(
    smtp_sink: SmtpSink, rsa_key: KeyPair
) -> None:
    settings = signing_settings(smtp_sink, rsa_key, dkim_domain="mail.paperwire.test")
    assert deliver(settings, a_digest()) == [None]
    assert signature_tags(smtp_sink.messages[0].raw)["d"] == "mail.paperwire.test"


def test_a_selector_without_a_key_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="DKIM_PRIVATE_KEY_FILE"):
        make_settings(dkim_selector=SELECTOR)


def test_a_key_without_a_selector_is_a_settings_error(rsa_key: KeyPair) -> None:
    with pytest.raises(ValidationError, match="DKIM_SELECTOR"):
        make_settings(dkim_private_key_file=rsa_key.private_pem)


def test_a_missing_or_bad_key_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read the DKIM private key"):
        make_settings(dkim_selector=SELECTOR, dkim_private_key_file=tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(ValidationError, match="not a PEM private key"):
        make_settings(dkim_selector=SELECTOR, dkim_private_key_file=garbage)


def test_a_selector_that_is_not_a_dns_label_is_a_settings_error(rsa_key: KeyPair) -> None:
    with pytest.raises(ValidationError, match="not a DNS label"):
        make_settings(dkim_selector="pw 2026", dkim_private_key_file=rsa_key.private_pem)
