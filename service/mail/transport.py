"""Mail delivery: one SMTP connection for many messages, or an outbox folder for development.

async with open_transport(settings) as transport:
    await transport.send(mail)  # an OutgoingMail; raises DeliveryError
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from service.mail.dkim import DkimSigner, load_signing_key
from service.mail.outbox import OutboxTransport, outbox_path
from service.mail.sending import BeforeData, MailTransport
from service.mail.smtp import SmtpTransport, redact_url, smtp_config
from service.mail.wire import OutgoingMail
from service.settings import Settings


@asynccontextmanager
async def open_transport(settings: Settings) -> AsyncIterator[MailTransport]:
    """The transport `settings.mail_url` names; closed (QUIT, outbox index) on exit. With a
    DKIM key configured, each message is signed on its way in (see `service.mail.dkim`)."""
    transport = transport_for(settings)
    signer = dkim_signer(settings)
    if signer is not None:
        transport = SigningTransport(transport, signer)
    try:
        yield transport
    finally:
        await transport.close()


def transport_for(settings: Settings) -> MailTransport:
    url = settings.mail_url
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("smtp", "smtps"):
        # EHLO names the mail domain: aiosmtplib would otherwise call getfqdn(), which can stall.
        return SmtpTransport(
            smtp_config(
                url, timeout=settings.mail_timeout_seconds, local_hostname=settings.mail_domain
            ),
            max_messages_per_connection=settings.mail_max_messages_per_connection,
        )
    if scheme == "file":
        return OutboxTransport(outbox_path(url))
    raise ValueError(
        f"unsupported mail_url {redact_url(url)!r}: use smtp://host:port, smtps://host:port "
        "or file://folder"
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The signer the settings configure; the key is read once per process (cached)."""
    if not settings.dkim_selector or settings.dkim_private_key_file is None:
        return None
    return DkimSigner(
        selector=settings.dkim_selector,
        domain=settings.dkim_signing_domain,
        key=load_signing_key(settings.dkim_private_key_file),
    )


class SigningTransport:
    """Signs each message, then hands it to `inner`. The one place every message passes
    through, so none goes out unsigned, and the signed `OutgoingMail.data` is what is sent."""

    def __init__(self, inner: MailTransport, signer: DkimSigner) -> None:
        self.inner = inner
        self.signer = signer

    async def send(self, mail: OutgoingMail, *, before_data: BeforeData | None = None) -> None:
        await self.inner.send(self.signer.sign(mail), before_data=before_data)

    async def close(self) -> None:
        await self.inner.close()
