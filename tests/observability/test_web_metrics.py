"""The web app's /metrics over real HTTP (uvicorn on 127.0.0.1, httpx): requests are counted by
route template and never by path, so no link token or address reaches the exposition; and
/metrics answers only a bearer of its token, or without one only a loopback client that came
through no proxy."""

import asyncio
import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from service.settings import Settings
from service.signup.links import (
    archive_list_url,
    confirm_url,
    feed_url,
    feedback_urls,
    issue_url,
    subscriber_url,
)
from service.signup.tokens import TokenPurpose
from service.store import Store
from service.web import create_app
from service.web.metrics_page import bearer_token_matches, is_direct_loopback
from tests.observability.conftest import Samples, parse_samples, sample, serving
from tests.support.factories import TODAY, add_subscriber, make_paper, make_settings, send_issue

TOKEN = "scrape-token-0123456789"


def make_app(store: Store, tmp_path: Path, **overrides: Any) -> FastAPI:
    settings = make_settings(
        database_url=str(store.url),
        mail_url=f"file://{tmp_path / 'outbox'}",
        redis_url="",
        signup_answer_seconds=0,
        **overrides,
    )
    return create_app(settings, store=store)


@pytest.fixture
def site(sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[str, Settings, Store]]:
    """The app as a single-machine install runs it: no token, no proxy; its URL and settings."""
    app = make_app(sqlite_store, tmp_path)
    with serving(app) as url:
        yield url, app.state.web.settings, sqlite_store


def scrape(client: httpx.Client) -> tuple[str, Samples]:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return answer.text, parse_samples(answer.text)


def requests_of(samples: Samples, route: str, method: str, status: int) -> float:
    counted = sample(
        samples, "paperwire_http_requests_total", route=route, method=method, status=str(status)
    )
    return counted or 0.0


def test_requests_are_counted_by_route_template_and_no_token_or_address_shows(
    site: tuple[str, Settings, Store],
) -> None:
    url, settings, store = site
    reader = add_subscriber(store, "ada.lovelace@example.org")
    store.upsert_papers([make_paper()], now=datetime.now(UTC))
    send_issue(store, reader, TODAY, paper_ids=["2511.00001"])
    # Made at the server's clock, which judges whether a manage link has expired.
    now = datetime.now(UTC)
    links = {
        "/m/{token}": subscriber_url(TokenPurpose.MANAGE, reader, settings=settings, now=now),
        "/archive/{token}": archive_list_url(reader, settings=settings),
        "/feed/{token}": feed_url(reader, settings=settings),
        "/a/{token}": issue_url(reader, TODAY, settings=settings, now=now),
        "/f/{token}": feedback_urls(reader, ["2511.00001"], settings=settings, now=now)[
            "2511.00001"
        ],
        "/c/{token}": confirm_url(reader, "used-nonce", settings=settings, now=now),
        "/u/{token}": subscriber_url(TokenPurpose.UNSUBSCRIBE, reader, settings=settings, now=now),
    }
    paths = {template: urlsplit(link).path for template, link in links.items()}
    tokens = [path.rsplit("/", 1)[1] for path in paths.values()]
    invalid = "not-a-token-but-secret-looking-AAAA"
    unknown = "/no/such/page/ada.lovelace@example.org"

    with httpx.Client(base_url=url, timeout=10) as client:
        _, before = scrape(client)
        answers = {template: client.get(path).status_code for template, path in paths.items()}
        api = client.get(f"/api/preferences/{tokens[0]}")
        head = client.head(paths["/m/{token}"])
        bad = client.get(f"/u/{invalid}")
        missing = client.get(unknown)
        one_click = client.post(
            paths["/u/{token}"],
            data={"List-Unsubscribe": "One-Click"},
            headers={"Origin": "https://mail.example.net"},
        )
        text, after = scrape(client)

    assert answers["/m/{token}"] == answers["/feed/{token}"] == answers["/a/{token}"] == 200
    assert (api.status_code, head.status_code, one_click.status_code) == (200, 200, 200)
    assert bad.status_code >= 400 and missing.status_code == 404
    for token in [*tokens, invalid]:
        assert token not in text
    for word in ("ada.lovelace", "example.org", "no/such/page"):
        assert word not in text
    for template, status in answers.items():
        counted = requests_of(after, template, "GET", status) - requests_of(
            before, template, "GET", status
        )
        assert counted == 1, template
    assert requests_of(after, "/api/preferences/{token}", "GET", 200) >= 1
    assert requests_of(after, "/m/{token}", "HEAD", 200) >= 1
    assert requests_of(after, "/u/{token}", "GET", bad.status_code) >= 1
    assert (
        requests_of(after, "/u/{token}", "POST", 200)
        - requests_of(before, "/u/{token}", "POST", 200)
        == 1
    )
    assert requests_of(after, "unmatched", "GET", 404) >= 1
    # The scrape before this one was counted too, by its template.
    assert requests_of(after, "/metrics", "GET", 200) >= 1
    duration = "paperwire_http_request_duration_seconds_count"
    assert (sample(after, duration, route="/m/{token}", method="GET") or 0) >= 1
    unsubscribed = "paperwire_unsubscribes_total"
    assert (sample(after, unsubscribed, channel="one-click") or 0) - (
        sample(before, unsubscribed, channel="one-click") or 0
    ) == 1


def test_without_a_token_only_a_direct_loopback_client_reads_metrics(
    site: tuple[str, Settings, Store],
) -> None:
    url, _settings, _store = site
    with httpx.Client(base_url=url, timeout=10) as client:
        scrape(client)
        not_found = client.get("/no-such-page")
        # A proxy on this machine brings every visitor from 127.0.0.1, and says whom for.
        for headers in (
            {"X-Forwarded-For": "203.0.113.9"},
            {"X-Forwarded-For": "127.0.0.1"},
            {"Forwarded": "for=203.0.113.9"},
            {"X-Real-IP": "127.0.0.1"},
            # A token nobody asked for changes nothing.
            {"X-Forwarded-For": "203.0.113.9", "Authorization": f"Bearer {TOKEN}"},
        ):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 404, headers
            assert refused.text == not_found.text  # the page of any unknown path


def test_a_trusted_proxy_on_loopback_is_refused_without_a_token(
    sqlite_store: Store, tmp_path: Path
) -> None:
    app = make_app(sqlite_store, tmp_path, trusted_proxies=["127.0.0.1"])
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/metrics").status_code == 404


def test_with_a_token_only_its_bearer_reads_metrics_wherever_they_are(
    sqlite_store: Store, tmp_path: Path
) -> None:
    app = make_app(sqlite_store, tmp_path, metrics_token=TOKEN)
    with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        for authorization in (None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
            headers = {} if authorization is None else {"Authorization": authorization}
            assert client.get("/metrics", headers=headers).status_code == 404, authorization
        right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert "paperwire_http_requests_total" in right.text
        assert "paperwire_issues{" in right.text
        assert TOKEN not in right.text


@pytest.mark.parametrize("token", ["", TOKEN])
def test_a_client_elsewhere_needs_the_token(
    sqlite_store: Store, tmp_path: Path, token: str
) -> None:
    """A peer that is not this machine: no socket on 127.0.0.1 has one, so the app is called
    in-process with that peer's address (httpx's ASGI transport), no network involved."""
    app = make_app(sqlite_store, tmp_path, metrics_token=token)

    async def ask() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            without = await client.get("/metrics")
            with_token = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        return without.status_code, with_token.status_code

    assert asyncio.run(ask()) == (404, 200 if token else 404)


def test_loopback_is_the_peer_itself_never_a_proxy_or_another_address() -> None:
    assert is_direct_loopback("127.0.0.1", trusted=[])
    assert is_direct_loopback("127.0.0.2", trusted=[])
    assert is_direct_loopback("::1", trusted=[])
    assert is_direct_loopback("::ffff:127.0.0.1", trusted=[])
    for peer in ("203.0.113.7", "10.0.0.5", "::ffff:203.0.113.7", "testclient", "", None):
        assert not is_direct_loopback(peer, trusted=[]), peer
    trusted = [ipaddress.ip_network("127.0.0.0/8")]
    assert not is_direct_loopback("127.0.0.1", trusted=trusted)


def test_the_bearer_token_is_the_one_authorization_header_exactly() -> None:
    assert bearer_token_matches([f"Bearer {TOKEN}"], TOKEN)
    assert bearer_token_matches([f"bearer  {TOKEN} "], TOKEN)
    assert not bearer_token_matches([], TOKEN)
    assert not bearer_token_matches([f"Bearer {TOKEN}", f"Bearer {TOKEN}"], TOKEN)
    assert not bearer_token_matches([TOKEN], TOKEN)
    assert not bearer_token_matches(["Bearer " + TOKEN[:-1]], TOKEN)
    assert not bearer_token_matches(["Bearer é" + "x" * 10_000], TOKEN)
