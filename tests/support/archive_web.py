"""A reader's archive and feed served over real HTTP for a test: uvicorn on 127.0.0.1 over the
test's store, mail going to the SMTP sink, and feedparser reading the feed as a feed reader
does."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import feedparser
import httpx

from service.delivery.pipeline import RunSummary, run_day
from service.models import Subscriber
from service.settings import Settings
from service.signup.links import archive_list_url, feed_url
from service.store import Store
from tests.support.factories import BACKGROUND_PAPERS, NOW, TODAY, make_paper, make_settings
from tests.support.services import free_port
from tests.support.smtp_sink import SmtpSink
from tests.support.web_server import serve

PAPERS = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(
        id="2511.00002",
        title="Discrete diffusion models for <text> & code",
        abstract="Diffusion models over discrete tokens generate text in parallel.",
        url="https://arxiv.org/abs/2511.00002",
        upvotes=3,
    ),
]
ATOM = "application/atom+xml"


@dataclass
class Web:
    url: str
    settings: Settings
    store: Store
    sink: SmtpSink

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False, **kwargs)

    def path(self, url: str) -> str:
        assert url.startswith(self.url + "/"), url
        return url.removeprefix(self.url)

    def archive_path(self, subscriber: Subscriber) -> str:
        return self.path(archive_list_url(subscriber, settings=self.settings))

    def feed_path(self, subscriber: Subscriber) -> str:
        return self.path(feed_url(subscriber, settings=self.settings))


def serve_web(store: Store, smtp_sink: SmtpSink) -> Iterator[Web]:
    """The web app over `store` for the length of a `for web in serve_web(…)` loop body."""
    port = free_port()
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{port}", mail_url=smtp_sink.url, redis_url=""
    )
    for _ in serve(settings, store, port):
        yield Web(url=f"http://127.0.0.1:{port}", settings=settings, store=store, sink=smtp_sink)


def run_issue(web: Web, issue_date: date = TODAY, *, at: datetime = NOW) -> RunSummary:
    """A day's run for every due subscriber, through the SMTP sink."""
    return asyncio.run(
        run_day(web.store, issue_date=issue_date, settings=web.settings, now=lambda: at)
    )


def store_papers(web: Web) -> None:
    web.store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    web.store.upsert_papers(PAPERS, now=NOW - timedelta(hours=3))


def parse_feed(response: httpx.Response) -> Any:
    """The feed as a feed reader reads it, HTML content as sent (not sanitized)."""
    assert response.status_code == 200, response.text
    parsed = feedparser.parse(
        response.content,
        response_headers=dict(response.headers),
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed
