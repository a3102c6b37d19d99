"""A subscriber's archive (`/archive/…`, the list of their issues a page at a time) and its Atom
feed (`/feed/…`), answered 304 when the reader's copy is current. Each issue's own copy is
`/a/…` (link_pages)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from service.signup.archive import ArchivePageNotFound, archive_page
from service.signup.feed import subscriber_feed
from service.signup.tokens import InvalidToken
from service.web.deps import ClockDep, PagesDep, SettingsDep, StoreDep

FEED_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
# One reader's feed: their feed reader may keep it but asks again on every poll (answered 304
# while it is current); no shared cache may keep it.
FEED_CACHE_CONTROL = "private, no-cache"
# Far more pages than any archive has; a longer number is no page of it.
MAX_PAGE_DIGITS = 6

router = APIRouter(include_in_schema=False)


@router.get("/archive/{token}", response_class=HTMLResponse)
async def archive_list(
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    now: ClockDep,
    page: str = "1",
) -> HTMLResponse:
    """A page of the archive; a page number that is not one of its pages is a 404 (the link
    is checked first, so a bad link gets the same page whatever the number)."""
    number = int(page) if page.isascii() and page.isdigit() and len(page) <= MAX_PAGE_DIGITS else 0
    try:
        archive = await run_in_threadpool(
            archive_page, store, token, number=number, settings=settings, now=now()
        )
    except InvalidToken:
        return pages.invalid_link()
    except ArchivePageNotFound:
        return pages.render("not_found.html", status=404)
    return pages.render("archive.html", {"archive": archive})


@router.get("/feed/{token}")
async def archive_feed(
    request: Request,
    token: str,
    pages: PagesDep,
    settings: SettingsDep,
    store: StoreDep,
    now: ClockDep,
) -> Response:
    try:
        feed = await run_in_threadpool(subscriber_feed, store, token, settings=settings, now=now())
    except InvalidToken:
        return pages.invalid_link()
    headers = {
        "ETag": feed.etag,
        "Last-Modified": format_datetime(feed.last_modified.astimezone(UTC), usegmt=True),
        "Cache-Control": FEED_CACHE_CONTROL,
    }
    if is_not_modified(
        request.headers.getlist("if-none-match"),
        request.headers.get("if-modified-since"),
        etag=feed.etag,
        last_modified=feed.last_modified,
    ):
        return Response(status_code=304, headers=headers)
    return Response(feed.body, media_type=FEED_MEDIA_TYPE, headers=headers)


def is_not_modified(
    if_none_match: Sequence[str],
    if_modified_since: str | None,
    *,
    etag: str,
    last_modified: datetime,
) -> bool:
    """Whether the client's copy is current (RFC 9110, 13.1.2 and 13.1.3): If-None-Match
    decides when sent (weak comparison, as for a GET); otherwise If-Modified-Since, to the
    second. A date that cannot be read is ignored, as the RFC says."""
    if if_none_match:
        tags = {
            tag.strip().removeprefix("W/") for value in if_none_match for tag in value.split(",")
        }
        return "*" in tags or etag in tags
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return last_modified.replace(microsecond=0) <= since
