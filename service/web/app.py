"""The web app: signup, confirm, manage, unsubscribe and archive pages, and a JSON API.

Thin over `service.signup.subscriptions`: each route reads its input, calls one service function and
turns the result or the domain error into a page. GETs never change anything (mail scanners
open links); every form POST carries a CSRF token bound to a cookie, except RFC 8058's
one-click unsubscribe, which by design comes with no cookies and no token.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from service.errors import InvalidInput, UnknownSubscriber
from service.mail.wire import OutgoingMail
from service.models import Frequency, Subscriber, SubscriptionPreferences
from service.settings import TEMPLATES_DIR, Settings
from service.signup.addresses import normalise_email
from service.signup.archive import IssueNotFound, archived_issue_html
from service.signup.limits import MemoryWindowLimiter, RedisWindowLimiter, WindowLimiter
from service.signup.links import subscriber_for_link
from service.signup.notices import send_notices
from service.signup.subscriptions import (
    RequestOrigin,
    confirm_signup,
    erase_subscriber,
    export_subscriber,
    pending_signup,
    request_fresh_manage_link,
    request_signup,
    set_paused,
    unsubscribe_with_link,
    update_preferences,
)
from service.signup.tokens import InvalidToken, TokenExpired, TokenPurpose, make_token, read_token
from service.store import Store
from service.templating import template_environment
from service.web.forms import (
    AcceptedOut,
    ConfirmIn,
    PreferencesIn,
    SignupIn,
    StatusOut,
    SubscriptionOut,
    api_preferences,
    default_form_values,
    form_values,
    read_form,
    read_preferences_form,
    subscription_out,
    time_zone_names,
)
from service.web.guards import install_web_guards

log = logging.getLogger(__name__)

CSRF_COOKIE = "paperwire_csrf"
CSRF_FIELD = "csrf_token"
# Long enough to fill in a form after a coffee; a stale form just asks to be sent again.
CSRF_MAX_AGE = timedelta(hours=12)
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ONE_CLICK = "One-Click"
EXPIRED_LINK_DETAIL = "link expired: POST its token to /api/manage-link for a fresh one by email"

# Pages load only their own stylesheet and script: no inline code, nothing from elsewhere.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# An archived issue is the email's HTML, whose CSS is inline by design; it runs no script.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Links carry tokens: no page may hand its URL to another site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(
    settings: Settings, *, store: Store | None = None, limiter: WindowLimiter | None = None
) -> FastAPI:
    """The app over `store` (one from settings if none is given, closed on shutdown)."""
    owned_store = store is None
    app_store = store if store is not None else Store(settings.database_url)
    redis_limiter = RedisWindowLimiter(settings.redis_url) if settings.redis_url else None
    app_limiter: WindowLimiter = limiter or redis_limiter or MemoryWindowLimiter()
    trusted = [ipaddress.ip_network(entry, strict=False) for entry in settings.trusted_proxies]
    secure_cookie = settings.public_base_url.startswith("https://")

    async def send_notices_left_unsent() -> None:
        """At start and then now and again: the emails a process that died mid-send, or a
        relay that was down, left unsent (see `service.signup.notices`)."""
        while True:
            try:
                await send_notices(app_store, settings=settings, now=now)
            except Exception:  # the next round tries again; the web app must keep answering
                log.exception("sending stored notices failed")
            await asyncio.sleep(settings.notice_sweep_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(send_notices_left_unsent())
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        if redis_limiter is not None:
            redis_limiter.close()
        if owned_store:
            app_store.close()

    # No /docs or /redoc: they load scripts from a CDN, which the pages' CSP refuses.
    app = FastAPI(
        title="Paperwire",
        summary="Signup and self-service for the Paperwire digest.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=TEMPLATES_DIR / "web" / "static"), name="static")

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        if not request.url.path.startswith("/static/"):
            # Pages show a subscriber's data and carry tokens: never kept by a shared cache.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # After the middleware above, so that the body cap is outermost (see web_guards).
    page_headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": PAGE_CSP,
        "Cache-Control": "no-store",
    }
    install_web_guards(app, settings=settings, headers=page_headers)

    def now() -> datetime:
        return datetime.now(UTC)

    def origin(request: Request, via: str) -> RequestOrigin:
        peer = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for")
        return RequestOrigin(
            ip=client_address(peer, forwarded, trusted=trusted),
            user_agent=request.headers.get("user-agent"),
            via=via,
        )

    def csrf_cookie_of(request: Request) -> str:
        """The visitor's CSRF cookie value, or a new one to set."""
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if 16 <= len(value) <= 64 and value.isascii() else secrets.token_urlsafe(18)

    def page(
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        with_csrf: bool = False,
    ) -> HTMLResponse:
        full: dict[str, Any] = {"base_url": settings.public_base_url, **(context or {})}
        cookie = csrf_cookie_of(request) if with_csrf else None
        if cookie is not None:
            full["csrf_token"] = make_token(
                TokenPurpose.CSRF, cookie, secret_key=settings.secret_key.get_secret_value()
            )
        html = template_environment().get_template(f"web/{name}").render(full)
        response = HTMLResponse(html, status_code=status)
        if cookie is not None:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                max_age=int(CSRF_MAX_AGE.total_seconds()),
                httponly=True,
                samesite="strict",
                secure=secure_cookie,
            )
        return response

    def csrf_ok(request: Request, form: FormData) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        field = form.get(CSRF_FIELD)
        if not cookie or not isinstance(field, str):
            return False
        try:
            bound = read_token(
                TokenPurpose.CSRF, field, secret_keys=settings.secret_keys, max_age=CSRF_MAX_AGE
            )
        except InvalidToken:
            return False
        return secrets.compare_digest(bound, cookie)

    def stale_form(request: Request) -> HTMLResponse:
        return page(request, "form_expired.html", status=403)

    def invalid_link(request: Request) -> HTMLResponse:
        """One page for every link that does not work: tampered, truncated, expired, used,
        meant for something else or for someone erased. It says nothing about which."""
        return page(request, "link_invalid.html", status=400)

    async def answer_no_sooner_than(started: float) -> None:
        """A new address costs a write and a composed email, a known one a read: without
        this floor the difference (a few milliseconds) would tell them apart."""
        remaining = settings.signup_answer_seconds - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def send_mail(mail: OutgoingMail) -> None:
        """After the response, so the visitor's wait never tells whether mail went out. The
        mail is stored already: if this fails or the process dies, the sweep sends it."""
        try:
            await send_notices(app_store, settings=settings, now=now, message_id=mail.message_id)
        except OSError as exc:
            log.warning("a stored notice was not sent now, the sweep retries it: %s", exc)

    def form_context(values: Mapping[str, str], errors: Mapping[str, str]) -> dict[str, Any]:
        return {
            "values": values,
            "errors": errors,
            "time_zones": time_zone_names(),
            "weekdays": list(enumerate(WEEKDAY_NAMES)),
            "hours": list(range(24)),
        }

    # -- pages --------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def signup_page(request: Request) -> HTMLResponse:
        values = default_form_values(settings)
        context = form_context(values, {}) | {"autofill_zone": True}
        return page(request, "signup.html", context, with_csrf=True)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def signup_submit(request: Request, background: BackgroundTasks) -> HTMLResponse:
        started = time.monotonic()
        form = await read_form(request)
        outcome = read_preferences_form(form)
        values, errors = outcome.values, dict(outcome.errors)
        values["email"] = str(form.get("email", ""))[:320]
        if not csrf_ok(request, form):
            # Shown again with what was typed and a fresh token; nothing is stored or sent.
            stale = {"form": "This form was open too long. Check it and press Subscribe again."}
            context = form_context(values, stale) | {"autofill_zone": False}
            return page(request, "signup.html", context, status=403, with_csrf=True)
        try:
            normalise_email(
                values["email"], check_deliverability=settings.check_email_deliverability
            )
        except InvalidInput:
            errors["email"] = "Enter an email address like name@example.org."
        if errors or outcome.preferences is None:
            context = form_context(values, errors) | {"autofill_zone": False}
            return page(request, "signup.html", context, status=422, with_csrf=True)
        mail = await run_in_threadpool(
            request_signup,
            app_store,
            app_limiter,
            values["email"],
            outcome.preferences,
            origin=origin(request, "web signup form"),
            settings=settings,
            now=now(),
        )
        if mail is not None:
            background.add_task(send_mail, mail)
        await answer_no_sooner_than(started)
        return page(request, "check_inbox.html")

    @app.get("/c/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def confirm_page(request: Request, token: str) -> HTMLResponse:
        try:
            subscriber, preferences = await run_in_threadpool(
                pending_signup, app_store, token, settings=settings, now=now()
            )
        except (InvalidToken, UnknownSubscriber):
            return invalid_link(request)
        # What the button confirms is shown: exactly what was asked when this link was sent.
        context = {
            "email": subscriber.email,
            "preferences": preferences,
            "schedule": describe_schedule(preferences),
        }
        return page(request, "confirm.html", context, with_csrf=True)

    @app.post("/c/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def confirm_submit(request: Request, token: str) -> HTMLResponse:
        form = await read_form(request)
        if not csrf_ok(request, form):
            return stale_form(request)
        try:
            subscriber = await run_in_threadpool(
                confirm_signup,
                app_store,
                token,
                origin=origin(request, "web confirm page"),
                settings=settings,
                now=now(),
            )
        except (InvalidToken, UnknownSubscriber):
            return invalid_link(request)
        return page(request, "confirmed.html", {"email": subscriber.email})

    async def managed_subscriber(token: str) -> Subscriber:
        """The subscriber of a live manage link; raises `TokenExpired` or `InvalidToken`."""
        return await run_in_threadpool(
            subscriber_for_link,
            app_store,
            TokenPurpose.MANAGE,
            token,
            settings=settings,
            now=now(),
        )

    def expired_manage_link(request: Request, token: str) -> HTMLResponse:
        days = max(1, round(settings.manage_link_max_age_days))
        context = {"token": token, "days": days}
        return page(request, "manage_expired.html", context, status=410, with_csrf=True)

    @app.get("/m/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def manage_page(request: Request, token: str) -> HTMLResponse:
        try:
            subscriber = await managed_subscriber(token)
        except TokenExpired:
            return expired_manage_link(request, token)
        except InvalidToken:
            return invalid_link(request)
        return manage_view(request, subscriber, form_values(subscriber), {}, notice="")

    @app.post("/m/{token}/renew", response_class=HTMLResponse, include_in_schema=False)
    async def manage_link_renew(
        request: Request, token: str, background: BackgroundTasks
    ) -> HTMLResponse:
        """From the page of an expired manage link: a fresh one, mailed to the subscriber."""
        form = await read_form(request)
        if not csrf_ok(request, form):
            return stale_form(request)
        try:
            mail = await run_in_threadpool(
                request_fresh_manage_link,
                app_store,
                app_limiter,
                token,
                settings=settings,
                now=now(),
            )
        except InvalidToken:
            return invalid_link(request)
        if mail is not None:
            background.add_task(send_mail, mail)
        return page(request, "manage_link_sent.html")

    def manage_view(
        request: Request,
        subscriber: Subscriber,
        values: Mapping[str, str],
        errors: Mapping[str, str],
        *,
        notice: str,
        status: int = 200,
    ) -> HTMLResponse:
        context = form_context(values, errors) | {
            "subscriber": subscriber,
            "notice": notice,
            "autofill_zone": False,
        }
        return page(request, "manage.html", context, status=status, with_csrf=True)

    @app.post("/m/{token}", include_in_schema=False, response_model=None)
    async def manage_submit(request: Request, token: str) -> Response:
        form = await read_form(request)
        if not csrf_ok(request, form):
            return stale_form(request)
        try:
            subscriber = await managed_subscriber(token)
        except TokenExpired:
            return expired_manage_link(request, token)
        except InvalidToken:
            return invalid_link(request)
        action = form.get("action")
        via = "web manage page"
        if action == "save":
            outcome = read_preferences_form(form)
            if outcome.preferences is None:
                return manage_view(
                    request, subscriber, outcome.values, outcome.errors, notice="", status=422
                )
            updated = await run_in_threadpool(
                update_preferences, app_store, subscriber.id, outcome.preferences
            )
            notice = "Saved. Your next issue follows these settings."
            return manage_view(request, updated, form_values(updated), {}, notice=notice)
        if action in ("pause", "resume"):
            updated = await run_in_threadpool(
                set_paused,
                app_store,
                subscriber.id,
                paused=action == "pause",
                origin=origin(request, via),
                now=now(),
            )
            notice = "Paused: no issues until you resume." if action == "pause" else "Resumed."
            return manage_view(request, updated, form_values(updated), {}, notice=notice)
        if action == "export":
            data = await run_in_threadpool(export_subscriber, app_store, subscriber.id)
            return Response(
                json.dumps(data, ensure_ascii=False, indent=2),
                media_type="application/json",
                headers={"Content-Disposition": 'attachment; filename="paperwire-data.json"'},
            )
        if action == "erase":
            if form.get("confirm_erase") != "yes":
                errors = {"erase": "Tick the box to confirm that everything should be deleted."}
                return manage_view(
                    request, subscriber, form_values(subscriber), errors, notice="", status=422
                )
            await run_in_threadpool(
                erase_subscriber, app_store, subscriber.id, settings=settings, now=now()
            )
            return page(request, "erased.html")
        return page(request, "form_expired.html", status=400)

    @app.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        # The link is checked against its subscriber's row, and nothing is changed: scanners
        # open this link.
        try:
            await run_in_threadpool(
                subscriber_for_link,
                app_store,
                TokenPurpose.UNSUBSCRIBE,
                token,
                settings=settings,
                now=now(),
            )
        except InvalidToken:
            return invalid_link(request)
        return page(request, "unsubscribe.html", with_csrf=True)

    @app.post("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe_submit(request: Request, token: str) -> HTMLResponse:
        form = await read_form(request)
        one_click = form.get("List-Unsubscribe") == ONE_CLICK
        # RFC 8058: the mail client's POST has no cookie and no CSRF token; the unguessable
        # link is the credential. Anything else is the page's own form.
        if not one_click and not csrf_ok(request, form):
            return stale_form(request)
        via = "one-click (RFC 8058)" if one_click else "web unsubscribe page"
        try:
            await run_in_threadpool(
                unsubscribe_with_link,
                app_store,
                token,
                origin=origin(request, via),
                settings=settings,
                now=now(),
            )
        except InvalidToken:
            return invalid_link(request)
        return page(request, "unsubscribed.html")

    @app.get("/a/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def archive_page(request: Request, token: str) -> HTMLResponse:
        try:
            html = await run_in_threadpool(
                archived_issue_html, app_store, token, settings=settings, now=now()
            )
        except (InvalidToken, IssueNotFound, UnknownSubscriber):
            return invalid_link(request)
        return HTMLResponse(html, headers={"Content-Security-Policy": ARCHIVE_CSP})

    # -- JSON API -----------------------------------------------------------------------------

    @app.post("/api/signup", status_code=202, tags=["api"])
    async def api_signup(
        body: SignupIn, request: Request, background: BackgroundTasks
    ) -> AcceptedOut:
        """Sign up; the answer is the same whatever the address's state (no enumeration)."""
        started = time.monotonic()
        preferences = api_preferences(body, settings=settings)
        try:
            mail = await run_in_threadpool(
                request_signup,
                app_store,
                app_limiter,
                body.email,
                preferences,
                origin=origin(request, "api signup"),
                settings=settings,
                now=now(),
            )
        except InvalidInput as exc:
            raise HTTPException(422, detail="invalid email address") from exc
        if mail is not None:
            background.add_task(send_mail, mail)
        await answer_no_sooner_than(started)
        return AcceptedOut()

    @app.post("/api/confirm", tags=["api"], responses={400: {"description": "Link not valid"}})
    async def api_confirm(body: ConfirmIn, request: Request) -> SubscriptionOut:
        try:
            subscriber = await run_in_threadpool(
                confirm_signup,
                app_store,
                body.token,
                origin=origin(request, "api confirm"),
                settings=settings,
                now=now(),
            )
        except (InvalidToken, UnknownSubscriber) as exc:
            raise HTTPException(400, detail="link not valid") from exc
        return subscription_out(subscriber)

    async def managed(token: str) -> Subscriber:
        try:
            return await managed_subscriber(token)
        except TokenExpired as exc:
            raise HTTPException(410, detail=EXPIRED_LINK_DETAIL) from exc
        except InvalidToken as exc:
            raise HTTPException(400, detail="link not valid") from exc

    link_errors: dict[int | str, dict[str, Any]] = {
        400: {"description": "Link not valid"},
        410: {"description": "Manage link expired: POST /api/manage-link for a fresh one"},
    }

    @app.post("/api/manage-link", status_code=202, tags=["api"], responses=link_errors)
    async def api_manage_link(body: ConfirmIn, background: BackgroundTasks) -> StatusOut:
        """Mail a fresh manage link to the subscriber of a manage link, expired or not."""
        try:
            mail = await run_in_threadpool(
                request_fresh_manage_link,
                app_store,
                app_limiter,
                body.token,
                settings=settings,
                now=now(),
            )
        except InvalidToken as exc:
            raise HTTPException(400, detail="link not valid") from exc
        if mail is not None:
            background.add_task(send_mail, mail)
        return StatusOut(status="check-your-inbox")

    @app.get("/api/preferences/{token}", tags=["api"], responses=link_errors)
    async def api_preferences_get(token: str) -> SubscriptionOut:
        """The subscription a manage token names."""
        return subscription_out(await managed(token))

    @app.put("/api/preferences/{token}", tags=["api"], responses=link_errors)
    async def api_preferences_put(token: str, body: PreferencesIn) -> SubscriptionOut:
        """Replace the preferences; the next issue follows them."""
        subscriber = await managed(token)
        preferences = api_preferences(body, settings=settings)
        updated = await run_in_threadpool(update_preferences, app_store, subscriber.id, preferences)
        return subscription_out(updated)

    @app.post("/api/unsubscribe/{token}", tags=["api"])
    async def api_unsubscribe(token: str, request: Request) -> StatusOut:
        """Idempotent: unsubscribing twice still answers unsubscribed. The link of someone
        erased is not valid any more."""
        try:
            await run_in_threadpool(
                unsubscribe_with_link,
                app_store,
                token,
                origin=origin(request, "api unsubscribe"),
                settings=settings,
                now=now(),
            )
        except InvalidToken as exc:
            raise HTTPException(400, detail="link not valid") from exc
        return StatusOut(status="unsubscribed")

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        """The database answers; and Redis, when one is configured."""
        checks: dict[str, str] = {}
        try:
            await run_in_threadpool(app_store.ping)
            checks["database"] = "ok"
        except Exception as exc:  # any failure of the database is a failed check
            log.warning("health check: database: %s", exc)
            checks["database"] = "unreachable"
        if redis_limiter is None:
            checks["redis"] = "not configured"
        else:
            reachable = await run_in_threadpool(redis_limiter.ping)
            checks["redis"] = "ok" if reachable else "unreachable"
        healthy = all(value in ("ok", "not configured") for value in checks.values())
        return JSONResponse(checks, status_code=200 if healthy else 503)

    return app


def client_address(
    peer: str | None,
    forwarded_for: Sequence[str],
    *,
    trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy, in which case the
    right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries left of that
    are whatever the client chose to send, and are never believed."""

    def is_trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in trusted)

    if peer is None or not is_trusted(peer):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled chain: fall back to what the socket says
        if not is_trusted(hop):
            return hop
    return peer


def describe_schedule(preferences: SubscriptionPreferences) -> str:
    """ "Weekly on Wednesday at 07:00, Europe/Paris time", for a page."""
    if preferences.frequency is Frequency.WEEKLY:
        when = f"Weekly on {WEEKDAY_NAMES[preferences.weekday]}"
    else:
        when = "Daily"
    return f"{when} at {preferences.delivery_hour:02d}:00, {preferences.time_zone} time"
