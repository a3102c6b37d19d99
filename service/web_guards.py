"""Guards around every web request, whatever route it reaches: a cap on the request body,
validation and error answers that echo nothing and carry the security headers.

Pure ASGI middleware where a guard must see the raw request before any route does; exception
handlers where the framework builds the answer.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.emails import template_environment
from service.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
# Enough to fix a request by; the list of a hostile body could otherwise be long.
MAX_LISTED_ERRORS = 20
MAX_LOCATION_PART_CHARS = 64
# Title and sentence of the small page of each status a page path may get.
PAGE_TEXTS = {
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
    app.add_exception_handler(RequestValidationError, answers.validation_error)
    app.add_exception_handler(Exception, answers.server_error)
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
        title, message = PAGE_TEXTS.get(status, OTHER_PAGE_TEXT)
        context = {"title": title, "message": message}
        html = (
            template_environment()
            .get_template("web/error.html")
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


class BodySizeLimit:
    """Refuses a request body larger than `max_bytes` with 413, before anything parses it.

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
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
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
                if received > self.max_bytes:
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


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not (value.strip().isascii() and value.strip().isdigit()):
        return None  # the server refuses a malformed one before the app sees it
    return int(value)
