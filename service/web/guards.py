"""Guards around every web request, whatever route it reaches: a cap on the request body,
validation and error answers that echo nothing and carry the security headers, state-changing
requests only from the site's own pages, HEAD wherever GET is answered, and no redirect built
from the request's Host.

Pure ASGI middleware where a guard must see the raw request before any route does (the body,
the method, the Origin); exception handlers where the framework builds the answer.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings
from service.templating import template_environment

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# `none`: the visitor typed the address or used a bookmark; `same-site` is refused, since a
# sibling subdomain may be someone else's site.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 8058's one-click POST comes from the mail provider's servers, with whatever Origin
# they send: on an unsubscribe link, that body alone is let through.
UNSUBSCRIBE_PREFIX = "/u/"
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
# A one-click body is a few dozen bytes; the form parser gets no more room than that needs.
ONE_CLICK_MAX_FIELDS = 10
ONE_CLICK_MAX_PART_BYTES = 1024
# Enough to fix a request by; the list of a hostile body could otherwise be long.
MAX_LISTED_ERRORS = 20
MAX_LOCATION_PART_CHARS = 64
# Title and sentence of the small page of each status a page path may get (404 has its own).
PAGE_TEXTS = {
    405: ("Not available", "This address cannot be used that way."),
    413: (
        "Too much to send",
        "What was sent is larger than any form here sends; none of it was read.",
    ),
    500: (
        "Something went wrong",
        "The page could not be shown because of a problem on our side. Please try again in a "
        "few minutes.",
    ),
}
OTHER_PAGE_TEXT = ("Request not understood", "Go back, reload the page and send it again.")
# Said of a connection whose request body was left unread, or whose app failed: the server
# closes it, and a client that knows does not send its next request into the closed socket.
CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the cap. An HTTPException, so FastAPI's body
    reading passes it on as it is (any other error there becomes a 400)."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


def install_web_guards(app: FastAPI, *, settings: Settings, headers: Mapping[str, str]) -> None:
    """Put the guards around `app`. Call it after the app's own middleware is added: the body
    cap must be outermost, so that every reader of the body goes through it. `headers` are
    the security headers of a page, which answers made here carry themselves (a 500 is sent
    from outside every middleware of the app)."""
    answers = GuardAnswers(settings=settings, headers=dict(headers))
    # Starlette would answer `/healthz/` with a redirect to the request's own Host: a path
    # with a trailing slash is simply not a page.
    app.router.redirect_slashes = False
    app.add_exception_handler(RequestValidationError, answers.validation_error)
    app.add_exception_handler(HTTPException, answers.http_error)
    app.add_exception_handler(Exception, answers.server_error)
    # Each one added becomes the outermost: the body cap, then HEAD, then the Origin check.
    app.add_middleware(OriginGuard, answers=answers, public_base_url=settings.public_base_url)
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodySizeLimit, answers=answers, max_bytes=settings.max_request_body_bytes)


@dataclass(frozen=True)
class GuardAnswers:
    """The answers the guards give: JSON under /api/, a small page of the site elsewhere;
    both with the security headers."""

    settings: Settings
    headers: dict[str, str]

    def answer(
        self, path: str, status: int, detail: str, extra_headers: Mapping[str, str] | None = None
    ) -> Response:
        headers = {**self.headers, **(extra_headers or {})}
        if path.startswith(API_PREFIX):
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)
        context: dict[str, str] = {}
        if status == 404:
            name = "not_found.html"
        elif status == 403:
            name = "form_expired.html"
        else:
            title, message = PAGE_TEXTS.get(status, OTHER_PAGE_TEXT)
            name, context = "error.html", {"title": title, "message": message}
        html = (
            template_environment()
            .get_template(f"web/{name}")
            .render({"base_url": self.settings.public_base_url, **context})
        )
        return HTMLResponse(html, status_code=status, headers=headers)

    async def validation_error(self, _request: Request, exc: Exception) -> Response:
        """FastAPI's 422 lists each error's `input` and `ctx`: a 60 KB field came back whole.
        Here only where, what and which kind."""
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "loc": [
                    part if isinstance(part, int) else str(part)[:MAX_LOCATION_PART_CHARS]
                    for part in error.get("loc", ())
                ],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in list(exc.errors())[:MAX_LISTED_ERRORS]
        ]
        return JSONResponse({"detail": problems}, status_code=422, headers=self.headers)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """An error the framework raises (no such page, wrong method, body too large): a page
        of the site on page paths; JSON, as FastAPI gives it, under /api/."""
        assert isinstance(exc, HTTPException)
        path = request.url.path
        if path.startswith(API_PREFIX) or exc.status_code < 400:
            return await http_exception_handler(request, exc)
        return self.answer(path, exc.status_code, str(exc.detail), exc.headers)

    async def server_error(self, request: Request, _exc: Exception) -> Response:
        """The 500 answer. It is sent from outside the app's middleware, so it brings its own
        headers; the traceback goes to the server's log (the exception is raised on), never
        into the answer."""
        try:
            return self.answer(request.url.path, 500, "internal error", CLOSE)
        except Exception:  # a broken template must not leave the visitor with nothing
            log.exception("the error page could not be rendered")
            return PlainTextResponse(
                "Internal Server Error", status_code=500, headers={**self.headers, **CLOSE}
            )


# Relays' webhooks: an SNS message may be 256 KB, inside an envelope that escapes it as JSON.
WEBHOOK_PREFIX = "/webhooks/"
WEBHOOK_MAX_BODY_BYTES = 512 * 1024


class BodySizeLimit:
    """Refuses a request body larger than `max_bytes` (`WEBHOOK_MAX_BODY_BYTES` for the
    relays' webhooks, if larger) with 413, before anything parses it.

    A declared Content-Length over the cap is answered before the app runs, and the body is
    never read. A body without one (chunked) is counted as the app reads it: the read that
    passes the cap raises `BodyTooLarge`, and whatever the app makes of that, the answer is
    a 413. Either way the connection is closed after the answer rather than drained; so is
    it after any answer given before a chunked body was read to its end, which the server
    would otherwise go on reading, however long it is."""

    def __init__(self, app: ASGIApp, *, answers: GuardAnswers, max_bytes: int) -> None:
        self.app = app
        self.answers = answers
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes
        if scope["path"].startswith(WEBHOOK_PREFIX):
            max_bytes = max(max_bytes, WEBHOOK_MAX_BODY_BYTES)
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await self.too_large(scope, receive, send)
            return
        chunked = "transfer-encoding" in Headers(scope=scope)
        received = 0
        overflowed = started = replaced = read_to_end = False

        async def counted_receive() -> Message:
            nonlocal received, overflowed, read_to_end
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    overflowed = True
                    raise BodyTooLarge()
                read_to_end = not message.get("more_body", False)
            return message

        async def checked_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's own answer to a body over the cap is dropped
            if message["type"] == "http.response.start":
                started = True
                if overflowed:
                    # Whatever the app made of the overflow (a 400 from a parser, say): 413.
                    replaced = True
                    await self.too_large(scope, receive, send)
                    return
                if chunked and not read_to_end:
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted_receive, checked_send)
        except Exception:
            if not overflowed or started:
                raise
            await self.too_large(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.answers.answer(scope["path"], 413, "request body too large", CLOSE)
        await answer(scope, receive, send)


class HeadAsGet:
    """Answers HEAD as the same request's GET would be answered, without the body. FastAPI's
    routes take only the methods they list, so `HEAD /` was a 405; a GET changes nothing
    here (mail scanners open links), so running it for a HEAD is safe."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                # Content-Length stays that of the GET, as RFC 9110 has it for HEAD.
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class OriginGuard:
    """Refuses a state-changing request (any method but GET, HEAD and OPTIONS) that a browser
    says comes from another site: a `Sec-Fetch-Site` other than `same-origin` or `none`, or an
    `Origin` other than that of the public base URL. A request with neither header (curl, an
    old browser) is left to the CSRF token, as before. The check runs before any route, so
    nothing is read or changed for a refused request.

    `Origin: null` counts as foreign unless `Sec-Fetch-Site` says `same-origin`: the pages'
    `Referrer-Policy: no-referrer` makes browsers send `null` even on the site's own form
    POSTs (Fetch standard), and a browser that sends Sec-Fetch-Site sets it exactly, whatever
    the referrer policy. Go's `http.CrossOriginProtection` judges the two headers the same way.
    """

    def __init__(self, app: ASGIApp, *, answers: GuardAnswers, public_base_url: str) -> None:
        self.app = app
        self.answers = answers
        self.public_origin = origin_of(public_base_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or not self.is_foreign(Headers(scope=scope))
        ):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] == "POST" and path.startswith(UNSUBSCRIBE_PREFIX):
            # The body was capped outside this guard, so reading it whole is bounded.
            body = await _read_body(receive)
            if await _is_one_click(scope, body):
                await self.app(scope, _replay(body, receive), send)
                return
        refused = self.answers.answer(path, 403, "cross-origin request refused")
        await refused(scope, receive, send)

    def is_foreign(self, headers: Headers) -> bool:
        fetch_sites = [site.strip().lower() for site in headers.getlist("sec-fetch-site")]
        if any(site not in OWN_FETCH_SITES for site in fetch_sites):
            return True
        for value in headers.getlist("origin"):
            origin = origin_of(value)
            if origin is None and fetch_sites:
                continue  # `null` under no-referrer; Sec-Fetch-Site has spoken for it
            if origin is None or origin != self.public_origin:
                return True
        return False


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL or Origin header; None for anything else,
    `null` included."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not (value.strip().isascii() and value.strip().isdigit()):
        return None  # the server refuses a malformed one before the app sees it
    return int(value)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then waits on the connection (for its end)."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


async def _is_one_click(scope: Scope, body: bytes) -> bool:
    """Whether `body` is RFC 8058's `List-Unsubscribe=One-Click`, read by the same form parser
    as the route's, urlencoded or multipart."""

    async def no_more() -> Message:
        return {"type": "http.disconnect"}

    request = Request(scope, _replay(body, no_more))
    try:
        form = await request.form(
            max_files=0, max_fields=ONE_CLICK_MAX_FIELDS, max_part_size=ONE_CLICK_MAX_PART_BYTES
        )
    except HTTPException:
        return False  # not a form the parser can read: not a one-click POST either
    try:
        return form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    finally:
        await form.close()
