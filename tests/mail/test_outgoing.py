"""Messages written as wire bytes by hand: headers, bodies, and the stdlib reading them back."""

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from service.mail.wire import (
    MAX_LINE_OCTETS,
    MailHeaders,
    OutgoingMail,
    encode_body,
    multipart_alternative,
)


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def message_with(headers: MailHeaders, *, text: str = "Hello\n", html: str = "<p>Hi</p>") -> bytes:
    return multipart_alternative(headers, text=text, html=html)


@pytest.mark.parametrize(
    "value",
    [
        "Your papers for Wed 25 Nov: “Consistency models for fast diffusion sampling” and 9 more",
        "Ünïcödé wörds " * 12,
        "日本語のタイトルと説明" * 8,
        "🚀" * 40,
        "Emoji 🚀 between plain words and Čeština at the end",
        "literal =?utf-8?q?not_an_encoded_word?= stays literal",
        "under_score, =3D equals, ? question and _ alone",
        "x" * 200,
        "short " + "y" * 77 + " words after an overlong one",
        "  runs of\twhitespace\r\nand a line break  ",
        "Bcc: evil@x.test\r\nX-Injected: yes",
        "",
    ],
)
def test_unstructured_text_is_encoded_folded_and_decodes_back(value: str) -> None:
    headers = MailHeaders()
    headers.add_text("Subject", value)
    raw = headers.to_bytes()
    lines = raw.split(b"\r\n")[:-1]
    assert raw.isascii() and raw.endswith(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert lines[0].startswith(b"Subject:") and all(line[:1] == b" " for line in lines[1:])
    message = parse(message_with(headers))
    assert list(message.keys()) == ["Subject", "MIME-Version", "Content-Type"]
    assert message["Subject"] == " ".join(value.split())
    assert message["Subject"].defects == ()


def test_plain_ascii_text_is_left_readable() -> None:
    headers = MailHeaders()
    headers.add_text("Subject", "Your papers for Wed 25 Nov: a plain title and 9 more")
    assert (
        headers.to_bytes() == b"Subject: Your papers for Wed 25 Nov: a plain title and 9 more\r\n"
    )


def test_only_the_words_that_need_it_are_encoded() -> None:
    headers = MailHeaders()
    headers.add_text("Subject", "Papers: “Diffusion models” and more")
    raw = headers.to_bytes()
    assert raw.startswith(b"Subject: Papers: =?utf-8?")
    assert raw.endswith(b"?= and more\r\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("To", "alice@example.org\r\nBcc: evil@x.test"),
        ("To", "alice@example.org\nBcc: evil@x.test"),
        ("Message-ID", "<id@x.test>\rBcc: evil@x.test"),
        ("Date", "Wed, 25 Nov 2026 07:00:00 +0000\x00"),
        ("To", "jürgen@example.org"),
        ("X-Bad Name", "value"),
        ("Bcc: evil@x.test\r\nX", "value"),
    ],
)
def test_a_structured_value_that_could_break_the_header_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        MailHeaders().add(name, value)


@pytest.mark.parametrize(
    "uri", ["https://x.test/u/a\r\nBcc: evil@x.test", "https://x.test/a b", "https://x.test/>"]
)
def test_a_uri_that_could_break_the_header_is_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        MailHeaders().add_uri_list("List-Unsubscribe", ["https://x.test/u/ok", uri])


def test_uris_go_one_per_line_never_encoded() -> None:
    long_uri = "https://digest.papers.example-university.edu/paperwire/u/" + "t" * 60
    headers = MailHeaders()
    headers.add_uri_list("List-Unsubscribe", [long_uri, "mailto:u@x.test?subject=unsubscribe"])
    assert headers.to_bytes() == (
        f"List-Unsubscribe: <{long_uri}>,\r\n <mailto:u@x.test?subject=unsubscribe>\r\n".encode()
    )
    message = parse(message_with(headers))
    assert message["List-Unsubscribe"] == f"<{long_uri}>, <mailto:u@x.test?subject=unsubscribe>"


@pytest.mark.parametrize(
    ("display_name", "wire"),
    [
        ("Paperwire", b"From: Paperwire <digest@x.test>\r\n"),
        ("Paperwire, Daily", b'From: "Paperwire, Daily" <digest@x.test>\r\n'),
        (
            "Paperwire — “Daily”",
            b"From: Paperwire =?utf-8?b?4oCUIOKAnERhaWx54oCd?= <digest@x.test>\r\n",
        ),
    ],
)
def test_a_display_name_is_quoted_or_encoded_as_it_needs(display_name: str, wire: bytes) -> None:
    headers = MailHeaders()
    headers.add_mailbox("From", display_name=display_name, addr_spec="digest@x.test")
    assert headers.to_bytes() == wire
    [address] = parse(message_with(headers))["From"].addresses
    assert (address.display_name, address.addr_spec) == (display_name, "digest@x.test")


def test_a_display_name_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        MailHeaders().add_mailbox("From", display_name="P\r\nBcc: e@x.test", addr_spec="d@x.test")


def test_both_parts_are_utf8_and_end_with_their_line_break() -> None:
    headers = MailHeaders()
    headers.add("To", "alice@example.org")
    message = parse(message_with(headers, text="Ünïcödé\nline two", html="<p>é</p>\n"))
    assert all(part.defects == [] for part in message.walk())
    text, html = message.iter_parts()
    assert "MIME-Version" not in text and "MIME-Version" not in html
    assert [(p.get_content_type(), p.get_content_charset()) for p in (text, html)] == [
        ("text/plain", "utf-8"),
        ("text/html", "utf-8"),
    ]
    assert [p["Content-Transfer-Encoding"] for p in (text, html)] == ["8bit", "8bit"]
    assert text.get_content() == "Ünïcödé\r\nline two\r\n"
    assert html.get_content() == "<p>é</p>\r\n"


def test_the_same_message_always_gets_the_same_bytes() -> None:
    def build(to: str) -> bytes:
        headers = MailHeaders()
        headers.add("To", to)
        return message_with(headers)

    assert build("a@x.test") == build("a@x.test")
    assert build("a@x.test") != build("b@x.test")  # and another message another boundary


def test_a_body_holding_the_boundary_gets_another_one() -> None:
    headers = MailHeaders()
    headers.add("To", "alice@example.org")
    first = message_with(headers)
    boundary = first.split(b'boundary="', 1)[1].split(b'"', 1)[0].decode()
    text = f"A title can hold anything:\n--{boundary}\nContent-Type: text/html\n"
    data = message_with(headers, text=text)
    assert f'boundary="{boundary}"'.encode() not in data
    message = parse(data)
    assert len(list(message.iter_parts())) == 2
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ("short lines\nonly\n", "8bit"),
        ("word " * 300, "8bit"),
        ("é" * 600, "quoted-printable"),
        ("x" * 999, "quoted-printable"),
        ("x" * 998, "8bit"),
    ],
)
def test_bodies_keep_lines_within_998_octets(body: str, encoding: str) -> None:
    payload, chosen = encode_body(body)
    assert chosen == encoding
    assert max(len(line) for line in payload.split(b"\r\n")) <= MAX_LINE_OCTETS
    assert payload.endswith(b"\r\n") and b"\n" not in payload.replace(b"\r\n", b"")


def test_from_message_takes_the_envelope_and_leaves_out_bcc() -> None:
    message = EmailMessage()
    message["From"] = Address("Paperwire", addr_spec="digest@x.test")
    message["To"] = "alice@example.org, Bob <bob@example.org>"
    message["Cc"] = "carol@example.org"
    message["Bcc"] = "dave@example.org"
    message["Message-ID"] = "<one@x.test>"
    message["Subject"] = "Ünïcödé"
    message.set_content("Hello\n")
    mail = OutgoingMail.from_message(message)
    assert mail.sender == "digest@x.test"
    assert mail.recipients == (
        "alice@example.org",
        "bob@example.org",
        "carol@example.org",
        "dave@example.org",
    )
    assert mail.message_id == "<one@x.test>"
    assert b"dave@" not in mail.data and b"\r\nTo: " in mail.data
    assert "Bcc" in message  # the caller's message is left as it was
    assert mail.as_email_message()["Subject"] == "Ünïcödé"


def test_from_message_leaves_the_sender_empty_unless_there_is_exactly_one() -> None:
    message = EmailMessage()
    message["From"] = "a@x.test, b@x.test"
    message["To"] = "alice@example.org"
    assert OutgoingMail.from_message(message).sender == ""
    message["Sender"] = "bounces@x.test"
    assert OutgoingMail.from_message(message).sender == "bounces@x.test"


@pytest.mark.parametrize("address", ["a@x.test\r\nRCPT TO:<evil@x.test>", "a@x.test\n", "a\x00@x"])
def test_an_envelope_address_with_a_line_break_cannot_be_made(address: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        OutgoingMail(sender="d@x.test", recipients=(address,), message_id="", data=b"")
    with pytest.raises(ValueError, match="control characters"):
        OutgoingMail(sender=address, recipients=("a@x.test",), message_id="", data=b"")


def test_an_ascii_message_is_its_own_7bit_version() -> None:
    headers = MailHeaders()
    headers.add("To", "alice@example.org")
    mail = OutgoingMail(
        sender="d@x.test",
        recipients=("alice@example.org",),
        message_id="",
        data=message_with(headers),
    )
    assert mail.seven_bit_data() is mail.data


def test_the_7bit_version_of_any_message_keeps_its_headers_as_written() -> None:
    headers = MailHeaders()
    headers.add_uri_list("List-Unsubscribe", ["https://x.test/u/" + "t" * 80, "mailto:u@x.test"])
    headers.add_text("Subject", "Ünïcödé")
    mail = OutgoingMail(
        sender="d@x.test",
        recipients=("alice@example.org",),
        message_id="",
        data=message_with(headers, text="Grüße\n", html="<p>Grüße</p>\n"),
    )
    seven_bit = mail.seven_bit_data()
    assert seven_bit.isascii()
    assert seven_bit.startswith(headers.to_bytes())  # not refolded, so never encoded
    message = parse(seven_bit)
    assert [part.get_content().replace("\r\n", "\n") for part in message.iter_parts()] == [
        "Grüße\n",
        "<p>Grüße</p>\n",
    ]
