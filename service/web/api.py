"""The JSON API under /api/, over the same service functions as the pages, and /healthz."""

import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from fastapi import APIRouter, BackgroundTasks, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, UnknownSubscriber
from service.models import Subscriber, UnsubscribeChannel, Vote
from service.settings import Settings
from service.signup.feedback import record_feedback
from service.signup.limits import WindowLimiter
from service.signup.seeds import MAX_PAPER_LINES, like_papers
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
    Visitor,
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
    resolve_paper_lines,
    subscription_out,
    with_liked,
)
from service.web.notices import answer_no_sooner_than, send_after_response

log = logging.getLogger(__name__)

EXPIRED_LINK_DETAIL = "link expired: POST its token to /api/manage-link for a fresh one by email"
LINK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Link not valid"},
    410: {"description": "Manage link expired: POST /api/manage-link for a fresh one"},
}
LIKED_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Not valid, or a paper in `liked` was not found (named in `detail`)"},
    503: {"description": "arXiv could not be asked about a paper in `liked`: try again later"},
}
# How long to wait before asking again when arXiv could not be asked (its lookups are
# counted per minute).
LOOKUP_RETRY_AFTER_SECONDS = 60

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


async def resolved_likes(
    lines: Sequence[str],
    *,
    store: Store,
    settings: Settings,
    limiter: WindowLimiter,
    visitor: Visitor,
    now: Clock,
    known: Collection[str] = (),
) -> tuple[str, ...]:
    """The ids of the papers `liked` names, or the API's answer naming those it could not
    find (422), or could not look up on arXiv now (503)."""
    typed = [line.strip() for line in lines if line.strip()]
    known_ids = set(known)
    if len([line for line in typed if line not in known_ids]) > MAX_PAPER_LINES:
        raise HTTPException(422, detail=f"liked: up to {MAX_PAPER_LINES} new papers at a time")
    resolved = await resolve_paper_lines(
        typed,
        store=store,
        settings=settings,
        limiter=limiter,
        client_key=visitor.ip,
        now=now(),
        known=known_ids,
    )
    if resolved.problems:
        detail = "liked: " + " ".join(resolved.problems)
        if resolved.lookup_failed:
            retry = {"Retry-After": str(LOOKUP_RETRY_AFTER_SECONDS)}
            raise HTTPException(503, detail=detail, headers=retry)
        raise HTTPException(422, detail=detail)
    return resolved.paper_ids


@router.post("/api/signup", status_code=202, tags=["api"], responses=LIKED_ERRORS)
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
    liked = await resolved_likes(
        body.liked, store=store, settings=settings, limiter=limiter, visitor=visitor, now=now
    )
    try:
        mail = await run_in_threadpool(
            request_signup,
            store,
            limiter,
            body.email,
            with_liked(preferences, liked),
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
    return subscription_out(subscriber, settings=settings)


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
    subscriber = await managed(token, store=store, settings=settings, now=now)
    return subscription_out(subscriber, settings=settings)


@router.put("/api/preferences/{token}", tags=["api"], responses={**LINK_ERRORS, **LIKED_ERRORS})
async def api_preferences_put(
    token: str,
    body: PreferencesIn,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> SubscriptionOut:
    """Replace the preferences; the next issue follows them. The papers in `liked` join
    those liked before; no paper liked or disliked before is dropped."""
    subscriber = await managed(token, store=store, settings=settings, now=now)
    preferences = api_preferences(body, settings=settings)
    interests = subscriber.interests
    liked = await resolved_likes(
        body.liked,
        store=store,
        settings=settings,
        limiter=limiter,
        visitor=visitor,
        now=now,
        known=(*interests.liked, *interests.disliked),
    )
    await run_in_threadpool(update_preferences, store, subscriber.id, preferences)
    await run_in_threadpool(like_papers, store, subscriber.id, liked)
    updated = await run_in_threadpool(store.get_subscriber, subscriber.id)
    return subscription_out(updated, settings=settings)


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
            channel=UnsubscribeChannel.API,
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
