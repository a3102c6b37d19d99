"""👍 from a real digest in headless Chromium: a day's run mails the digest to the SMTP sink, its
HTML part is shown from 127.0.0.1 as a webmail would show it, and the reader clicks "More like
this", presses the button, sees the thanks page and undoes it, against the app under uvicorn.
Screenshots of each page at phone and desktop widths go to
var/test-artifacts/screenshots/<test name>/."""

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.delivery.pipeline import RunSummary, run_day
from service.models import DeliveryStatus
from service.settings import Settings
from service.store import Store
from tests.support.browser import PHONE, BrowserPages, Screenshots, ServeFolder
from tests.support.factories import (
    BACKGROUND_PAPERS,
    NOW,
    TODAY,
    add_subscriber,
    make_paper,
    make_settings,
)
from tests.support.services import free_port, wait_until
from tests.support.smtp_sink import SmtpSink
from tests.support.web_server import serve

if TYPE_CHECKING:
    from playwright.sync_api import Page

PAPERS = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(
        id="2511.00002",
        title="Discrete diffusion models for text",
        abstract="Diffusion models over discrete tokens generate text in parallel.",
        url="https://arxiv.org/abs/2511.00002",
        upvotes=3,
    ),
]


@pytest.fixture
def app(sqlite_store: Store, smtp_sink: SmtpSink) -> Iterator[Settings]:
    """The app under uvicorn on 127.0.0.1, mailing to the sink; its settings."""
    port = free_port()
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{port}", mail_url=smtp_sink.url, redis_url=""
    )
    for _ in serve(settings, sqlite_store, port):
        yield settings


def run_the_day(store: Store, settings: Settings) -> RunSummary:
    # In a thread of its own: Playwright's sync API keeps an event loop in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(
            asyncio.run, run_day(store, issue_date=TODAY, settings=settings, now=lambda: NOW)
        ).result()


def fits_the_phone(page: "Page") -> bool:
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width <= PHONE.width


def test_a_reader_clicks_more_like_this_in_a_digest_and_the_vote_is_recorded(
    new_page: BrowserPages,
    screenshots: Screenshots,
    static_server: ServeFolder,
    smtp_sink: SmtpSink,
    sqlite_store: Store,
    app: Settings,
    tmp_path: Path,
) -> None:
    store = sqlite_store
    alice = add_subscriber(store)
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers(PAPERS, now=NOW - timedelta(hours=3))
    assert run_the_day(store, app).outcomes == {DeliveryStatus.SENT: 1}
    wait_until(lambda: len(smtp_sink.messages) == 1, timeout=10, what="the digest")
    html = smtp_sink.messages[0].message.get_body(preferencelist=("html",))
    assert html is not None
    folder = tmp_path / "webmail"
    folder.mkdir()
    (folder / "digest.html").write_text(html.get_content(), encoding="utf-8")
    page = new_page(PHONE)

    page.goto(static_server(folder).url("digest.html"))
    first_title = page.locator("h2.title").first.inner_text()
    likes = page.get_by_role("link", name="👍 More like this", exact=True)
    dislikes = page.get_by_role("link", name="👎 Less like this", exact=True)
    assert likes.count() == dislikes.count() == len(PAPERS)
    assert likes.first.is_visible() and dislikes.first.is_visible()
    assert fits_the_phone(page)
    screenshots(page, "1-digest")

    with page.expect_navigation():
        likes.first.click()
    assert page.url.startswith(f"{app.public_base_url}/f/") and page.url.endswith("?vote=like")
    assert page.locator(".paper-title").inner_text() == first_title
    button = page.get_by_role("button", name="👍 More like this")
    assert button.is_visible() and page.locator("form button").count() == 1
    assert fits_the_phone(page)
    screenshots(page, "2-feedback")
    # Opening the link recorded nothing: the button does.
    assert store.get_subscriber(alice.id).interests.liked == ()

    button.click()
    page.wait_for_selector("text=Thanks: more like this")
    assert fits_the_phone(page)
    screenshots(page, "3-thanks")
    delivery = store.get_delivery(alice.id, TODAY)
    assert delivery is not None
    liked = store.get_subscriber(alice.id).interests.liked
    assert liked == (delivery.paper_ids[0],)

    page.get_by_role("button", name="Undo").click()
    page.wait_for_selector("h1:text('Undone')")
    screenshots(page, "4-undone")
    assert store.get_subscriber(alice.id).interests.liked == ()
