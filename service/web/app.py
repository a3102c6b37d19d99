"""The web app: signup, confirm, manage, unsubscribe, archive, feed and feedback pages, a JSON
API, and the webhooks of the mail relays.

Thin over `service.signup.subscriptions`: each route reads its input, calls one service function and
turns the result or the domain error into a page. GETs never change anything (mail scanners
open links); every form POST carries a CSRF token bound to a cookie, except RFC 8058's
one-click unsubscribe, which by design comes with no cookies and no token.
"""

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from service.settings import TEMPLATES_DIR, Settings
from service.signup.limits import MemoryWindowLimiter, RedisWindowLimiter, WindowLimiter
from service.store import Store
from service.web import (
    api,
    archive_pages,
    feedback_pages,
    link_pages,
    profiles_api,
    signup_pages,
    webhooks,
)
from service.web.access_log import AccessLog, note_route
from service.web.deps import Clock, WebState, utc_now
from service.web.guards import install_web_guards
from service.web.metrics_page import install_metrics
from service.web.notices import send_notices_left_unsent

# Pages load only their own stylesheet and script: no inline code, nothing from elsewhere.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Links carry tokens: no page may hand its URL to another site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    limiter: WindowLimiter | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """The app over `store` (one from settings if none is given, closed on shutdown), telling
    the time by `clock`."""
    app_store = store if store is not None else Store(settings.database_url)
    redis_limiter = RedisWindowLimiter(settings.redis_url) if settings.redis_url else None
    state = WebState(
        settings=settings,
        store=app_store,
        owns_store=store is None,
        limiter=limiter or redis_limiter or MemoryWindowLimiter(),
        redis_limiter=redis_limiter,
        trusted_proxies=tuple(
            ipaddress.ip_network(entry, strict=False) for entry in settings.trusted_proxies
        ),
        clock=clock,
    )
    # No /docs or /redoc: they load scripts from a CDN, which the pages' CSP refuses.
    app = FastAPI(
        title="Paperwire",
        summary="Signup and self-service for the Paperwire digest.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(note_route)],
    )
    app.state.web = state
    app.mount("/static", StaticFiles(directory=TEMPLATES_DIR / "web" / "static"), name="static")
    app.middleware("http")(add_security_headers)
    # After the middleware above, so that the body cap is outermost (see web_guards).
    page_headers = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": PAGE_CSP,
        "Cache-Control": "no-store",
    }
    install_web_guards(app, settings=settings, headers=page_headers)
    # Outermost of all: its line tells every answer, the guards' refusals included.
    app.add_middleware(AccessLog, router=app.router)
    app.include_router(signup_pages.router)
    app.include_router(link_pages.router)
    app.include_router(archive_pages.router)
    app.include_router(feedback_pages.router)
    app.include_router(api.router)
    app.include_router(profiles_api.router)
    app.include_router(webhooks.router)
    install_metrics(app)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Sweeps stored notices while the app runs; closes what the app opened when it stops."""
    state: WebState = app.state.web
    sweeper = asyncio.create_task(
        send_notices_left_unsent(state.store, settings=state.settings, now=state.clock)
    )
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    if state.redis_limiter is not None:
        state.redis_limiter.close()
    if state.owns_store:
        state.store.close()


async def add_security_headers(
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
