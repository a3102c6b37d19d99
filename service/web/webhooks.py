"""The relays' webhooks: POST /webhooks/ses (Amazon SES through SNS), /webhooks/postmark and
/webhooks/mailgun, each authenticated as its relay documents (`service.inbound.sns`,
`postmark`, `mailgun`), each report acted on by `apply_report`, the one path that changes a
subscription.

Every answer is a small JSON object, and none of them a 500:
- 404: that relay is not configured (its settings are empty);
- 401: the call is not shown to be the relay's, is too old, or was seen before (a replay);
  nothing is changed;
- 400: an authenticated call whose payload is not what the relay documents;
- 503 (502 for a subscription confirmation): Amazon could not be reached; SNS retries;
- 200: accepted, with how many reports it held and how many named a subscriber.

A call is noted (`remember_webhook_receipt`) once it is authenticated and read, before
anything is acted on; a call with nothing to act on is not. Log lines name the relay and the
reason, never an address or a token.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.inbound.mailgun import MailgunRefused, mailgun_reports, verified_token
from service.inbound.payloads import MalformedPayload, load_object
from service.inbound.postmark import is_postmark, postmark_call
from service.inbound.reports import Action, MailReport, apply_report
from service.inbound.ses import ses_reports
from service.inbound.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsRefused,
    SnsUnavailable,
    confirm_subscription,
    verify_sns_message,
)
from service.settings import Settings
from service.store import Store
from service.web.deps import ClockDep, SettingsDep, StateDep, StoreDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks")

# One keep for every relay, since the store forgets all receipts older than the keep of the
# latest call: a day at least, for Postmark's calls carry no time of their own and its
# retries come over hours; two maximum ages at least, to cover a signed call from the
# furthest future still accepted.
MIN_RECEIPT_KEEP = timedelta(days=1)
# RFC 9110: a 401 names the scheme, for a client that sends credentials only when asked.
POSTMARK_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Paperwire webhooks"'}


@router.post("/ses", include_in_schema=False)
async def ses_webhook(
    request: Request, state: StateDep, settings: SettingsDep, store: StoreDep, clock: ClockDep
) -> JSONResponse:
    if not settings.sns_topic_arns:
        return _answer(404, "not configured")
    now = clock()
    try:
        message = await verify_sns_message(
            await request.body(), settings=settings, now=now, certificates=state.sns_certificates
        )
    except SnsRefused as exc:
        return _refused("ses", str(exc))
    except SnsUnavailable as exc:
        log.warning("webhook ses: cannot verify now: %s", exc)
        return _answer(503, "cannot verify the signature now")
    reports: list[MailReport] = []
    if message.type == NOTIFICATION:
        try:
            reports = ses_reports(message.message)
        except MalformedPayload as exc:
            return _malformed("ses", exc)
        if not reports:
            return _answer(200, "nothing to act on")
    elif message.type != SUBSCRIPTION_CONFIRMATION:
        log.info("webhook ses: %s for a topic", message.type)
        return _answer(200, "noted")
    if not await _first_receipt(store, "ses", message.message_id, settings=settings, now=now):
        return _refused("ses", "replayed")
    if message.type == SUBSCRIPTION_CONFIRMATION:
        try:
            await confirm_subscription(message)
        except (SnsRefused, SnsUnavailable) as exc:
            log.warning(
                "webhook ses: the subscription could not be confirmed (%s); confirm it in the "
                "SNS console",
                exc,
            )
            return _answer(502, "subscription not confirmed")
        log.info("webhook ses: subscription to an accepted topic confirmed")
        return _answer(200, "subscription confirmed")
    return await _act_on(store, reports, settings=settings, now=now)


@router.post("/postmark", include_in_schema=False)
async def postmark_webhook(
    request: Request, settings: SettingsDep, store: StoreDep, clock: ClockDep
) -> JSONResponse:
    if not settings.postmark_webhook_password.get_secret_value():
        return _answer(404, "not configured")
    if not is_postmark(request.headers.get("authorization"), settings=settings):
        return _refused("postmark", "no valid basic authentication", POSTMARK_CHALLENGE)
    now = clock()
    try:
        call = postmark_call(load_object(await request.body()))
    except MalformedPayload as exc:
        return _malformed("postmark", exc)
    if call is None:
        return _answer(200, "nothing to act on")
    if not await _first_receipt(store, "postmark", call.receipt_id, settings=settings, now=now):
        return _refused("postmark", "replayed")
    return await _act_on(store, [call.report], settings=settings, now=now)


@router.post("/mailgun", include_in_schema=False)
async def mailgun_webhook(
    request: Request, settings: SettingsDep, store: StoreDep, clock: ClockDep
) -> JSONResponse:
    if not settings.mailgun_webhook_signing_key.get_secret_value():
        return _answer(404, "not configured")
    now = clock()
    try:
        payload = load_object(await request.body())
        token = verified_token(payload, settings=settings, now=now)
    except (MalformedPayload, MailgunRefused) as exc:
        return _refused("mailgun", str(exc))
    try:
        reports = mailgun_reports(payload)
    except MalformedPayload as exc:
        return _malformed("mailgun", exc)
    if not reports:
        return _answer(200, "nothing to act on")
    if not await _first_receipt(store, "mailgun", token, settings=settings, now=now):
        return _refused("mailgun", "replayed")
    return await _act_on(store, reports, settings=settings, now=now)


def receipt_keep(settings: Settings) -> timedelta:
    return max(MIN_RECEIPT_KEEP, 2 * timedelta(seconds=settings.webhook_max_age_seconds))


async def _first_receipt(
    store: Store, provider: str, receipt_id: str, *, settings: Settings, now: datetime
) -> bool:
    return await run_in_threadpool(
        store.remember_webhook_receipt,
        provider,
        receipt_id,
        now=now,
        keep=receipt_keep(settings),
    )


async def _act_on(
    store: Store, reports: Sequence[MailReport], *, settings: Settings, now: datetime
) -> JSONResponse:
    def apply_all() -> int:
        outcomes = [apply_report(store, report, settings=settings, now=now) for report in reports]
        return sum(outcome.action is not Action.UNMATCHED for outcome in outcomes)

    matched = await run_in_threadpool(apply_all)
    return _answer(200, "accepted", reports=len(reports), matched=matched)


def _refused(provider: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    log.info("webhook %s refused: %s", provider, reason)
    return _answer(401, "not authenticated", headers=headers)


def _malformed(provider: str, exc: MalformedPayload) -> JSONResponse:
    log.info("webhook %s: payload not understood: %s", provider, exc)
    return _answer(400, "payload not understood")


def _answer(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **counts: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, **counts}, status_code=status, headers=headers)
