"""The web app over real HTTP: uvicorn on 127.0.0.1, httpx, SQLite and PostgreSQL, a private
Redis for the limits and an aiosmtpd sink receiving the confirmation emails."""

import ipaddress
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from service.mail.compose import digest_links
from service.mail.wire import OutgoingMail
from service.models import (
    BouncePolicy,
    MailEventKind,
    Subscriber,
    SubscriptionStatus,
    UnsubscribeChannel,
)
from service.settings import Settings
from service.signup.links import subscriber_url
from service.signup.notices import queue_notice
from service.signup.subscriptions import (
    RequestOrigin,
    is_suppressed,
    new_nonce,
    set_paused,
    unsubscribe,
)
from service.signup.tokens import TokenPurpose, make_confirm_token, make_subscriber_token
from service.store import Store
from service.store.tables import Base
from service.web import client_address
from tests.support.factories import (
    NOW,
    SIGNUP_FORM,
    TODAY,
    add_subscriber,
    make_paper,
    make_settings,
    send_issue,
)
from tests.support.services import free_port, wait_until
from tests.support.smtp_sink import SmtpSink
from tests.support.web_server import serve

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ORIGIN = RequestOrigin(ip=None, user_agent=None, via="test")


@dataclass
class Web:
    url: str
    settings: Settings
    store: Store
    sink: SmtpSink

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False, **kwargs)

    def link(
        self, purpose: TokenPurpose, subscriber: Subscriber, *, made_at: datetime | None = None
    ) -> str:
        """The path of a subscriber's manage or unsubscribe link, made now or at `made_at`."""
        url = subscriber_url(
            purpose, subscriber, settings=self.settings, now=made_at or datetime.now(UTC)
        )
        return url.removeprefix(self.url)

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

        manage = web.link(TokenPurpose.MANAGE, subscriber)
        saved = _post_form(
            client, manage, action="save", **{**SIGNUP_FORM, "interests": "protein folding"}
        )
        assert saved.status_code == 200 and "Saved" in saved.text
        assert web.store.get_subscriber(subscriber.id).interests.keywords == ("protein folding",)
        paused = _post_form(client, manage, action="pause")
        assert "Paused" in paused.text
        assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.PAUSED
        _post_form(client, manage, action="resume")

        leave = web.link(TokenPurpose.UNSUBSCRIBE, subscriber)
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
        leave = client.post(web.link(TokenPurpose.UNSUBSCRIBE, subscriber), data={})
        manage = web.link(TokenPurpose.MANAGE, subscriber)
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
        web.store.get_subscriber(pending.id).preferences(),
        consent=ORIGIN.event("requested", now=NOW),
        confirm_nonce=nonce,
    )
    pending_key = pending.link_key
    good_confirm = make_confirm_token(pending.id, nonce, link_key=pending_key, secret_key=key)
    confirmed = add_subscriber(web.store, "bob@example.org")
    confirmed_key = confirmed.link_key
    unsubscribe_token = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, confirmed.id, link_key=confirmed_key, secret_key=key
    )
    manage_token = make_subscriber_token(
        TokenPurpose.MANAGE, confirmed.id, link_key=confirmed_key, secret_key=key
    )
    expired = make_confirm_token(
        pending.id,
        nonce,
        link_key=pending_key,
        secret_key=key,
        now=datetime.now(UTC) - timedelta(hours=73),
    )
    replaced = make_confirm_token(pending.id, "old-nonce", link_key=pending_key, secret_key=key)
    forged = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, confirmed.id, link_key=confirmed_key, secret_key="other"
    )
    # Bob's id and a genuine MAC, but made without his link key (as for someone before him).
    unbound = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, confirmed.id, link_key=None, secret_key=key
    )
    other_key = make_subscriber_token(
        TokenPurpose.MANAGE, confirmed.id, link_key=pending_key, secret_key=key
    )
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
        "made without the link key": ("POST", f"/u/{unbound}"),
        "made with another's link key": ("GET", f"/m/{other_key}"),
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
        unsubscribe(
            web.store,
            subscriber.id,
            origin=ORIGIN,
            now=datetime.now(UTC),
            channel=UnsubscribeChannel.LINK,
        )
        replayed_get = client.get(path)
        replayed_post = client.post(path, data={"csrf_token": _csrf(page)})
    assert (replayed_get.status_code, replayed_post.status_code) == (400, 400)
    # An old link never brings back someone who left.
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_follows_rfc_8058(web: Web, encoding: str) -> None:
    subscriber = add_subscriber(web.store)
    path = web.link(TokenPurpose.UNSUBSCRIBE, subscriber)
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


def _record_sent_issue(store: Store, subscriber: Subscriber) -> None:
    store.upsert_papers([make_paper(id="p1")], now=NOW)
    send_issue(store, subscriber, paper_ids=["p1"])


def _try_every_link(web: Web, subscriber: Subscriber) -> dict[str, httpx.Response]:
    """Each of a subscriber's links, opened and used the way a browser, a mail client and an
    API client would."""
    unsubscribe_path = web.link(TokenPurpose.UNSUBSCRIBE, subscriber)
    manage_path = web.link(TokenPurpose.MANAGE, subscriber)
    archive = digest_links(subscriber, TODAY, settings=web.settings, now=datetime.now(UTC))
    manage_token = manage_path.removeprefix("/m/")
    unsubscribe_token = unsubscribe_path.removeprefix("/u/")
    with web.client() as client:
        csrf = _csrf(client.get("/"))
        return {
            "GET /u/": client.get(unsubscribe_path),
            "POST /u/ one-click": client.post(
                unsubscribe_path, data={"List-Unsubscribe": "One-Click"}
            ),
            "POST /u/ form": client.post(unsubscribe_path, data={"csrf_token": csrf}),
            "GET /m/": client.get(manage_path),
            "POST /m/ pause": client.post(
                manage_path, data={"action": "pause", "csrf_token": csrf}
            ),
            "POST /m/ export": client.post(
                manage_path, data={"action": "export", "csrf_token": csrf}
            ),
            "GET /a/": client.get(archive.archive_url.removeprefix(web.url)),
            "GET /api/preferences": client.get(f"/api/preferences/{manage_token}"),
            "PUT /api/preferences": client.put(
                f"/api/preferences/{manage_token}", json={"interests": ["casino"]}
            ),
            "POST /api/unsubscribe": client.post(f"/api/unsubscribe/{unsubscribe_token}"),
        }


@pytest.mark.parametrize("leaves_by", ["erase", "remove"])
def test_an_erased_persons_links_are_dead_and_never_reach_the_next_subscriber(
    web: Web, leaves_by: str
) -> None:
    carol = add_subscriber(web.store, "carol@example.org")
    _record_sent_issue(web.store, carol)
    unsubscribe_path = web.link(TokenPurpose.UNSUBSCRIBE, carol)
    with web.client() as client:
        assert client.get(unsubscribe_path).status_code == 200
        invalid_page = client.get("/u/AAAAAAAAAAAAAAAAAAAAAAAA").text
    if leaves_by == "erase":
        with web.client() as client:
            manage = web.link(TokenPurpose.MANAGE, carol)
            erased = _post_form(client, manage, action="erase", confirm_erase="yes")
        assert erased.status_code == 200
    else:
        web.store.remove_subscriber("carol@example.org")

    frank = add_subscriber(web.store, "frank@example.org", interests={"keywords": ["x"]})
    answers = _try_every_link(web, carol)

    assert frank.id > carol.id  # an id is never given again
    for name, answer in answers.items():
        assert answer.status_code == 400, name
        if "/api/" not in name:
            assert answer.text == invalid_page, name
        else:
            assert answer.json() == {"detail": "link not valid"}, name
    after = web.store.get_subscriber(frank.id)
    assert (after.status, after.interests.keywords, after.consent) == (
        SubscriptionStatus.CONFIRMED,
        ("x",),
        (),
    )


def test_links_from_before_link_keys_work_only_for_their_own_row(web: Web) -> None:
    """Rows from before migration 0007 have no link key: the unsubscribe links already in
    their mailboxes keep working, but one made before the row existed (for someone who had
    the id before) does not."""
    created = datetime.now(UTC) - timedelta(days=10)
    subscriber = add_subscriber(web.store, now=created)
    with web.store.engine.begin() as connection:
        connection.execute(text("UPDATE subscribers SET link_key = NULL"))
    legacy = web.store.get_subscriber(subscriber.id)
    key = web.settings.secret_key.get_secret_value()

    def unsubscribe_path(made_at: datetime) -> str:
        token = make_subscriber_token(
            TokenPurpose.UNSUBSCRIBE, legacy.id, link_key=None, secret_key=key, now=made_at
        )
        return f"/u/{token}"

    with web.client() as client:
        before = client.get(unsubscribe_path(created - timedelta(days=1)))
        bound = client.get(web.link(TokenPurpose.UNSUBSCRIBE, subscriber))
        after = client.post(
            unsubscribe_path(created + timedelta(days=1)), data={"List-Unsubscribe": "One-Click"}
        )
    assert (before.status_code, bound.status_code, after.status_code) == (400, 400, 200)
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


def test_a_manage_link_expires_and_its_page_mails_a_fresh_one(web: Web) -> None:
    subscriber = add_subscriber(web.store, "ada@example.org")
    days = web.settings.manage_link_max_age_days
    made = datetime.now(UTC) - timedelta(days=days, minutes=1)
    old = web.link(TokenPurpose.MANAGE, subscriber, made_at=made)
    recent = web.link(TokenPurpose.MANAGE, subscriber, made_at=made + timedelta(minutes=2))
    with web.client() as client:
        assert client.get(recent).status_code == 200
        expired = client.get(old)
        assert expired.status_code == 410
        assert "expired" in expired.text and "Email me a fresh link" in expired.text
        assert "ada@example.org" not in expired.text
        # Nothing can be done with it but asking for a fresh one.
        refused = client.post(old, data={"action": "pause", "csrf_token": _csrf(expired)})
        assert refused.status_code == 410
        api = client.get(f"/api/preferences/{old.removeprefix('/m/')}")
        assert api.status_code == 410 and "/api/manage-link" in api.json()["detail"]
        sent = client.post(f"{old}/renew", data={"csrf_token": _csrf(expired)})
        assert sent.status_code == 200 and "Check your inbox" in sent.text
        wait_until(lambda: len(web.sink.messages) == 1, timeout=10, what="the fresh link")
        (received,) = web.sink.messages
        assert received.rcpt_tos == ("ada@example.org",)
        text_part = received.message.get_body(preferencelist=("plain",))
        assert text_part is not None
        (url,) = [w for w in text_part.get_content().split() if w.startswith(f"{web.url}/m/")]
        fresh = client.get(url.removeprefix(web.url))
        assert fresh.status_code == 200 and "ada@example.org" in fresh.text
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.CONFIRMED


def test_the_api_mails_a_fresh_manage_link_for_an_expired_one(web: Web) -> None:
    subscriber = add_subscriber(web.store, "ada@example.org")
    made = datetime.now(UTC) - timedelta(days=web.settings.manage_link_max_age_days + 1)
    token = web.link(TokenPurpose.MANAGE, subscriber, made_at=made).removeprefix("/m/")
    with web.client() as client:
        accepted = client.post("/api/manage-link", json={"token": token})
        junk = client.post("/api/manage-link", json={"token": "AAAAAAAAAAAAAAAAAAAAAAAA"})
    assert (accepted.status_code, junk.status_code) == (202, 400)
    wait_until(lambda: len(web.sink.messages) == 1, timeout=10, what="the fresh link")
    assert web.sink.messages[0].rcpt_tos == ("ada@example.org",)


def test_unsubscribe_and_archive_links_never_expire(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    _record_sent_issue(web.store, subscriber)
    years_ago = datetime.now(UTC) - timedelta(days=3 * 365)
    leave = web.link(TokenPurpose.UNSUBSCRIBE, subscriber, made_at=years_ago)
    archive = digest_links(subscriber, TODAY, settings=web.settings, now=years_ago)
    with web.client() as client:
        shown = client.get(archive.archive_url.removeprefix(web.url))
        left = client.post(leave, data={"List-Unsubscribe": "One-Click"})
    assert (shown.status_code, left.status_code) == (200, 200)
    assert web.store.get_subscriber(subscriber.id).status is SubscriptionStatus.UNSUBSCRIBED


def test_a_link_confirms_what_was_asked_when_it_was_sent_and_shows_it(web: Web) -> None:
    with web.client() as victim:
        _sign_up(victim, "ada@example.org", interests="protein folding", forwarded_for="192.0.2.1")
        (path,) = web.confirmation_links(1)
    with web.client() as attacker:
        # Within the mailbox's interval: nothing is sent, and nothing may change.
        answer = _sign_up(
            attacker, "ada@example.org", interests="casino bonus", forwarded_for="192.0.2.66"
        )
        assert answer.status_code == 200
    with web.client() as victim:
        page = victim.get(path)
        assert "protein folding" in page.text and "casino" not in page.text
        assert "Weekly on Wednesday at 07:00, Europe/Paris time" in page.text
        victim.post(path, data={"csrf_token": _csrf(page)})
    subscriber = web.store.find_subscriber("ada@example.org")
    assert subscriber.status is SubscriptionStatus.CONFIRMED
    assert subscriber.interests.keywords == ("protein folding",)
    assert len(web.sink.messages) == 1


def test_the_consent_record_of_an_address_signed_up_again_and_again_stays_small(
    web: Web,
) -> None:
    port = free_port()
    settings = web.settings.model_copy(
        update={
            "public_base_url": f"http://127.0.0.1:{port}",
            "confirm_email_interval_seconds": 0.0,
            "confirm_emails_per_day": 1000,
        }
    )
    for _ in serve(settings, web.store, port):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n in range(30):
                answer = client.post(
                    "/api/signup",
                    json={"email": "ada@example.org", "interests": ["x"]},
                    headers={"User-Agent": "A" * 600, "X-Forwarded-For": f"192.0.2.{n + 1}"},
                )
                assert answer.status_code == 202
    consent = web.store.find_subscriber("ada@example.org").consent
    assert len(consent) <= 20
    assert consent[0].ip == "192.0.2.1" and consent[-1].ip == "192.0.2.30"
    stored = json.dumps([event.model_dump(mode="json") for event in consent])
    assert len(stored) < 8 * 1024


@pytest.mark.parametrize(
    "email",
    ["jörg@example.net", "ｊｏｒｇ@example.net", "jorg＠example.net"],  # noqa: RUF001
)
def test_an_address_that_cannot_be_sent_to_is_refused_clearly(web: Web, email: str) -> None:
    with web.client() as client:
        api = client.post("/api/signup", json={"email": email})
        form = _sign_up(client, email)
    assert api.status_code == 422 and "invalid email address" in api.text
    assert email not in api.text
    assert form.status_code == 422 and "Enter an email address" in form.text
    assert web.store.list_subscribers() == []
    assert web.sink.messages == []


@pytest.mark.parametrize(
    "field", ["interests", "about", "time_zone", "email"], ids=lambda field: field
)
def test_control_characters_are_refused_the_same_for_every_address(web: Web, field: str) -> None:
    add_subscriber(web.store, "known@example.org")
    form_answers, api_answers = set(), set()
    api_fields = {"interests": "interests", "about": "interests_text", "time_zone": "time_zone"}
    with web.client() as client:
        for n, email in enumerate(["new@example.org", "known@example.org"]):
            typed = {"email": email, "interests": "diffusion", "about": "", "time_zone": "UTC"}
            typed[field] = typed[field][:2] + "\x00\x01" + typed[field][2:]
            form = _sign_up(client, forwarded_for=f"192.0.2.{n + 1}", **typed)
            body: dict[str, Any] = {"email": typed["email"]}
            if field in api_fields:
                value = typed[field]
                body[api_fields[field]] = [value] if field == "interests" else value
            api = client.post("/api/signup", json=body)
            # The form shows what was typed again; apart from that, one answer for both.
            # (and a CSRF token stamped to the second, which may differ).
            shown = CSRF.sub("", form.text.replace(typed["email"], ""))
            form_answers.add((form.status_code, shown))
            api_answers.add((api.status_code, api.text))
    assert [status for status, _ in form_answers] == [422]
    assert [status for status, _ in api_answers] == [422]
    assert [s.email for s in web.store.list_subscribers()] == ["known@example.org"]
    assert web.sink.messages == []


def test_the_export_holds_every_column_and_every_table_about_the_subscriber(web: Web) -> None:
    subscriber = add_subscriber(web.store, "ada@example.org")
    _record_sent_issue(web.store, subscriber)
    # An email waiting to go out to them, as a signup leaves one (see service.signup.notices).
    waiting = OutgoingMail("digest@paperwire.test", ("ada@example.org",), "<n@x>", b"Hi.\r\n")
    queue_notice(web.store, waiting, subscriber_id=subscriber.id, kind="test", now=NOW)
    web.store.record_bounce(
        subscriber.id, MailEventKind.SOFT_BOUNCE, via="dsn", at=NOW, policy=BouncePolicy()
    )
    with web.client() as client:
        exported = _post_form(client, web.link(TokenPurpose.MANAGE, subscriber), action="export")
    data = json.loads(exported.text)
    subscribers = Base.metadata.tables["subscribers"]
    assert set(data["subscriber"]) == {column.name for column in subscribers.columns}
    assert data["subscriber"]["bounce_score"] == 0.5
    assert data["subscriber"]["link_key"] == subscriber.link_key
    for table in Base.metadata.sorted_tables:
        refers = any(fk.column.table is subscribers for fk in table.foreign_keys)
        if refers:
            assert table.name in data, table.name
            (row,) = data[table.name]
            assert set(row) == {column.name for column in table.columns}, table.name
    assert data["deliveries"][0]["paper_ids"] == ["p1"]
    assert data["notices"][0]["data"] == "Hi.\r\n"
    assert data["mail_events"][0]["kind"] == "soft_bounce"


def test_erasure_leaves_no_copy_in_the_sqlite_files(
    sqlite_store: Store, smtp_sink: SmtpSink
) -> None:
    port = free_port()
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{port}", redis_url="", mail_url=smtp_sink.url
    )
    database = Path(str(sqlite_store.url.database))
    for _ in serve(settings, sqlite_store, port):
        web = Web(f"http://127.0.0.1:{port}", settings, sqlite_store, smtp_sink)
        for n in range(50):  # enough rows to fill pages, and WAL frames of each
            add_subscriber(sqlite_store, f"person{n}@example.org")
        ada = add_subscriber(sqlite_store, "ada.lovelace@example.org")
        _record_sent_issue(sqlite_store, ada)
        set_paused(
            sqlite_store,
            ada.id,
            paused=True,
            origin=ORIGIN,
            now=NOW,
        )
        with web.client(headers={"User-Agent": "UniqueAgent/4.2"}) as client:
            manage = web.link(TokenPurpose.MANAGE, ada)
            erased = _post_form(client, manage, action="erase", confirm_erase="yes")
            assert erased.status_code == 200
        files = [path for path in database.parent.iterdir() if path.name.startswith(database.name)]
        assert files
        for path in files:
            assert b"ada.lovelace@example.org" not in path.read_bytes(), path.name
            assert b"person49@example.org" in path.read_bytes() or path.name != database.name


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
    unsubscribe(web.store, left.id, origin=ORIGIN, now=NOW, channel=UnsubscribeChannel.LINK)
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
    send_issue(web.store, subscriber, paper_ids=["p1"])
    manage = web.link(TokenPurpose.MANAGE, subscriber)
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
    send_issue(web.store, subscriber, paper_ids=["p1"])
    now = datetime.now(UTC)
    links = digest_links(subscriber, TODAY, settings=web.settings, now=now)
    with web.client() as client:
        shown = client.get(links.archive_url.removeprefix(web.url))
        missing = client.get(
            digest_links(
                subscriber, TODAY - timedelta(days=1), settings=web.settings, now=now
            ).archive_url.removeprefix(web.url)
        )
    assert shown.status_code == 200
    assert "Consistency &lt;models&gt; &amp; friends" in shown.text
    assert "script-src" not in shown.headers["content-security-policy"]
    # The email's own HTML, dark scheme included, whose <style> the page's policy lets apply.
    assert "@media (prefers-color-scheme: dark)" in shown.text
    assert "style-src 'unsafe-inline'" in shown.headers["content-security-policy"]
    # The copy keeps the way out, but never mints a manage link: its own link never expires.
    assert "/u/" in shown.text and "/m/" not in shown.text
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
        manage = web.link(TokenPurpose.MANAGE, subscriber).removeprefix("/m/")
        current = client.get(f"/api/preferences/{manage}").json()
        assert current["interests"] == ["robot learning"]
        changed = client.put(
            f"/api/preferences/{manage}",
            json={"interests": ["protein folding"], "time_zone": "Asia/Tokyo"},
        )
        assert changed.json()["time_zone"] == "Asia/Tokyo"
        bad = client.put(f"/api/preferences/{manage}", json={"time_zone": "Mars/Base"})
        assert bad.status_code == 422
        leave = web.link(TokenPurpose.UNSUBSCRIBE, subscriber).removeprefix("/u/")
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
    old = make_subscriber_token(
        TokenPurpose.UNSUBSCRIBE, subscriber.id, link_key=subscriber.link_key, secret_key="old-key"
    )
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
