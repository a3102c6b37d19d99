"""The JSON API under /api/, over the same service functions as the pages, and /healthz."""

import logging
import time
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, UnknownSubscriber
from service.models import Subscriber, Vote
from service.settings import Settings
from service.signup.feedback import record_feedback
from service.signup.subscriptions import (
    confirm_signup,
    request_fresh_manage_link,
    request_signup,
    unsubscribe_with_link,
    update_preferences,
)
from service.signup.tokens import InvalidToken, TokenExpired
from service.store import Store
from service.web.deps import (
    Clock,
    ClockDep,
    LimiterDep,
    SettingsDep,
    StateDep,
    StoreDep,
    VisitorDep,
    manage_link_subscriber,
)
from service.web.forms import (
    AcceptedOut,
    ConfirmIn,
    PreferencesIn,
    SignupIn,
    StatusOut,
    SubscriptionOut,
    api_preferences,
    subscription_out,
)
from service.web.notices import answer_no_sooner_than, send_after_response

log = logging.getLogger(__name__)

EXPIRED_LINK_DETAIL = "link expired: POST its token to /api/manage-link for a fresh one by email"
LINK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Link not valid"},
    410: {"description": "Manage link expired: POST /api/manage-link for a fresh one"},
}

router = APIRouter()


class FeedbackIn(BaseModel):
    """A verdict on the paper of a digest's feedback link: its token (the `/f/` path's last
    part) and like, dislike or null (no verdict)."""

    token: str = Field(max_length=512)
    vote: Vote | None


class FeedbackOut(BaseModel):
    paper_id: str
    vote: Vote | None
    previous: Vote | None = Field(description="The verdict replaced: what an undo restores.")


async def managed(token: str, *, store: Store, settings: Settings, now: Clock) -> Subscriber:
    """The subscriber of a live manage link, or the API's answer to a link that is not."""
    try:
        return await manage_link_subscriber(token, store=store, settings=settings, now=now)
    except TokenExpired as exc:
        raise HTTPException(410, detail=EXPIRED_LINK_DETAIL) from exc
    except InvalidToken as exc:
        raise HTTPException(400, detail="link not valid") from exc


@router.post("/api/signup", status_code=202, tags=["api"])
async def api_signup(
    body: SignupIn,
    background: BackgroundTasks,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> AcceptedOut:
    """Sign up; the answer is the same whatever the address's state (no enumeration)."""
    started = time.monotonic()
    preferences = api_preferences(body, settings=settings)
    try:
        mail = await run_in_threadpool(
            request_signup,
            store,
            limiter,
            body.email,
            preferences,
            origin=visitor.origin("api signup"),
            settings=settings,
            now=now(),
        )
    except InvalidInput as exc:
        raise HTTPException(422, detail="invalid email address") from exc
    if mail is not None:
        background.add_task(send_after_response, mail, store=store, settings=settings, now=now)
    await answer_no_sooner_than(started, settings=settings)
    return AcceptedOut()


@router.post("/api/confirm", tags=["api"], responses={400: {"description": "Link not valid"}})
async def api_confirm(
    body: ConfirmIn, settings: SettingsDep, store: StoreDep, visitor: VisitorDep, now: ClockDep
) -> SubscriptionOut:
    try:
        subscriber = await run_in_threadpool(
            confirm_signup,
            store,
            body.token,
            origin=visitor.origin("api confirm"),
            settings=settings,
            now=now(),
        )
    except (InvalidToken, UnknownSubscriber) as exc:
        raise HTTPException(400, detail="link not valid") from exc
    return subscription_out(subscriber)


@router.post("/api/manage-link", status_code=202, tags=["api"], responses=LINK_ERRORS)
async def api_manage_link(
    body: ConfirmIn,
    background: BackgroundTasks,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    now: ClockDep,
) -> StatusOut:
    """Mail a fresh manage link to the subscriber of a manage link, expired or not."""
    try:
        mail = await run_in_threadpool(
            request_fresh_manage_link, store, limiter, body.token, settings=settings, now=now()
        )
    except InvalidToken as exc:
        raise HTTPException(400, detail="link not valid") from exc
    if mail is not None:
        background.add_task(send_after_response, mail, store=store, settings=settings, now=now)
    return StatusOut(status="check-your-inbox")


@router.get("/api/preferences/{token}", tags=["api"], responses=LINK_ERRORS)
async def api_preferences_get(
    token: str, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> SubscriptionOut:
    """The subscription a manage token names."""
    return subscription_out(await managed(token, store=store, settings=settings, now=now))


@router.put("/api/preferences/{token}", tags=["api"], responses=LINK_ERRORS)
async def api_preferences_put(
    token: str, body: PreferencesIn, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> SubscriptionOut:
    """Replace the preferences; the next issue follows them."""
    subscriber = await managed(token, store=store, settings=settings, now=now)
    preferences = api_preferences(body, settings=settings)
    updated = await run_in_threadpool(update_preferences, store, subscriber.id, preferences)
    return subscription_out(updated)


@router.post("/api/unsubscribe/{token}", tags=["api"])
async def api_unsubscribe(
    token: str, settings: SettingsDep, store: StoreDep, visitor: VisitorDep, now: ClockDep
) -> StatusOut:
    """Idempotent: unsubscribing twice still answers unsubscribed. The link of someone
    erased is not valid any more."""
    try:
        await run_in_threadpool(
            unsubscribe_with_link,
            store,
            token,
            origin=visitor.origin("api unsubscribe"),
            settings=settings,
            now=now(),
        )
    except InvalidToken as exc:
        raise HTTPException(400, detail="link not valid") from exc
    return StatusOut(status="unsubscribed")


@router.post("/api/feedback", tags=["api"], responses={400: {"description": "Link not valid"}})
async def api_feedback(
    body: FeedbackIn, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> FeedbackOut:
    """Record a 👍/👎 from a digest (idempotent; the other verdict replaces it; null takes it
    back). Answers with the verdict now held and the one it replaced."""
    try:
        recorded = await run_in_threadpool(
            record_feedback, store, body.token, body.vote, settings=settings, now=now()
        )
    except InvalidToken as exc:
        raise HTTPException(400, detail="link not valid") from exc
    return FeedbackOut(
        paper_id=recorded.target.paper_id, vote=recorded.target.vote, previous=recorded.previous
    )


@router.get("/healthz", tags=["ops"])
async def healthz(state: StateDep) -> JSONResponse:
    """The database answers; and Redis, when one is configured."""
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(state.store.ping)
        checks["database"] = "ok"
    except Exception as exc:  # any failure of the database is a failed check
        log.warning("health check: database: %s", exc)
        checks["database"] = "unreachable"
    if state.redis_limiter is None:
        checks["redis"] = "not configured"
    else:
        reachable = await run_in_threadpool(state.redis_limiter.ping)
        checks["redis"] = "ok" if reachable else "unreachable"
    healthy = all(value in ("ok", "not configured") for value in checks.values())
    return JSONResponse(checks, status_code=200 if healthy else 503)
