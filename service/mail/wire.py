"""Outgoing mail as the bytes that go on the wire, and the MIME pieces written by hand.

Building and serializing a digest with the stdlib `email` package costs about 2.7 ms of CPU
(1.9 ms with 8bit parts), writing it here about 0.07 ms (`python -m bench.mail_build`); at
hundreds of digests a second that would be most of a worker's CPU. A digest always has the same
shape, a few known headers and a multipart/alternative body with a text and an HTML part, so
its bytes are written here directly. The stdlib still reads mail back
(`OutgoingMail.as_email_message`), turns any other message into bytes
(`OutgoingMail.from_message`) and re-encodes for the rare relay without 8BITMIME.
"""

import base64
import binascii
import copy
import hashlib
import itertools
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from functools import lru_cache
from string import ascii_letters, digits

# RFC 5321: a line of a message may not exceed 998 octets plus CRLF.
MAX_LINE_OCTETS = 998
# RFC 5322 §2.1.1: a header line should stay within 78 characters.
HEADER_WIDTH = 78
# RFC 2047 §2: an encoded-word is at most 75 characters.
_ENCODED_WORD_CHARS = 75
# A folded body line holds at most this many characters: 4 UTF-8 octets each stays in the limit.
_FOLD_CHARS = MAX_LINE_OCTETS // 4
# Characters a Q encoded-word shows as they are; the stdlib's conservative set, safe in any
# header (RFC 2047 §5).
_Q_LITERAL = frozenset(ascii_letters + digits + "!*+-/")
_Q_PREFIX, _B_PREFIX, _SUFFIX = "=?utf-8?q?", "=?utf-8?b?", "?="
_CRLF = "\r\n"

# Headers are kept as written when a parsed message is serialized again (a preview's .eml,
# `from_message`): refolding would RFC 2047-encode the long List-Unsubscribe line
# (tests/mail/test_outgoing.py shows it).
# With CRLF line ends too, `as_email_message().as_bytes()` gives back `data` exactly.
_READ_POLICY = policy.default.clone(refold_source="none", linesep="\r\n")
_WIRE_POLICY = policy.SMTP.clone(refold_source="none")
_WIRE_POLICY_7BIT = _WIRE_POLICY.clone(cte_type="7bit")


@dataclass(frozen=True)
class OutgoingMail:
    """A message ready for SMTP: its envelope, its Message-ID ("" if it has none) and the bytes
    of DATA (CRLF line ends; a body that is not ASCII goes as 8bit)."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes
    # Set when `data` is DKIM-signed: the 7-bit form, signed on its own (its body hash differs).
    signed_seven_bit: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for address in (self.sender, *self.recipients):
            # Envelope addresses go into SMTP commands: a line break would start another one.
            if not address.isprintable():
                raise ValueError(f"envelope address {address!r} has control characters")

    def seven_bit_data(self) -> bytes:
        """`data` for a relay without 8BITMIME: 8bit bodies re-encoded (base64, by the stdlib).

        Rare, so the stdlib's cost does not matter here; the headers are ASCII already.
        """
        if self.data.isascii():
            return self.data
        if self.signed_seven_bit is not None:
            return self.signed_seven_bit()
        # Parsed with its CRLF line ends, so a text body is encoded in that canonical form.
        return _parse(self.data, _WIRE_POLICY).as_bytes(policy=_WIRE_POLICY_7BIT)

    def as_email_message(self) -> EmailMessage:
        """The message parsed back, for previews, the outbox and tests: what is sent. Its
        contents have the "\\n" line ends Python's email package works with; `as_bytes()`
        gives `data` back."""
        return _parse(self.data.replace(b"\r\n", b"\n"), _READ_POLICY)

    @classmethod
    def from_message(cls, message: EmailMessage) -> "OutgoingMail":
        """Any `EmailMessage`, with the envelope smtplib would use: Sender (else From) and the
        To, Cc and Bcc addresses. The sender is empty unless there is exactly one; Bcc is left
        out of the data."""
        senders = _addresses(message, "Sender") or _addresses(message, "From")
        recipients = tuple(
            address for field in ("To", "Cc", "Bcc") for address in _addresses(message, field)
        )
        if "Bcc" in message:
            message = copy.deepcopy(message)
            del message["Bcc"]
        return cls(
            sender=senders[0] if len(senders) == 1 else "",
            recipients=recipients,
            message_id=str(message.get("Message-ID", "")).strip(),
            data=message.as_bytes(policy=_WIRE_POLICY),
        )


def _parse(data: bytes, parse_policy: "policy.EmailPolicy[EmailMessage]") -> EmailMessage:
    return BytesParser(policy=parse_policy).parsebytes(data)


def _addresses(message: EmailMessage, field: str) -> list[str]:
    values = [str(value) for value in message.get_all(field, [])]
    return [address for _, address in getaddresses(values) if address]


class MailHeaders:
    """The header section of a message, each header checked and folded as it is added.

    Nothing added can hold a line break of its own, so no value can start another header.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, name: str, value: str) -> None:
        """A structured value written as it is (an address, a date, an id): printable ASCII."""
        if not (value.isascii() and value.isprintable()):
            raise ValueError(f"{name}: {value!r} cannot go into a header as it is")
        self._lines.append(f"{_checked_name(name)}: {value}{_CRLF}")

    def add_text(self, name: str, value: str) -> None:
        """Unstructured text (a subject): each run of whitespace becomes one space; words that
        are not plain ASCII go as RFC 2047 encoded-words; lines fold at spaces within 78."""
        self._lines.append(_fold_text(_checked_name(name), value))

    def add_uri_list(self, name: str, uris: Sequence[str]) -> None:
        """`<uri>, <uri>` one per line and never encoded: RFC 2369 wants the URIs as they are,
        and mail clients do not read an encoded-word as a URL."""
        for uri in uris:
            if not (uri.isascii() and uri.isprintable()) or any(c in uri for c in " <>"):
                raise ValueError(f"{name}: {uri!r} is not a URI that can go into a header")
        self._lines.append(f"{_checked_name(name)}: " + f",{_CRLF} ".join(f"<{u}>" for u in uris))
        self._lines.append(_CRLF)

    def add_mailbox(self, name: str, *, display_name: str, addr_spec: str) -> None:
        """A display name and address, quoted or RFC 2047-encoded as the name needs."""
        self._lines.append(_mailbox_line(_checked_name(name), display_name, addr_spec))

    def to_bytes(self) -> bytes:
        return "".join(self._lines).encode("ascii")


def _checked_name(name: str) -> str:
    if not (name.isascii() and name.isprintable()) or ":" in name or " " in name or not name:
        raise ValueError(f"{name!r} is not a header name")
    return name


@lru_cache(maxsize=64)
def _mailbox_line(name: str, display_name: str, addr_spec: str) -> str:
    # The stdlib's phrase quoting and encoding are right, and its cost does not matter here:
    # the sender is the same for every message, so this runs once. Address() refuses CR/LF.
    address = Address(display_name=display_name, addr_spec=addr_spec)
    line = str(policy.SMTP.header_factory(name, address).fold(policy=policy.SMTP))
    if not line.isascii():
        raise ValueError(f"{name}: {display_name!r} <{addr_spec}> cannot be written in ASCII")
    return line


def _fold_text(name: str, value: str) -> str:
    lines: list[str] = []
    line = f"{name}:"
    has_word = False
    for plain, text in _word_runs(value.split()):
        if plain:
            if has_word and len(line) + 1 + len(text) > HEADER_WIDTH:
                lines.append(line)
                line = ""
            line += " " + text
            has_word = True
            continue
        encoding = _q_or_b(text)
        while text:
            room = min(HEADER_WIDTH - len(line) - 1, _ENCODED_WORD_CHARS)
            size = _fitting_prefix(text, room, encoding)
            if size == 0:
                if not has_word:
                    raise ValueError(f"header name {name!r} leaves no room for its value")
                lines.append(line)
                line = ""
                continue
            line += " " + _encoded_word(text[:size], encoding)
            text = text[size:]
            has_word = True
    lines.append(line)
    return _CRLF.join(lines) + _CRLF


def _word_runs(words: Sequence[str]) -> Iterator[tuple[bool, str]]:
    """(True, word) for a word that can go as it is; (False, text) for a run of words that
    must be encoded, joined by their spaces (the space between two encoded-words is dropped
    when decoding, RFC 2047 §6.2, so a run goes as one text)."""
    run: list[str] = []
    for word in words:
        # "=?" would read as the start of an encoded-word; a word longer than a line could
        # not be folded unless encoded.
        plain = (
            word.isascii() and word.isprintable() and "=?" not in word and len(word) < HEADER_WIDTH
        )
        if plain:
            if run:
                yield False, " ".join(run)
                run = []
            yield True, word
        else:
            run.append(word)
    if run:
        yield False, " ".join(run)


def _q_cost(char: str) -> int:
    return 1 if char in _Q_LITERAL or char == " " else 3 * len(char.encode("utf-8"))


def _q_or_b(text: str) -> str:
    """The shorter encoding: Q keeps mostly-Latin text readable, B is shorter for the rest."""
    q_length = sum(map(_q_cost, text))
    b_length = 4 * -(-len(text.encode("utf-8")) // 3)
    return "q" if q_length <= b_length else "b"


def _fitting_prefix(text: str, room: int, encoding: str) -> int:
    """How many characters of `text` fit in one encoded-word of at most `room` characters.

    Whole characters only: an encoded-word may not end inside one (RFC 2047 §5).
    """
    budget = room - len(_Q_PREFIX) - len(_SUFFIX)
    used = 0
    for index, char in enumerate(text):
        if encoding == "q":
            grown = used + _q_cost(char)
            fits = grown <= budget
        else:
            grown = used + len(char.encode("utf-8"))
            fits = 4 * -(-grown // 3) <= budget
        if not fits:
            return index
        used = grown
    return len(text)


def _encoded_word(text: str, encoding: str) -> str:
    if encoding == "b":
        return _B_PREFIX + base64.b64encode(text.encode("utf-8")).decode("ascii") + _SUFFIX
    encoded = "".join(
        char
        if char in _Q_LITERAL
        else "_"
        if char == " "
        else "".join(f"={octet:02X}" for octet in char.encode("utf-8"))
        for char in text
    )
    return _Q_PREFIX + encoded + _SUFFIX


def multipart_alternative(headers: MailHeaders, *, text: str, html: str) -> bytes:
    """The whole message: `headers`, then the text and HTML versions of one content."""
    parts = (_text_part("plain", text), _text_part("html", html))
    head = headers.to_bytes()
    boundary = _boundary(head, parts)
    delimiter = b"--" + boundary + b"\r\n"
    return b"".join(
        (
            head,
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n',
            b"\r\n",
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1): each
            # part keeps its own final line break.
            *(delimiter + part + b"\r\n" for part in parts),
            b"--" + boundary + b"--\r\n",
        )
    )


def _boundary(head: bytes, parts: Sequence[bytes]) -> bytes:
    """A boundary derived from the headers, so one message always has the same bytes.

    "=_" cannot occur in quoted-printable text; an 8bit body is searched, and a body that
    contains the boundary (a title can hold anything) gets the next one.
    """
    for attempt in itertools.count():
        digest = hashlib.blake2b(head + attempt.to_bytes(4, "big"), digest_size=12)
        boundary = b"=_" + digest.hexdigest().encode("ascii")
        if not any(b"--" + boundary in part for part in parts):
            return boundary
    raise AssertionError("unreachable")


def _text_part(subtype: str, body: str) -> bytes:
    payload, encoding = encode_body(body)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: '
    return (head + encoding + "\r\n\r\n").encode("ascii") + payload


def encode_body(body: str) -> tuple[bytes, str]:
    """`body` as UTF-8 with CRLF line ends and the transfer encoding that keeps every line
    within MAX_LINE_OCTETS.

    8bit when lines fit, folding overlong ones at spaces (which HTML and the text part treat
    as any other space); quoted-printable only for a body with an unbreakable overlong run.
    """
    lines = body.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) > MAX_LINE_OCTETS:
        folded = [short for line in lines for short in _fold_line(line)]
        if max(map(len, folded)) > MAX_LINE_OCTETS:
            return binascii.b2a_qp(b"\r\n".join(lines) + b"\r\n", istext=True), "quoted-printable"
        lines = folded
    return b"\r\n".join(lines) + b"\r\n", "8bit"


def _fold_line(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE_OCTETS:
        return [line]
    wrapped = textwrap.wrap(
        line.decode("utf-8"), _FOLD_CHARS, break_long_words=False, break_on_hyphens=False
    )
    return [short.encode("utf-8") for short in wrapped]
