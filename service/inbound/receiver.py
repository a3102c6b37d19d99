"""`paperwire inbound`: the SMTP server that is the MX of the bounce domain, receiving what
comes back to a digest's envelope sender, the `List-Unsubscribe` mailto address, and mail to
the postmaster and abuse addresses that RFC 5321 and RFC 2142 expect (feedback loops report
to abuse).

It takes mail for its own addresses only (others get 550 5.1.1 at RCPT), a few recipients per
message, and no message over `inbound_max_bytes` (552, announced as SIZE and not buffered).
Each message is classified (`classify`) and its reports applied (`reports.apply_report`) in a
worker thread, since the store is synchronous; a message that changes nothing is kept in the
operator's inbox. The answer after DATA is 250 whatever the message named, so that nobody
learns from it which addresses are subscribed; only a database error answers otherwise (451:
the sender keeps the message and tries again).
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP
from sqlalchemy.exc import SQLAlchemyError

from service.inbound.classify import classify_message
from service.inbound.reports import Action, apply_report
from service.settings import Settings
from service.signup.return_addresses import BOUNCE_LOCAL_PART, UNSUBSCRIBE_LOCAL_PART
from service.store import Store

log = logging.getLogger(__name__)

# Local parts that may carry a `+tag`, and those that never do.
TAGGED_LOCAL_PARTS = (BOUNCE_LOCAL_PART, UNSUBSCRIBE_LOCAL_PART)
ROLE_LOCAL_PARTS = ("postmaster", "abuse")
# A bounce or a complaint names one address of ours; more is somebody trying addresses.
MAX_RECIPIENTS = 5
BANNER = "Paperwire inbound"
REFUSED_RECIPIENT = "550 5.1.1 No such mailbox here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
ACCEPTED_RECIPIENT = "250 2.1.5 OK"
ACCEPTED_MESSAGE = "250 2.0.0 OK"
TRY_AGAIN_LATER = "451 4.3.0 Temporary failure, try again later"
# Messages read at once: flufl.bounce's patterns can take seconds of CPU over a hostile
# megabyte, so a flood waits its turn instead of taking every core and thread.
MAX_CONCURRENT_MESSAGES = 2
# How long shutting down waits for the listening sockets to close.
CLOSE_TIMEOUT_SECONDS = 5.0


def is_own_address(address: str, *, domain: str) -> bool:
    """Whether the receiver takes mail for `address` (any case)."""
    local, at, address_domain = address.lower().rpartition("@")
    if not at:
        # RFC 5321 §4.5.1: a bare "Postmaster" names the postmaster of this server.
        return address_domain == "postmaster"
    if address_domain != domain.lower():
        return False
    base, plus, _tag = local.partition("+")
    return base in TAGGED_LOCAL_PARTS or (not plus and base in ROLE_LOCAL_PARTS)


def receive_message(
    store: Store,
    settings: Settings,
    *,
    data: bytes,
    mail_from: str,
    rcpt_tos: Sequence[str],
    now: datetime,
) -> str:
    """Classify one message and act on what it reports, else keep it in the inbox; what was
    done, in a few words. Synchronous: the receiver runs it in a worker thread."""
    classification = classify_message(data, rcpt_tos=rcpt_tos, mail_from=mail_from)
    actions = [
        apply_report(store, report, settings=settings, now=now).action
        for report in classification.reports
    ]
    if any(action is not Action.UNMATCHED for action in actions):
        return f"{classification.note}: {', '.join(actions)}"
    note = classification.note
    if actions:
        note += f": {Action.UNMATCHED}"
    message_id = store.add_inbound_message(
        received_at=now,
        mail_from=mail_from,
        rcpt_to=", ".join(rcpt_tos),
        subject=classification.subject,
        note=note,
        data=data,
    )
    return f"{note}: kept in the inbox as {message_id}"


class InboundHandler:
    """aiosmtpd's hooks (`handle_<VERB>(server, session, envelope, ...)`) for the receiver."""

    def __init__(self, store: Store, settings: Settings, *, now: Callable[[], datetime]) -> None:
        self._store = store
        self._settings = settings
        self._now = now
        self._reading = asyncio.Semaphore(MAX_CONCURRENT_MESSAGES)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not is_own_address(address, domain=self._settings.bounce_address_domain):
            return REFUSED_RECIPIENT
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        return ACCEPTED_RECIPIENT

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        rcpt_tos = list(envelope.rcpt_tos)
        try:
            async with self._reading:
                done = await asyncio.to_thread(
                    receive_message,
                    self._store,
                    self._settings,
                    data=data,
                    mail_from=mail_from,
                    rcpt_tos=rcpt_tos,
                    now=self._now(),
                )
        # Neither the addresses nor the tags are logged: a tag, like a link's token, acts on
        # its subscriber's behalf, and a mailed unsubscribe comes from their own address.
        except SQLAlchemyError as exc:
            # The driver's message alone: SQLAlchemy's adds the statement's parameters.
            reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
            log.warning("message answered 451, database error: %s", reason)
            return TRY_AGAIN_LATER
        log.info("message received: %s", done)
        return ACCEPTED_MESSAGE

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer 500 with the exception's text; the sender learns nothing and
        # tries again later instead.
        log.error("inbound session failed", exc_info=error)
        return TRY_AGAIN_LATER


async def start_receiver(
    store: Store,
    settings: Settings,
    *,
    host: str,
    port: int,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> asyncio.Server:
    """Listen on `host`:`port` (0: a free port, read from the server's sockets)."""
    handler = InboundHandler(store, settings, now=now)
    loop = asyncio.get_running_loop()

    def session() -> SMTP:
        return SMTP(
            handler,
            # Given: without it aiosmtpd calls socket.getfqdn(), which can stall on DNS.
            hostname=settings.bounce_address_domain,
            ident=BANNER,
            data_size_limit=settings.inbound_max_bytes,
            loop=loop,
        )

    # asyncio makes the socket: one made by hand can lose TCP_NODELAY.
    return await loop.create_server(session, host=host, port=port)


async def serve_until_stopped(
    store: Store,
    settings: Settings,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    on_listening: Callable[[str, int], None] = lambda host, port: None,
) -> None:
    """Run the receiver until `stop` is set, telling `on_listening` where it listens."""
    server = await start_receiver(store, settings, host=host, port=port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    on_listening(bound_host, bound_port)
    try:
        await stop.wait()
    finally:
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("inbound sessions still open after %ss", CLOSE_TIMEOUT_SECONDS)
