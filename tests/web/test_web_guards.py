"""The web app's request guards over real HTTP (uvicorn on 127.0.0.1, httpx): the body cap,
validation errors that echo nothing, error pages with the security headers, Origin and
Sec-Fetch-Site checks on state-changing requests, no Host reflected, HEAD, and the site's own
404 and 405 pages."""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.models import SubscriptionStatus
from service.settings import Settings
from service.signup.subscriptions import RequestOrigin, new_nonce
from service.signup.tokens import TokenPurpose, make_confirm_token, make_subscriber_token
from service.store import Store
from tests.support.factories import SIGNUP_FORM, add_subscriber, make_preferences, make_settings
from tests.support.services import free_port, wait_until
from tests.support.web_server import serve

PAPERWIRE = str(Path(sys.executable).parent / "paperwire")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHUNK = 64 * 1024
# PAPERWIRE_MAX_REQUEST_BODY_BYTES by default.
DEFAULT_CAP = 64 * 1024
# Far below the 100 MB declared: what the kernel's socket buffers take before the server's
# close reaches the client, and far above the cap.
MOST_BYTES_SENT = 24 * 1024 * 1024
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PAGE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
FOREIGN = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    # The right host on another port is another origin.
    {"Origin": "http://127.0.0.1:1"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    # Headers that disagree: another site's Origin is refused whatever Sec-Fetch-Site says.
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},
]
OWN = {
    "origin": {"Origin": "{url}", "Sec-Fetch-Site": "same-origin"},
    # What Chromium sends on the site's own form POST: the pages' Referrer-Policy no-referrer
    # makes its Origin `null`, and Sec-Fetch-Site tells the truth.
    "chromium": {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    "typed": {"Sec-Fetch-Site": "none"},
}
ORIGIN = RequestOrigin(ip=None, user_agent=None, via="test")


@dataclass
class Site:
    url: str
    settings: Settings
    store: Store

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False, **kwargs)

    # Every token of these tests is made by `token` or `confirm_link`: the guards do not care
    # how links are signed, and these are the two places that do.
    def token(self, purpose: TokenPurpose, subscriber_id: int) -> str:
        key = self.settings.secret_key.get_secret_value()
        link_key = self.store.get_subscriber(subscriber_id).link_key
        return make_subscriber_token(purpose, subscriber_id, link_key=link_key, secret_key=key)

    def link(self, purpose: TokenPurpose, subscriber_id: int) -> str:
        return f"/{purpose.value[0]}/{self.token(purpose, subscriber_id)}"

    def confirm_link(self, email: str) -> str:
        """A fresh confirmation link for a pending subscriber, added on first use."""
        pending = self.store.find_subscriber_by_email(email) or add_subscriber(
            self.store, email, status=SubscriptionStatus.PENDING
        )
        nonce = new_nonce()
        self.store.renew_signup(
            pending.id,
            make_preferences(),
            consent=ORIGIN.event("requested", now=datetime.now(UTC)),
            confirm_nonce=nonce,
        )
        key = self.settings.secret_key.get_secret_value()
        token = make_confirm_token(pending.id, nonce, link_key=pending.link_key, secret_key=key)
        return f"/c/{token}"

    def statuses(self) -> dict[str, SubscriptionStatus]:
        return {s.email: s.status for s in self.store.list_subscribers()}


def _site_settings(port: int, tmp_path: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "public_base_url": f"http://127.0.0.1:{port}",
        "mail_url": f"file://{tmp_path / 'outbox'}",
        # The limits count in-process: these tests are about what reaches the routes.
        "redis_url": "",
        "signup_answer_seconds": 0,
    }
    return make_settings(**{**fields, **overrides})


@pytest.fixture
def site(sqlite_store: Store, tmp_path: Path) -> Iterator[Site]:
    port = free_port()
    settings = _site_settings(port, tmp_path)
    for _ in serve(settings, sqlite_store, port):
        yield Site(url=f"http://127.0.0.1:{port}", settings=settings, store=sqlite_store)


def _csrf(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def _assert_page_headers(answer: httpx.Response) -> None:
    for name, value in PAGE_HEADERS.items():
        assert answer.headers.get(name) == value, (name, answer.status_code, answer.headers)
    assert "default-src 'none'" in answer.headers["content-security-policy"]


class Upload:
    """A body sent in chunks, counting what went out; past `most` bytes it stops the test
    (the server is still reading) instead of sending on."""

    def __init__(self, *, start: bytes = b"", most: int = MOST_BYTES_SENT) -> None:
        self.start = start
        self.sent = 0
        self.most = most

    def __iter__(self) -> Iterator[bytes]:
        self.sent = len(self.start)
        yield self.start
        while True:
            if self.sent >= self.most:
                raise AssertionError(f"the server was still reading after {self.sent} bytes")
            self.sent += CHUNK
            yield b" " * CHUNK


# -- 1. request bodies have a cap -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/signup", "/", "/u/some-token", "/no-such-page"])
def test_a_body_declared_far_over_the_cap_is_refused_before_it_is_sent(
    site: Site, path: str
) -> None:
    upload = Upload()
    started = time.monotonic()
    with site.client() as client:
        answer = client.post(
            path,
            content=upload,
            headers={
                "Content-Length": str(100_000_000),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    took = time.monotonic() - started
    assert answer.status_code == 413, answer.text[:300]
    assert len(answer.content) < 2000
    assert upload.sent < MOST_BYTES_SENT and took < 5, (upload.sent, took)
    _assert_page_headers(answer)


MULTIPART_START = b'--xyz\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/api/signup", "application/json", b'{"email": "ada@example.org"}'),
        ("/", "application/x-www-form-urlencoded", b"email=ada%40example.org&about="),
        ("/u/some-token", "application/x-www-form-urlencoded", b"List-Unsubscribe="),
        # One field that never ends: the body passes the cap before the part passes its own.
        ("/u/some-token", "multipart/form-data; boundary=xyz", MULTIPART_START),
    ],
)
def test_a_chunked_body_is_refused_once_it_passes_the_cap(
    site: Site, path: str, content_type: str, start: bytes
) -> None:
    upload = Upload(start=start)
    with site.client() as client:
        # No Content-Length: httpx sends the generator chunked, and only counting tells.
        answer = client.post(path, content=upload, headers={"Content-Type": content_type})
    assert answer.status_code == 413, answer.text[:300]
    assert len(answer.content) < 2000
    assert upload.sent < MOST_BYTES_SENT
    _assert_page_headers(answer)


def test_a_body_up_to_the_cap_is_read_and_one_byte_more_is_not(site: Site) -> None:
    cap = DEFAULT_CAP
    signup = json.dumps({"email": "ada@example.org", "interests": ["robot learning"]})
    # JSON may end in any amount of white space: a real signup, exactly as long as the cap.
    at_cap = signup + " " * (cap - len(signup))
    with site.client() as client:
        accepted = client.post(
            "/api/signup", content=at_cap, headers={"Content-Type": "application/json"}
        )
        over = client.post(
            "/api/signup", content=at_cap + " ", headers={"Content-Type": "application/json"}
        )
        token = _csrf(client.get("/"))
        fields = {**SIGNUP_FORM, "email": "grace@example.org", "csrf_token": token}
        form = str(httpx.QueryParams(fields))
        # A field the form does not have pads the urlencoded body to the cap.
        padded = form + "&pad=" + "x" * (cap - len(form) - len("&pad="))
        assert len(padded) == cap
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        form_answer = client.post("/", content=padded, headers=form_type)
        form_over = client.post("/", content=padded + "x", headers=form_type)
    assert accepted.status_code == 202, accepted.text[:300]
    assert form_answer.status_code == 200 and "Check your inbox" in form_answer.text
    assert (over.status_code, form_over.status_code) == (413, 413)
    assert set(site.statuses()) == {"ada@example.org", "grace@example.org"}


def test_serve_takes_the_body_cap_from_the_environment(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PAPERWIRE_REDIS_URL": "",
        "PAPERWIRE_MAX_REQUEST_BODY_BYTES": "2048",
    }
    subprocess.run(
        [PAPERWIRE, "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    port = free_port()
    server = subprocess.Popen(
        [PAPERWIRE, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def answered() -> bool:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
            except httpx.TransportError:
                return False
            return True

        wait_until(answered, timeout=30, what="paperwire serve")
        body = {"email": "ada@example.org", "interests_text": "x" * 3000}
        too_big = httpx.post(f"{base}/api/signup", json=body, timeout=5)
        head = httpx.head(f"{base}/healthz", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert too_big.status_code == 413
    assert (head.status_code, head.content) == (200, b"")


# -- 2. validation errors echo nothing ------------------------------------------------------


def test_a_validation_error_names_the_field_but_never_echoes_the_input(site: Site) -> None:
    junk = "J" * 60_000
    alice = add_subscriber(site.store)
    manage = site.token(TokenPurpose.MANAGE, alice.id)
    with site.client() as client:
        answers = [
            client.post("/api/signup", json={"email": junk}),
            client.post("/api/signup", json={"email": "a@example.org", "weekday": junk}),
            client.put(f"/api/preferences/{manage}", json={"weekday": junk}),
            client.post(
                "/api/signup",
                content='{"email": "' + junk,
                headers={"Content-Type": "application/json"},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 422
        assert "JJJJ" not in answer.text and len(answer.content) < 2000, answer.text[:300]
        problems = answer.json()["detail"]
        assert problems and all(set(problem) == {"loc", "msg", "type"} for problem in problems)
    assert answers[0].json()["detail"][0]["loc"] == ["body", "email"]


# -- 3. a server error is a page with the security headers ----------------------------------


def test_a_server_error_answers_with_the_security_headers_and_no_traceback(
    tmp_path: Path,
) -> None:
    # A database without its tables: every query fails, as when the database is broken.
    broken = Store(f"sqlite:///{tmp_path / 'no-schema.db'}")
    port = free_port()
    settings = _site_settings(port, tmp_path)
    key = settings.secret_key.get_secret_value()
    # No row to take a link key from: the server fails on the lookup before it checks the MAC.
    manage = f"/m/{make_subscriber_token(TokenPurpose.MANAGE, 1, link_key=None, secret_key=key)}"
    try:
        for _ in serve(settings, broken, port):
            # One client per request: the server closes the connection after a failure.
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                page = client.get(manage, headers={"Accept": BROWSER_ACCEPT})
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                token = _csrf(client.get("/"))
                form = client.post(
                    "/", data={**SIGNUP_FORM, "email": "ada@example.org", "csrf_token": token}
                )
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                api = client.post("/api/signup", json={"email": "ada@example.org"})
    finally:
        broken.close()
    for answer in (page, form, api):
        assert answer.status_code == 500
        _assert_page_headers(answer)
        for leak in ("Traceback", "sqlite", "no such table", "OperationalError"):
            assert leak not in answer.text, answer.text
        # ... and says so, so that no client sends its next request into a closed socket.
        assert answer.headers["connection"] == "close"
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>" in page.text and "<title>" in form.text
    assert api.json() == {"detail": "internal error"}


# -- 4. state-changing requests come from the site itself -----------------------------------


def _form_post(site: Site, client: httpx.Client, route: str) -> tuple[str, dict[str, str]]:
    """The path and fields the page of `route` posts, with a valid CSRF token (and its cookie
    in `client`), as a visitor's browser would send them."""
    alice = site.store.find_subscriber("alice@example.org")
    if route == "signup":
        path, fields = "/", {**SIGNUP_FORM, "email": "new@example.org"}
    elif route == "confirm":
        path, fields = site.confirm_link("pending@example.org"), {}
    elif route == "manage":
        path, fields = site.link(TokenPurpose.MANAGE, alice.id), {"action": "pause"}
    else:
        path, fields = site.link(TokenPurpose.UNSUBSCRIBE, alice.id), {}
    return path, {**fields, "csrf_token": _csrf(client.get(path))}


ROUTES = ["signup", "confirm", "manage", "unsubscribe"]


@pytest.mark.parametrize("route", ROUTES)
def test_a_form_post_from_another_site_changes_nothing(site: Site, route: str) -> None:
    add_subscriber(site.store)
    for headers in FOREIGN:
        with site.client() as client:
            path, data = _form_post(site, client, route)
            before = site.statuses()
            answer = client.post(path, data=data, headers=headers)
        assert answer.status_code == 403, (headers, answer.text[:300])
        assert "Please try again" in answer.text
        _assert_page_headers(answer)
        assert site.statuses() == before, headers


@pytest.mark.parametrize("own", OWN)
@pytest.mark.parametrize("route", ROUTES)
def test_a_form_post_from_the_site_itself_works(site: Site, route: str, own: str) -> None:
    add_subscriber(site.store)
    expected = {
        "signup": ("new@example.org", SubscriptionStatus.PENDING),
        "confirm": ("pending@example.org", SubscriptionStatus.CONFIRMED),
        "manage": ("alice@example.org", SubscriptionStatus.PAUSED),
        "unsubscribe": ("alice@example.org", SubscriptionStatus.UNSUBSCRIBED),
    }
    with site.client() as client:
        path, data = _form_post(site, client, route)
        headers = {name: value.format(url=site.url) for name, value in OWN[own].items()}
        answer = client.post(path, data=data, headers=headers)
    assert answer.status_code == 200, answer.text[:300]
    email, status = expected[route]
    assert site.statuses()[email] is status


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_from_a_mail_provider_still_works(site: Site, encoding: str) -> None:
    alice = add_subscriber(site.store)
    body: dict[str, Any] = (
        {"data": {"List-Unsubscribe": "One-Click"}}
        if encoding == "urlencoded"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )
    headers = {"Origin": "https://mail.example", "Sec-Fetch-Site": "cross-site"}
    with site.client() as client:
        answer = client.post(site.link(TokenPurpose.UNSUBSCRIBE, alice.id), headers=headers, **body)
    assert answer.status_code == 200, answer.text[:300]
    assert site.statuses()["alice@example.org"] is SubscriptionStatus.UNSUBSCRIBED


def test_the_json_api_refuses_other_origins(site: Site) -> None:
    alice = add_subscriber(site.store)
    manage = site.token(TokenPurpose.MANAGE, alice.id)
    leave = site.token(TokenPurpose.UNSUBSCRIBE, alice.id)
    confirm = site.confirm_link("pending@example.org").removeprefix("/c/")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/signup", {"email": "new@example.org"}),
        ("POST", "/api/confirm", {"token": confirm}),
        ("PUT", f"/api/preferences/{manage}", {"interests": ["protein folding"]}),
        ("POST", f"/api/unsubscribe/{leave}", {}),
    ]
    before = site.statuses()
    with site.client() as client:
        for headers in FOREIGN:
            for method, path, body in calls:
                answer = client.request(method, path, json=body, headers=headers)
                assert answer.status_code == 403, (method, path, headers, answer.text)
                assert answer.headers["content-type"] == "application/json"
                assert "detail" in answer.json()
        assert site.statuses() == before
        assert site.store.get_subscriber(alice.id).interests.keywords == ("diffusion models",)
        own = {"Origin": site.url, "Sec-Fetch-Site": "same-origin"}
        statuses = [
            client.request(method, path, json=body, headers=own).status_code
            for method, path, body in calls
        ]
    assert statuses == [202, 200, 200, 200]
    assert site.statuses() == {
        "alice@example.org": SubscriptionStatus.UNSUBSCRIBED,
        "pending@example.org": SubscriptionStatus.CONFIRMED,
        "new@example.org": SubscriptionStatus.PENDING,
    }


def test_requests_without_origin_headers_are_judged_by_their_csrf_token(site: Site) -> None:
    add_subscriber(site.store)
    with site.client() as client:
        # curl, or a browser that sends neither header: the token decides, as before.
        path, data = _form_post(site, client, "manage")
        forged = client.post(path, data={**data, "csrf_token": "forged"})
        genuine = client.post(path, data=data)
    assert (forged.status_code, genuine.status_code) == (403, 200)
    assert site.statuses()["alice@example.org"] is SubscriptionStatus.PAUSED


# -- 5. no answer names a host the request chose --------------------------------------------


def test_no_answer_names_a_host_taken_from_the_request(site: Site) -> None:
    paths = [
        "/healthz/",
        "/m/x/",
        "/u/x/",
        "/c/x/",
        "/a/x/",
        "/static",
        "/static/",
        "/api/signup/",
        "/api/confirm/",
        "/no-such-page/",
        "/",
    ]
    with site.client() as client:
        for method in ("GET", "POST", "HEAD"):
            for path in paths:
                answer = client.request(method, path, headers={"Host": "evil.example"})
                assert "location" not in answer.headers, (method, path, answer.headers)
                assert "evil.example" not in answer.text, (method, path)
                assert "evil.example" not in str(answer.headers.raw), (method, path)
                assert answer.status_code < 500, (method, path)


# -- 6. HEAD, and the site's own 404 and 405 pages ------------------------------------------


def test_every_page_answers_head_as_it_answers_get(site: Site) -> None:
    alice = add_subscriber(site.store)
    paths = [
        "/",
        "/healthz",
        "/static/site.css",
        "/m/not-a-token",
        site.link(TokenPurpose.UNSUBSCRIBE, alice.id),
        site.link(TokenPurpose.MANAGE, alice.id),
        "/openapi.json",
        "/no-such-page",
    ]
    with site.client() as client:
        for path in paths:
            got = client.get(path)
            head = client.head(path)
            assert head.status_code == got.status_code, (path, head.status_code)
            assert head.content == b"", path
            for name in ("content-type", "content-security-policy", "cache-control"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
            if path in ("/healthz", "/static/site.css", "/openapi.json", "/no-such-page"):
                assert head.headers["content-length"] == got.headers["content-length"], path
    assert site.statuses() == {"alice@example.org": SubscriptionStatus.CONFIRMED}


def test_an_unknown_page_is_the_sites_own_404_page(site: Site) -> None:
    with site.client() as client:
        page = client.get("/no-such-page", headers={"Accept": BROWSER_ACCEPT})
        api = client.get("/api/nope", headers={"Accept": BROWSER_ACCEPT})
        static = client.get("/static/no-such-file.css")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Page not found" in page.text and 'href="/"' in page.text
    _assert_page_headers(page)
    assert static.status_code == 404 and static.headers["content-type"].startswith("text/html")
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}
    _assert_page_headers(api)


def test_a_wrong_method_gets_a_small_page_or_json(site: Site) -> None:
    with site.client() as client:
        page = client.put("/", headers={"Accept": BROWSER_ACCEPT})
        api = client.delete("/api/signup")
    assert page.status_code == 405
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>" in page.text and len(page.content) < 4000
    assert page.headers["allow"]
    _assert_page_headers(page)
    assert api.status_code == 405
    assert api.json() == {"detail": "Method Not Allowed"}
    assert "POST" in api.headers["allow"]
