"""The web app over real HTTP: uvicorn on 127.0.0.1, httpx, SQLite and PostgreSQL, a private
Redis for the limits and an aiosmtpd sink receiving the confirmation emails."""

import ipaddress
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from service.emails import digest_links
from service.models import SubscriptionStatus
from service.settings import Settings
from service.store import Store
from service.subscriptions import (
    RequestOrigin,
    is_suppressed,
    new_nonce,
    unsubscribe,
)
from service.tables import Base
from service.tokens import TokenPurpose, make_confirm_token, make_subscriber_token
from service.web import client_address, create_app
from tests.factories import NOW, TODAY, add_subscriber, make_paper, make_settings
from tests.services import free_port, wait_until
from tests.smtp_sink import SmtpSink

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SIGNUP_FORM = {
    "interests": "diffusion models, graph networks",
    "about": "Fast sampling.",
    "frequency": "weekly",
    "weekday": "2",
    "delivery_hour": "7",
    "time_zone": "Europe/Paris",
    "mix": "40",
}
ORIGIN = RequestOrigin(ip=None, user_agent=None, via="test")


@dataclass
class Web:
    url: str
    settings: Settings
    store: Store
    sink: SmtpSink

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False, **kwargs)

    def link(self, purpose: TokenPurpose, subscriber_id: int) -> str:
        key = self.settings.secret_key.get_secret_value()
        token = make_subscriber_token(purpose, subscriber_id, secret_key=key)
        return f"/{purpose.value[0]}/{token}"

    def confirmation_links(self, count: int) -> list[str]:
        """The confirm paths of the first `count` messages at the sink, once they arrive."""
        wait_until(lambda: len(self.sink.messages) >= count, timeout=10, what="confirmation")
        return [_confirm_path(self, received.message) for received in self.sink.messages]


def _confirm_path(web: Web, message: Any) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    (url,) = [word for word in body.split() if word.startswith(f"{web.url}/c/")]
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'href="{url}"' in html
    return str(url).removeprefix(web.url)


def serve(settings: Settings, store: Store, port: int) -> Iterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store=store),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn start")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def web(store: Store, smtp_sink: SmtpSink, redis_url: str) -> Iterator[Web]:
    port = free_port()
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{port}",
        mail_url=smtp_sink.url,
        redis_url=redis_url,
        # The tests come from 127.0.0.1 and say who they are in X-Forwarded-For.
        trusted_proxies=["127.0.0.1"],
        # Hundreds of signups per test: the timing floor has a test of its own.
        signup_answer_seconds=0,
    )
    for _ in serve(settings, store, port):
        yield Web(url=f"http://127.0.0.1:{port}", settings=settings, store=store, sink=smtp_sink)


def _csrf(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def _sign_up(
    client: httpx.Client, email: str, *, forwarded_for: str = "198.51.100.1", **fields: str
) -> httpx.Response:
    token = _csrf(client.get("/"))
    data = {**SIGNUP_FORM, **fields, "email": email, "csrf_token": token}
    return client.post("/", data=data, headers={"X-Forwarded-For": forwarded_for})


def _post_form(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    token = _csrf(client.get(path))
    return client.post(path, data={**fields, "csrf_token": token})


def test_a_visitor_signs_up_confirms_manages_and_leaves(web: Web) -> None:
    with web.client(headers={"User-Agent": "TestBrowser/1.0"}) as client:
        signup = client.get("/")
        assert signup.status_code == 200
        assert 'name="email"' in signup.text and "Europe/Paris" in signup.text

        answer = _sign_up(client, "Ada@Example.org")
        assert answer.status_code == 200
        assert "Check your inbox" in answer.text

        (path,) = web.confirmation_links(1)
        (received,) = web.sink.messages
        assert received.rcpt_tos == ("ada@example.org",)
        assert received.message["Subject"] == "Confirm your Paperwire subscription"

        # Opening the link (as a mail scanner would) confirms nothing.
        page = client.get(path)
        assert page.status_code == 200 and "Confirm subscription" in page.text
        subscriber = web.store.find_subscriber("ada@example.org")
        assert subscriber.status is SubscriptionStatus.PENDING
        confirmed = client.post(path, data={"csrf_token": _csrf(page)})
        assert confirmed.status_code == 200 and "subscribed" in confirmed.text
        again = client.post(path, data={"csrf_token": _csrf(page)})
        assert again.status_code == 400 and "doesn't work any more" in again.text

        subscriber = web.store.find_subscriber("ada@example.org")
        assert subscriber.status is SubscriptionStatus.CONFIRMED
        assert subscriber.interests.keywords == ("diffusion models", "graph networks")
        assert (subscriber.time_zone, subscriber.delivery_hour) == ("Europe/Paris", 7)
        assert (subscriber.frequency.value, subscriber.weekday) == ("weekly", 2)
        assert subscriber.trending_weight == 0.4
        requested, confirmation = subscriber.consent
        assert (requested.ip, requested.user_agent) == ("198.51.100.1", "TestBrowser/1.0")
        assert requested.via == "web signup form"
        assert (confirmation.event, confirmation.ip) == ("confirmed", "127.0.0.1")

        manage = web.link(TokenPurpose.MANAGE, subscriber.id)
        saved = _post_form(
            client, manage, action="save", **{**SIGNUP_FORM, "interests": "protein folding"}
        )
        assert saved.status_code == 200 and "Saved" in saved.text
        assert web.store.get_subscriber(subscriber.id).interests.keywords == ("protein folding",)
        paused = _post_form(client, manage, action="pause")
        assert "Paused" in paused.text
        assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.PAUSED
        _post_form(client, manage, action="resume")

        leave = web.link(TokenPurpose.UNSUBSCRIBE, subscriber.id)
        left = _post_form(client, leave)
        assert left.status_code == 200 and "unsubscribed" in left.text
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


def test_form_errors_are_shown_inline_and_keep_what_was_typed(web: Web) -> None:
    with web.client() as client:
        answer = _sign_up(
            client,
            "not-an-address",
            interests="<b>bold</b> ideas",
            time_zone="Mars/Olympus",
            delivery_hour="25",
        )
    assert answer.status_code == 422
    assert "Enter an email address" in answer.text
    assert "Choose a time zone from the list." in answer.text
    assert "Choose an hour." in answer.text
    assert 'value="not-an-address"' in answer.text
    assert "&lt;b&gt;bold&lt;/b&gt; ideas" in answer.text
    assert "<b>bold</b>" not in answer.text
    assert web.store.list_subscribers() == []
    assert web.sink.messages == []


def test_a_form_post_without_its_csrf_token_changes_nothing(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    with web.client() as client:
        client.get("/")  # the cookie, but no token in the form
        signup = client.post("/", data={**SIGNUP_FORM, "email": "eve@example.org"})
        leave = client.post(web.link(TokenPurpose.UNSUBSCRIBE, subscriber.id), data={})
        manage = web.link(TokenPurpose.MANAGE, subscriber.id)
        token = _csrf(client.get(manage))
    with web.client() as other:
        # A token copied into another browser, without the cookie it is bound to.
        stolen = other.post(manage, data={"action": "pause", "csrf_token": token})
    assert (signup.status_code, leave.status_code, stolen.status_code) == (403, 403, 403)
    # The signup form comes back as typed, with a fresh token.
    assert "open too long" in signup.text and 'value="eve@example.org"' in signup.text
    assert _csrf(signup)
    assert [s.email for s in web.store.list_subscribers()] == ["alice@example.org"]
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.CONFIRMED


def _misused_links(web: Web) -> dict[str, tuple[str, str]]:
    """(method, path) of each kind of bad link, for a pending and a confirmed subscriber."""
    key = web.settings.secret_key.get_secret_value()
    pending = add_subscriber(web.store, "pending@example.org", status=SubscriptionStatus.PENDING)
    nonce = new_nonce()
    web.store.renew_signup(
        pending.id,
        web.store.get_subscriber(pending.id),
        consent=ORIGIN.event("requested", now=NOW),
        confirm_nonce=nonce,
    )
    good_confirm = make_confirm_token(pending.id, nonce, secret_key=key)
    confirmed = add_subscriber(web.store, "bob@example.org")
    unsubscribe_token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, confirmed.id, secret_key=key
    )
    manage_token = make_subscriber_token(TokenPurpose.MANAGE, confirmed.id, secret_key=key)
    expired = make_confirm_token(
        pending.id, nonce, secret_key=key, now=datetime.now(UTC) - timedelta(hours=73)
    )
    replaced = make_confirm_token(pending.id, "old-nonce", secret_key=key)
    forged = make_subscriber_token(TokenPurpose.UNSUBSCRIBE, confirmed.id, secret_key="other")
    flipped = unsubscribe_token[:-3] + ("A" if unsubscribe_token[-3] != "A" else "B")
    flipped += unsubscribe_token[-2:]
    return {
        "tampered unsubscribe": ("POST", f"/u/{flipped}"),
        "forged with another key": ("GET", f"/u/{forged}"),
        "truncated unsubscribe": ("GET", f"/u/{unsubscribe_token[:-4]}"),
        "truncated manage": ("GET", f"/m/{manage_token[:10]}"),
        "junk characters": ("GET", "/m/%3Cscript%3E"),
        "expired confirm": ("GET", f"/c/{expired}"),
        "replaced confirm": ("GET", f"/c/{replaced}"),
        "unsubscribe as confirm": ("GET", f"/c/{unsubscribe_token}"),
        "confirm as unsubscribe": ("GET", f"/u/{good_confirm}"),
        "confirm as manage": ("GET", f"/m/{good_confirm}"),
        "manage as unsubscribe": ("POST", f"/u/{manage_token}"),
        "unsubscribe as manage": ("GET", f"/m/{unsubscribe_token}"),
        "manage as archive": ("GET", f"/a/{manage_token}"),
    }


def test_every_misused_link_gets_the_same_rejection_page(web: Web) -> None:
    links = _misused_links(web)
    bodies = set()
    with web.client() as client:
        for name, (method, path) in links.items():
            if method == "GET":
                answer = client.get(path)
            else:
                answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
            assert answer.status_code == 400, name
            bodies.add(answer.text)
    assert len(bodies) == 1
    assert "doesn't work any more" in bodies.pop()
    statuses = {s.email: s.status for s in web.store.list_subscribers()}
    assert statuses == {
        "pending@example.org": SubscriptionStatus.PENDING,
        "bob@example.org": SubscriptionStatus.CONFIRMED,
    }


def test_a_used_confirmation_link_is_refused_when_replayed(web: Web) -> None:
    with web.client() as client:
        _sign_up(client, "ada@example.org")
        (path,) = web.confirmation_links(1)
        page = client.get(path)
        assert client.post(path, data={"csrf_token": _csrf(page)}).status_code == 200
        subscriber = web.store.find_subscriber("ada@example.org")
        unsubscribe(web.store, subscriber.id, origin=ORIGIN, now=datetime.now(UTC))
        replayed_get = client.get(path)
        replayed_post = client.post(path, data={"csrf_token": _csrf(page)})
    assert (replayed_get.status_code, replayed_post.status_code) == (400, 400)
    # An old link never brings back someone who left.
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_follows_rfc_8058(web: Web, encoding: str) -> None:
    subscriber = add_subscriber(web.store)
    path = web.link(TokenPurpose.UNSUBSCRIBE, subscriber.id)
    body: dict[str, Any] = (
        {"data": {"List-Unsubscribe": "One-Click"}}
        if encoding == "urlencoded"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )
    with web.client() as client:
        shown = client.get(path)
        assert shown.status_code == 200 and "Unsubscribe" in shown.text
        assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.CONFIRMED
    # A mail client's POST: no cookies, no CSRF token, and it does not follow redirects.
    answers = []
    for _ in range(2):
        with web.client() as mail_client:
            answers.append(mail_client.post(path, **body))
    assert [answer.status_code for answer in answers] == [200, 200]
    assert all("location" not in answer.headers for answer in answers)
    after = web.store.get_subscriber(subscriber.id)
    assert after.status is SubscriptionStatus.UNSUBSCRIBED
    assert [event.via for event in after.consent] == ["one-click (RFC 8058)"]


def test_one_click_after_erasure_still_answers_2xx(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    path = web.link(TokenPurpose.UNSUBSCRIBE, subscriber.id)
    web.store.remove_subscriber("alice@example.org")
    with web.client() as client:
        answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200


def test_mail_bombing_one_mailbox_sends_at_most_the_allowed_confirmations(web: Web) -> None:
    variants = [
        "victim@gmail.com",
        "v.ictim@gmail.com",
        "victim+{n}@gmail.com",
        "Vic.Tim+x{n}@googlemail.com",
    ]
    bodies = set()
    with web.client() as client:
        token = _csrf(client.get("/"))
        for n in range(200):
            email = variants[n % len(variants)].format(n=n)
            # From 200 different addresses, so only the mailbox limit is in the way.
            answer = client.post(
                "/",
                data={**SIGNUP_FORM, "email": email, "csrf_token": token},
                headers={"X-Forwarded-For": f"198.51.100.{n % 250 + 1}, 10.9.9.9"},
            )
            assert answer.status_code == 200
            bodies.add(answer.text)
        # Each request's mail goes out before the connection takes the next one, so once
        # the last signup's mail has arrived every earlier one has been dealt with.
        _sign_up(client, "sentinel@example.org", forwarded_for="192.0.2.99")
    wait_until(
        lambda: any(m.rcpt_tos == ("sentinel@example.org",) for m in web.sink.messages),
        timeout=10,
        what="the sentinel's confirmation",
    )
    to_victim = [m for m in web.sink.messages if m.rcpt_tos != ("sentinel@example.org",)]
    assert len(to_victim) == 1
    assert len(bodies) == 1


def test_signups_per_client_address_are_limited(web: Web) -> None:
    limit = web.settings.signups_per_ip_per_hour
    with web.client() as client:
        for n in range(limit + 3):
            answer = _sign_up(client, f"person{n}@example.org", forwarded_for="203.0.113.5")
            assert answer.status_code == 200
        _sign_up(client, "sentinel@example.org", forwarded_for="192.0.2.99")
    wait_until(lambda: len(web.sink.messages) == limit + 1, timeout=10, what="confirmations")
    recipients = {m.rcpt_tos[0] for m in web.sink.messages}
    assert "sentinel@example.org" in recipients
    assert f"person{limit}@example.org" not in recipients
    assert len(web.store.list_subscribers()) == limit + 1


def test_the_answer_is_the_same_whatever_the_address_is(web: Web) -> None:
    add_subscriber(web.store, "confirmed@example.org")
    left = add_subscriber(web.store, "left@example.org")
    unsubscribe(web.store, left.id, origin=ORIGIN, now=NOW)
    bodies = {}
    with web.client() as client:
        _sign_up(client, "pending@example.org", forwarded_for="192.0.2.1")
        for n, email in enumerate(
            ["new@example.org", "pending@example.org", "confirmed@example.org", "left@example.org"]
        ):
            answer = _sign_up(client, email, forwarded_for=f"192.0.2.{n + 10}")
            bodies[email] = (answer.status_code, answer.text, answer.headers.get("set-cookie"))
    assert len(set(bodies.values())) == 1
    # Nothing more is sent to a confirmed address, and its preferences stay as they were.
    assert web.store.find_subscriber("confirmed@example.org").interests.keywords == (
        "diffusion models",
    )


def test_signup_answers_take_the_same_minimum_time(web: Web) -> None:
    add_subscriber(web.store, "known@example.org")
    floor = 0.3
    port = free_port()
    settings = web.settings.model_copy(
        update={"signup_answer_seconds": floor, "public_base_url": f"http://127.0.0.1:{port}"}
    )
    took = {}
    for _ in serve(settings, web.store, port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n, email in enumerate(["known@example.org", "fresh@example.org"]):
                started = time.monotonic()
                answer = _sign_up(client, email, forwarded_for=f"192.0.2.{n + 1}")
                took[email] = time.monotonic() - started
                assert answer.status_code == 200
    # The form's GET is part of the measured time: each answer took at least the floor.
    assert all(seconds >= floor for seconds in took.values()), took


def test_export_and_erase_from_the_manage_page(web: Web) -> None:
    subscriber = add_subscriber(web.store, "ada@example.org")
    web.store.claim_issue(subscriber.id, TODAY, now=NOW, lease=timedelta(minutes=5))
    web.store.record_sent(subscriber.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)
    manage = web.link(TokenPurpose.MANAGE, subscriber.id)
    with web.client() as client:
        exported = _post_form(client, manage, action="export")
        assert exported.headers["content-type"].startswith("application/json")
        assert "attachment" in exported.headers["content-disposition"]
        data = json.loads(exported.text)
        assert data["subscriber"]["email"] == "ada@example.org"
        assert data["deliveries"][0]["paper_ids"] == ["p1"]

        unticked = _post_form(client, manage, action="erase")
        assert unticked.status_code == 422
        erased = _post_form(client, manage, action="erase", confirm_erase="yes")
        assert erased.status_code == 200 and "erased" in erased.text
        assert client.get(manage).status_code == 400
    assert is_suppressed(web.store, "ada@example.org", settings=web.settings)
    with web.store.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(text(f"SELECT * FROM {table.name}")):
                assert "ada@example.org" not in str(row), table.name


def test_the_archive_shows_a_sent_issue(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    paper = make_paper(id="p1", title="Consistency <models> & friends")
    web.store.upsert_papers([paper], now=NOW)
    web.store.claim_issue(subscriber.id, TODAY, now=NOW, lease=timedelta(minutes=5))
    web.store.record_sent(subscriber.id, TODAY, message_id="<m@x>", paper_ids=["p1"], now=NOW)
    links = digest_links(subscriber.id, TODAY, settings=web.settings)
    with web.client() as client:
        shown = client.get(links.archive_url.removeprefix(web.url))
        missing = client.get(
            digest_links(
                subscriber.id, TODAY - timedelta(days=1), settings=web.settings
            ).archive_url.removeprefix(web.url)
        )
    assert shown.status_code == 200
    assert "Consistency &lt;models&gt; &amp; friends" in shown.text
    assert "script-src" not in shown.headers["content-security-policy"]
    assert missing.status_code == 400


def test_pages_carry_security_headers(web: Web) -> None:
    with web.client() as client:
        page = client.get("/")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "<script>" not in page.text and "style=" not in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_the_json_api_mirrors_the_pages(web: Web) -> None:
    with web.client() as client:
        schema = client.get("/openapi.json").json()
        assert {"/api/signup", "/api/confirm", "/api/preferences/{token}"} <= set(schema["paths"])
        accepted = client.post(
            "/api/signup",
            json={"email": "api@example.org", "interests": ["robot learning"]},
            headers={"X-Forwarded-For": "192.0.2.50"},
        )
        assert accepted.status_code == 202 and accepted.json()["status"] == "check-your-inbox"
        (path,) = web.confirmation_links(1)
        confirmed = client.post("/api/confirm", json={"token": path.removeprefix("/c/")})
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
        assert client.post("/api/confirm", json={"token": "nope"}).status_code == 400

        subscriber = web.store.find_subscriber("api@example.org")
        key = web.settings.secret_key.get_secret_value()
        manage = make_subscriber_token(TokenPurpose.MANAGE, subscriber.id, secret_key=key)
        current = client.get(f"/api/preferences/{manage}").json()
        assert current["interests"] == ["robot learning"]
        changed = client.put(
            f"/api/preferences/{manage}",
            json={"interests": ["protein folding"], "time_zone": "Asia/Tokyo"},
        )
        assert changed.json()["time_zone"] == "Asia/Tokyo"
        bad = client.put(f"/api/preferences/{manage}", json={"time_zone": "Mars/Base"})
        assert bad.status_code == 422
        leave = make_subscriber_token(TokenPurpose.UNSUBSCRIBE, subscriber.id, secret_key=key)
        assert client.post(f"/api/unsubscribe/{leave}").json() == {"status": "unsubscribed"}
        assert client.post(f"/api/unsubscribe/{manage}").status_code == 400
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


def test_healthz_checks_the_database_and_redis(web: Web) -> None:
    with web.client() as client:
        answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"database": "ok", "redis": "ok"}


def test_healthz_fails_when_redis_is_down(sqlite_store: Store) -> None:
    port = free_port()
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    for _ in serve(settings, sqlite_store, port):
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert answer.status_code == 503
    assert answer.json() == {"database": "ok", "redis": "unreachable"}


def test_links_signed_with_a_previous_key_keep_working(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    old = make_subscriber_token(TokenPurpose.UNSUBSCRIBE, subscriber.id, secret_key="old-key")
    port = free_port()
    rotated = make_settings(secret_key="new-key", previous_secret_keys=["old-key"], redis_url="")
    for _ in serve(rotated, web.store, port):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/u/{old}", data={"List-Unsubscribe": "One-Click"}
        )
    assert answer.status_code == 200
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a proxy: header ignored
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.1.1"], "198.51.100.1"),  # spoofed left
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # two header lines
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["garbage"], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.1"], "127.0.0.1"),  # only proxies: the nearest one
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert client_address(peer, forwarded, trusted=TRUSTED) == client
