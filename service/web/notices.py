"""The web process's share in sending the notices its requests store (a confirmation link, a
fresh manage link): each right after its response, those left unsent by a sweep; and a floor
under a signup's answer, so that its timing never tells whether a notice was made."""

import asyncio
import logging
import time

from service.mail.wire import OutgoingMail
from service.settings import Settings
from service.signup.notices import send_notices
from service.store import Store
from service.web.deps import Clock

log = logging.getLogger(__name__)


async def send_after_response(
    mail: OutgoingMail, *, store: Store, settings: Settings, now: Clock
) -> None:
    """After the response, so the visitor's wait never tells whether mail went out. The
    mail is stored already: if this fails or the process dies, the sweep sends it."""
    try:
        await send_notices(store, settings=settings, now=now, message_id=mail.message_id)
    except OSError as exc:
        log.warning("a stored notice was not sent now, the sweep retries it: %s", exc)


async def send_notices_left_unsent(store: Store, *, settings: Settings, now: Clock) -> None:
    """At start and then now and again: the emails a process that died mid-send, or a
    relay that was down, left unsent (see `service.signup.notices`)."""
    while True:
        try:
            await send_notices(store, settings=settings, now=now)
        except Exception:  # the next round tries again; the web app must keep answering
            log.exception("sending stored notices failed")
        await asyncio.sleep(settings.notice_sweep_seconds)


async def answer_no_sooner_than(started: float, *, settings: Settings) -> None:
    """A new address costs a write and a composed email, a known one a read: without
    this floor the difference (a few milliseconds) would tell them apart."""
    remaining = settings.signup_answer_seconds - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
