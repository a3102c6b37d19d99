"""One-off emails a visitor asked for (confirmation, "already subscribed", a fresh manage link),
stored before they are sent.

The web app answers first and sends after, so a process that dies in between, or a relay that
is down, must not lose the email: the mailbox limits have counted it, and a second request
within them would mail nothing. Each email is kept as a `notices` row from the moment it is
composed until it is sent; the web app sends it right after its answer, and every web process
also looks for notices left unsent (at start, then every `notice_sweep_seconds`). A process
that dies mid-send holds its notice for a lease, after which another sends it again: a rare
second copy of a confirmation email is harmless (same link, same Message-ID), a lost one is not.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from service.mail.sending import DeliveryError
from service.mail.transport import open_transport
from service.mail.wire import OutgoingMail
from service.settings import Settings
from service.signup.tokens import CONFIRM_MAX_AGE
from service.store import ClaimedNotice, Store

log = logging.getLogger(__name__)

# Nobody wants a confirmation email whose link has expired.
NOTICE_LIFETIME = CONFIRM_MAX_AGE
# Tries of one notice on transient failures, waiting 30 s, 1 min, 2 min … (at most 15 min).
MAX_NOTICE_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(minutes=15)


def queue_notice(
    store: Store, mail: OutgoingMail, *, subscriber_id: int, kind: str, now: datetime
) -> OutgoingMail:
    """Store `mail` for sending; it is sent by `send_notices`, once."""
    store.add_notice(
        mail, subscriber_id=subscriber_id, kind=kind, now=now, expires_at=now + NOTICE_LIFETIME
    )
    return mail


def notice_lease(settings: Settings) -> timedelta:
    """How long a sender holds a notice: past its SMTP timeouts, a sender is presumed dead."""
    return timedelta(seconds=3 * settings.mail_timeout_seconds + 10)


async def send_notices(
    store: Store,
    *,
    settings: Settings,
    now: Callable[[], datetime],
    message_id: str | None = None,
) -> int:
    """Send the notices that are due (or only the one with `message_id`); return how many
    went out. Store calls run in a thread: this runs in the web app's event loop."""
    claimed = await asyncio.to_thread(
        store.claim_notices, now=now(), lease=notice_lease(settings), message_id=message_id
    )
    if not claimed:
        return 0
    sent = 0
    async with open_transport(settings) as transport:
        for notice in claimed:
            try:
                await transport.send(notice.mail)
            except DeliveryError as exc:
                retry_at = _retry_at(notice, exc, now=now())
                await asyncio.to_thread(
                    store.finish_notice,
                    notice.id,
                    attempt=notice.attempt,
                    retry_at=retry_at,
                    error=_without_recipients(str(exc), notice),
                )
                continue
            await asyncio.to_thread(
                store.finish_notice, notice.id, attempt=notice.attempt, retry_at=None, error=None
            )
            sent += 1
    return sent


def _retry_at(notice: ClaimedNotice, exc: DeliveryError, *, now: datetime) -> datetime | None:
    reason = _without_recipients(str(exc), notice)
    if exc.permanent or notice.attempt >= MAX_NOTICE_ATTEMPTS:
        log.warning("notice %d given up after %d attempts: %s", notice.id, notice.attempt, reason)
        return None
    delay: timedelta = min(LONGEST_RETRY, FIRST_RETRY * 2 ** (notice.attempt - 1))
    # A relay that cannot be reached is said once for all messages, by the transport.
    log.log(
        logging.DEBUG if exc.unreachable else logging.WARNING,
        "notice %d not sent (attempt %d), again in %s: %s",
        notice.id,
        notice.attempt,
        delay,
        reason,
    )
    return now + delay


def _without_recipients(text: str, notice: ClaimedNotice) -> str:
    """An SMTP error names the recipient; logs and the row keep no address."""
    for recipient in notice.mail.recipients:
        text = text.replace(recipient, "<recipient>")
    return text
