"""The web app's `/metrics`, and the count and timing of every request by route template.

A request is labelled with the template of the route it reaches (`/u/{token}`), never with its
path: paths hold link tokens, each a key to someone's subscription. A path no route takes is
`unmatched`, as is a request a guard answers before any route is chosen (a body over the
cap, a cross-site form); a method outside the usual few is `other`.

Who may read `/metrics`: with `PAPERWIRE_METRICS_TOKEN` set, whoever sends it as a bearer
token; unset, only a client on this machine that came straight to the app, a loopback peer
that is not a trusted proxy and sent no forwarding header. A reverse proxy on the same machine
hands the app every visitor's request from loopback: such a request names its client in
`X-Forwarded-For` (or the proxy is in `PAPERWIRE_TRUSTED_PROXIES`), and is refused like any
other. Everyone refused gets the site's 404 page, as for a path that does not exist.
"""

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from time import perf_counter

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.delivery import DeliveryCollector
from service.observability.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS
from service.web.deps import IPNetwork, StateDep, WebState

UNMATCHED = "unmatched"
NOTE_KEY = "paperwire.route_note"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Headers a proxy adds to say whom it forwards for.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

router = APIRouter()


def install_metrics(app: FastAPI) -> None:
    """Count every request of `app` and answer `/metrics`. Call it once the app's other
    middleware is added: the count is then outermost, and takes in the answers the guards
    give themselves (a body over the cap, say), while the route is noted innermost, where the
    router has chosen it."""
    app.include_router(router)
    app.user_middleware.append(Middleware(RouteNote))
    app.add_middleware(RequestMetrics, routes=app.router.routes)
    state: WebState = app.state.web
    # Asks the app's clock at each scrape (a test may give the app another).
    app.state.delivery_collector = DeliveryCollector(
        state.store, state.settings, now=lambda: app.state.web.clock()
    )


@router.get("/metrics", include_in_schema=False)
async def metrics_page(request: Request, state: StateDep) -> Response:
    if not may_read_metrics(request, state):
        raise HTTPException(404)
    delivery: DeliveryCollector = request.app.state.delivery_collector
    # The collector queries the database and Redis: off the event loop.
    body = await run_in_threadpool(lambda: generate_latest(REGISTRY) + generate_latest(delivery))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def may_read_metrics(request: Request, state: WebState) -> bool:
    token = state.settings.metrics_token.get_secret_value()
    if token:
        return bearer_token_matches(request.headers.getlist("authorization"), token)
    peer = request.client.host if request.client else None
    forwarded = any(name in request.headers for name in FORWARDING_HEADERS)
    return not forwarded and is_direct_loopback(peer, trusted=state.trusted_proxies)


def bearer_token_matches(authorization: Sequence[str], token: str) -> bool:
    """Whether the one Authorization header is `Bearer <token>`. Compared as hashes, in
    constant time: neither the token's characters nor its length show in the timing."""
    if len(authorization) != 1:
        return False
    scheme, _, given = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given_hash = hashlib.sha256(given.strip().encode()).digest()
    return hmac.compare_digest(given_hash, hashlib.sha256(token.encode()).digest())


def is_direct_loopback(peer: str | None, *, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the socket's peer is this machine, and not a proxy the app believes."""
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback and not any(address in network for network in trusted)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The template of the app's own route or mount that takes `scope` (a route that takes
    the path but not the method counts: the answer is its 405). Routes of included routers
    are not in this list: the router notes those itself (`RouteNote`)."""
    partial: str | None = None
    for route in routes:
        if not isinstance(route, Route | Mount):
            continue
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path
        if match is Match.PARTIAL and partial is None:
            partial = route.path
    return partial


class RequestMetrics:
    """Counts each request by route template, method and status, and times it, whatever
    answers it: a route, a guard, or the error handler (a request that raises is a 500).

    The template is the one `RouteNote` found, else that of the app's own routes and mounts
    (`/static`), else `unmatched`. The note is a dict in the scope: a middleware that hands
    the app a copy of the scope (`HeadAsGet`) copies the reference, so the note comes back."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Matched before the app runs: a mount changes the scope's path on the way in.
        own_route = route_template(self.routes, scope)
        note: dict[str, str] = {}
        scope = {**scope, NOTE_KEY: note}
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        status = 500
        started = perf_counter()

        async def noted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        finally:
            route = note.get("route") or own_route or UNMATCHED
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(route, method).observe(perf_counter() - started)


class RouteNote:
    """Innermost: once the router has run, notes the template of the route it chose (the
    `route` it put in the scope) for `RequestMetrics`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            note = scope.get(NOTE_KEY)
            route = scope.get("route")
            if isinstance(note, dict) and isinstance(route, Route | Mount):
                note["route"] = route.path
