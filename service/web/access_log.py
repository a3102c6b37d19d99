"""One log line per web request: its method, its route template (`/u/{token}`, never the path the
visitor sent: that holds the link's token), its status and its duration, under its request id.

The request id is the one in the request's X-Request-ID when a proxy in front gave a sane one
(letters, digits and `._:-`, at most 128), so that the proxy's line and this one can be put
together; otherwise one made here. Either way it goes back in the answer's X-Request-ID, and
every line logged while the request is answered carries it (`service.observability.logs`).

uvicorn's own access log stays off (`paperwire serve`): it writes the raw path.
"""

import logging
import re
import time
import uuid
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match, Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.logs import FIELDS, log_context

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# A path no route takes: it may be anything a visitor typed, so it is never written.
UNMATCHED = "unmatched"
ROUTE_SEEN = "paperwire.route_seen"


class AccessLog:
    """Pure ASGI, outermost of the app's own middleware, so that it sees every answer the app
    gives, the guards' 413 and 403 included. An exception that escapes the app is answered
    500 by Starlette outside it: logged here as 500, without the X-Request-ID header."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(Headers(scope=scope))
        # Shared with the copies of the scope that inner layers make (HEAD is answered as a
        # GET in a copy), where the route is found.
        seen = RouteSeen()
        scope[ROUTE_SEEN] = seen
        # Before the app runs: a mount rewrites the scope's paths as it passes it on.
        top_level = top_level_template(self.router, scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                milliseconds = (time.perf_counter() - started) * 1000
                method = scope["method"]
                route = seen.template or route_template(scope, top_level=top_level)
                log.info(
                    "%s %s %d %.1f ms",
                    method,
                    route,
                    status,
                    milliseconds,
                    extra={
                        FIELDS: {
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_ms": round(milliseconds, 1),
                        }
                    },
                )


@dataclass
class RouteSeen:
    template: str | None = None


async def note_route(request: Request) -> None:
    """A dependency of every route (`create_app`): tells the request's line which route took
    it, from inside, where the router has put it in the request's scope."""
    seen = request.scope.get(ROUTE_SEEN)
    path = getattr(request.scope.get("route"), "path", None)
    if isinstance(seen, RouteSeen) and isinstance(path, str):
        seen.template = path


def request_id_of(headers: Headers) -> str:
    given = headers.get(REQUEST_ID_HEADER, "")
    if SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def route_template(scope: Scope, *, top_level: str | None) -> str:
    """For a request no route's dependency saw: the route the router found for its path
    though not for its method (a 405), else a route of the app's own that took it (the
    static folder, /openapi.json), else UNMATCHED."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return top_level or UNMATCHED


def top_level_template(router: Router, scope: Scope) -> str | None:
    """The template of a route added to the app itself rather than by a router it includes:
    `/static/{path}` for the mounted folder."""
    for route in router.routes:
        if isinstance(route, Mount | Route) and route.matches(scope)[0] is Match.FULL:
            return f"{route.path}/{{path}}" if isinstance(route, Mount) else route.path
    return None
