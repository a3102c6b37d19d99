"""DKIM signatures (RFC 6376) on outgoing mail, made with dkimpy.

`open_transport` signs each message once, just before it is handed to a transport: every
message (digest, confirmation, "already subscribed", anything from `OutgoingMail.from_message`)
goes through there, and nothing changes its bytes afterwards, so the signature covers exactly
what is sent.
"""

import base64
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import dkim

from service.mail.wire import OutgoingMail

# Signed when present. MIME-Version and Content-Type are signed too: without them a forwarder
# could relabel the body's type or charset and keep the signature valid.
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)
# Relaxed for both: a relay that refolds a header or trims trailing white space in the body
# does not break the signature (simple/simple would).
_CANONICALIZE = (b"relaxed", b"relaxed")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)
# PKCS#8 DER of an Ed25519 private key (RFC 8410): this 16-octet prefix, then the 32-octet seed.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BODY = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s+(.*?)\s+-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class SigningKey:
    """A private key as dkimpy takes it: PEM for RSA, the base64 seed for Ed25519."""

    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    material: bytes


@lru_cache(maxsize=8)
def load_signing_key(path: Path) -> SigningKey:
    """Read and check the key file once per process; a bad key is a settings error at start-up
    rather than a failed send. Raises ValueError saying what is wrong."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the DKIM private key {str(path)!r}: {exc}") from exc
    match = _PEM_BODY.search(pem)
    if match is None:
        raise ValueError(f"{str(path)!r} is not a PEM private key")
    try:
        der = base64.b64decode(match.group(2), validate=False)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} is not a PEM private key: {exc}") from exc
    if der.startswith(_ED25519_PKCS8_PREFIX) and len(der) == len(_ED25519_PKCS8_PREFIX) + 32:
        seed = der[len(_ED25519_PKCS8_PREFIX) :]
        return SigningKey(b"ed25519-sha256", base64.b64encode(seed))
    try:
        dkim.crypto.parse_pem_private_key(pem)
    except dkim.crypto.UnparsableKeyError as exc:
        raise ValueError(
            f"{str(path)!r} is neither an RSA nor an Ed25519 private key: {exc}"
        ) from exc
    return SigningKey(b"rsa-sha256", pem)


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    key: SigningKey

    def signature(self, data: bytes) -> bytes:
        """The DKIM-Signature header field (folded, CRLF line ends) for the message `data`."""
        present = {name.lower() for name in _HEADER_NAME.findall(data.split(b"\r\n\r\n", 1)[0])}
        headers = [name for name in SIGNED_HEADERS if name.lower().encode("ascii") in present]
        # linesep: dkimpy folds the field with it; CRLF keeps the message's line ends.
        message = dkim.DKIM(data, linesep=b"\r\n")
        field: bytes = message.sign(
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.key.material,
            signature_algorithm=self.key.algorithm,
            canonicalize=_CANONICALIZE,
            include_headers=[name.encode("ascii") for name in headers],
        )
        return field

    def sign(self, mail: OutgoingMail) -> OutgoingMail:
        """`mail` with a DKIM-Signature on top. A relay without 8BITMIME gets a 7-bit form,
        whose re-encoded body has another body hash: that form is signed on its own, when (and
        only if) it is needed."""
        unsigned = mail

        def seven_bit() -> bytes:
            data = unsigned.seven_bit_data()
            return self.signature(data) + data

        return replace(mail, data=self.signature(mail.data) + mail.data, signed_seven_bit=seven_bit)
