"""👍/👎 over real HTTP: a day's digest goes through the SMTP sink, and the feedback links taken
from the received message are opened and used against uvicorn on 127.0.0.1, as a reader, a
mail scanner and an API client would. SQLite and PostgreSQL."""

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from service.delivery.pipeline import run_day
from service.models import DeliveryStatus, Subscriber
from service.settings import Settings
from service.signup.links import feedback_urls, subscriber_url
from service.signup.tokens import TokenPurpose, make_feedback_token
from service.store import Store
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

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
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

    def feedback_path(self, subscriber: Subscriber, paper_id: str, vote: str) -> str:
        urls = feedback_urls(subscriber, [paper_id], settings=self.settings, now=datetime.now(UTC))
        return self.path(f"{urls[paper_id]}?vote={vote}")

    def votes(self, subscriber: Subscriber) -> tuple[tuple[str, ...], tuple[str, ...]]:
        interests = self.store.get_subscriber(subscriber.id).interests
        return interests.liked, interests.disliked


@pytest.fixture
def web(store: Store, smtp_sink: SmtpSink) -> Iterator[Web]:
    port = free_port()
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{port}", mail_url=smtp_sink.url, redis_url=""
    )
    for _ in serve(settings, store, port):
        yield Web(url=f"http://127.0.0.1:{port}", settings=settings, store=store, sink=smtp_sink)


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def buttons(page: httpx.Response) -> list[str]:
    """The verdicts the page's form buttons would post."""
    return re.findall(r'<button type="submit" name="vote" value="(\w+)"', page.text)


def hidden_vote(page: httpx.Response) -> str | None:
    match = re.search(r'<input type="hidden" name="vote" value="(\w+)">', page.text)
    return match.group(1) if match else None


def press(client: httpx.Client, page: httpx.Response, path: str, **fields: str) -> httpx.Response:
    """Submit the page's form as the browser would: its CSRF token and the given fields."""
    return client.post(path.partition("?")[0], data={"csrf_token": csrf_of(page), **fields})


def received_digest(web: Web) -> EmailMessage:
    """A day's run for every due subscriber, and the one digest the sink received."""
    web.store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    web.store.upsert_papers(PAPERS, now=NOW - timedelta(hours=3))
    summary = asyncio.run(
        run_day(web.store, issue_date=TODAY, settings=web.settings, now=lambda: NOW)
    )
    assert summary.outcomes == {DeliveryStatus.SENT: 1}
    wait_until(lambda: len(web.sink.messages) == 1, timeout=10, what="the digest")
    return web.sink.messages[0].message


def feedback_links(message: EmailMessage, web: Web) -> dict[str, list[str]]:
    """The feedback links of each part of a received digest, in order."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    shape = re.escape(web.url) + r"/f/[A-Za-z0-9_-]+\?vote=(?:like|dislike)"
    return {
        "text": re.findall(shape, text.get_content()),
        "html": [
            url
            for url in re.findall(r'href="([^"]+)"', html.get_content())
            if re.fullmatch(shape, url)
        ],
    }


def test_the_links_of_a_received_digest_show_the_paper_and_record_only_when_pressed(
    web: Web,
) -> None:
    alice = add_subscriber(web.store)
    links = feedback_links(received_digest(web), web)

    assert links["text"] == links["html"] and len(links["text"]) == 2 * len(PAPERS)
    # A mail scanner opens every link, without cookies: nothing is recorded.
    shown = {}
    for url in links["text"]:
        with web.client() as scanner:
            shown[url] = scanner.get(web.path(url))
            assert shown[url].status_code == 200
    assert web.votes(alice) == ((), ())
    # Each paper has its own page, offered as both verdicts, in the order of the digest.
    (like,) = [u for u, page in shown.items() if "Discrete" in page.text and "=like" in u]
    assert f"{like.partition('?')[0]}?vote=dislike" in links["text"]
    assert links["text"].index(like) % 2 == 0

    with web.client() as reader:
        page = reader.get(web.path(like))
        assert page.status_code == 200
        assert "Discrete diffusion models for &lt;text&gt; &amp; code</a>" in page.text
        assert 'href="https://arxiv.org/abs/2511.00002"' in page.text
        assert buttons(page) == ["like"] and "👍 More like this" in page.text
        assert 'href="?vote=dislike"' in page.text  # the other verdict, one more page away
        assert web.votes(alice) == ((), ())
        thanks = press(reader, page, web.path(like), vote="like")
        again = press(reader, reader.get(web.path(like)), web.path(like), vote="like")

    assert thanks.status_code == 200 and "Thanks: more like this" in thanks.text
    assert again.status_code == 200 and "You had already said so" in again.text
    assert web.votes(alice) == (("2511.00002",), ())


def test_the_other_verdict_replaces_the_first_and_undo_puts_it_back(web: Web) -> None:
    alice = add_subscriber(web.store)
    web.store.upsert_papers(PAPERS, now=NOW)
    like = web.feedback_path(alice, "2511.00001", "like")
    dislike = web.feedback_path(alice, "2511.00001", "dislike")

    with web.client() as reader:
        liked = press(reader, reader.get(like), like, vote="like")
        assert hidden_vote(liked) == "none"  # undo: back to no verdict
        page = reader.get(dislike)
        assert buttons(page) == ["dislike"] and "said “👍 More like this”" in page.text
        disliked = press(reader, page, dislike, vote="dislike")
        assert "Thanks: less like this" in disliked.text
        assert web.votes(alice) == ((), ("2511.00001",))
        # The thanks page carries the verdict it replaced; its undo posts it back.
        assert hidden_vote(disliked) == "like"
        undone = press(reader, disliked, dislike, vote="like", undo="yes")
        assert undone.status_code == 200 and "<h1>Undone</h1>" in undone.text
        assert hidden_vote(undone) is None  # nothing more to undo
        assert web.votes(alice) == (("2511.00001",), ())
        # Pressing a verdict already held offers to take it back instead.
        same = press(reader, reader.get(like), like, vote="like")
        assert hidden_vote(same) == "none" and "Take it back" in same.text
        taken_back = press(reader, same, like, vote="none")
        assert "Verdict taken back" in taken_back.text and hidden_vote(taken_back) == "like"
    assert web.votes(alice) == ((), ())


def test_a_link_cut_short_of_its_verdict_offers_both(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.feedback_path(alice, "2511.00001", "like").partition("?")[0]
    with web.client() as reader:
        page = reader.get(path)
        odd = reader.get(f"{path}?vote=maybe")
        assert buttons(page) == buttons(odd) == ["like", "dislike"]
        bad = press(reader, page, path, vote="maybe")
        assert bad.status_code == 400
        disliked = press(reader, page, path, vote="dislike")
    assert disliked.status_code == 200
    assert web.votes(alice) == ((), ("2511.00001",))


def test_a_paper_no_longer_stored_still_records_and_shows_its_id(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.feedback_path(alice, "2511.09999", "dislike")
    with web.client() as reader:
        page = reader.get(path)
        assert page.status_code == 200 and "Paper 2511.09999" in page.text
        thanks = press(reader, page, path, vote="dislike")
    assert thanks.status_code == 200 and "Paper 2511.09999" in thanks.text
    assert web.votes(alice) == ((), ("2511.09999",))


def test_a_post_without_its_csrf_token_records_nothing(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.feedback_path(alice, "2511.00001", "like")
    with web.client() as reader:
        token = csrf_of(reader.get(path))
        missing = reader.post(path, data={"vote": "like"})
    with web.client() as other:
        # A token copied into another browser, without the cookie it is bound to.
        stolen = other.post(path, data={"vote": "like", "csrf_token": token})
    assert (missing.status_code, stolen.status_code) == (403, 403)
    assert web.votes(alice) == ((), ())


def _misused_links(web: Web, alice: Subscriber, bob: Subscriber) -> dict[str, str]:
    key = web.settings.secret_key.get_secret_value()
    good = web.feedback_path(alice, "2511.00001", "like").partition("?")[0]
    token = good.removeprefix("/f/")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    unsubscribe = web.path(
        subscriber_url(TokenPurpose.UNSUBSCRIBE, alice, settings=web.settings, now=NOW)
    )

    def made(subscriber_id: int, link_key: str | None, secret: str = key) -> str:
        return "/f/" + make_feedback_token(
            subscriber_id, "2511.00001", link_key=link_key, secret_key=secret
        )

    return {
        "tampered": f"/f/{flipped}",
        "truncated": good[:-4],
        "junk": "/f/%3Cscript%3E",
        "another subscriber's id with this one's key": made(bob.id, alice.link_key),
        "this subscriber's id with another's key": made(alice.id, bob.link_key),
        "made without the link key": made(alice.id, None),
        "made with another secret": made(alice.id, alice.link_key, "other"),
        "unsubscribe as feedback": "/f/" + unsubscribe.removeprefix("/u/"),
        "feedback as unsubscribe": "/u/" + token,
        "feedback as manage": "/m/" + token,
        "feedback as archive": "/a/" + token,
    }


def test_misused_links_get_the_shared_invalid_page_and_record_nothing(web: Web) -> None:
    alice = add_subscriber(web.store)
    bob = add_subscriber(web.store, "bob@example.org")
    with web.client() as client:
        invalid_page = client.get("/u/AAAAAAAAAAAAAAAAAAAAAAAA").text
        csrf = csrf_of(client.get(web.feedback_path(alice, "2511.00001", "like")))
        for name, path in _misused_links(web, alice, bob).items():
            shown = client.get(f"{path}?vote=like")
            assert (shown.status_code, shown.text) == (400, invalid_page), name
            if not path.startswith("/a/"):  # an archive link is only ever opened
                pressed = client.post(path, data={"csrf_token": csrf, "vote": "like"})
                assert (pressed.status_code, pressed.text) == (400, invalid_page), name
            if path.startswith("/f/"):
                token = path.removeprefix("/f/")
                api = client.post("/api/feedback", json={"token": token, "vote": "like"})
                assert api.status_code == 400, name
                assert api.json() == {"detail": "link not valid"}, name
    assert web.votes(alice) == web.votes(bob) == ((), ())
    assert {s.status.value for s in web.store.list_subscribers()} == {"confirmed"}


@pytest.mark.parametrize("leaves_by", ["erase", "remove"])
def test_the_links_of_someone_erased_are_dead_for_whoever_comes_next(
    web: Web, leaves_by: str
) -> None:
    carol = add_subscriber(web.store, "carol@example.org")
    path = web.feedback_path(carol, "2511.00001", "like")
    with web.client() as client:
        assert client.get(path).status_code == 200
        if leaves_by == "erase":
            # Made at the server's clock: a manage link expires, judged by that clock.
            made_now = datetime.now(UTC)
            manage = web.path(
                subscriber_url(TokenPurpose.MANAGE, carol, settings=web.settings, now=made_now)
            )
            page = client.get(manage)
            erased = client.post(
                manage,
                data={"csrf_token": csrf_of(page), "action": "erase", "confirm_erase": "yes"},
            )
            assert erased.status_code == 200
        else:
            web.store.remove_subscriber("carol@example.org")
        carol_again = add_subscriber(web.store, "carol@example.org")
        shown = client.get(path)
        api = client.post(
            "/api/feedback",
            json={"token": path.partition("?")[0].removeprefix("/f/"), "vote": "like"},
        )
    assert (shown.status_code, api.status_code) == (400, 400)
    assert carol_again.id != carol.id and web.votes(carol_again) == ((), ())


def test_the_json_api_records_replaces_and_takes_back(web: Web) -> None:
    alice = add_subscriber(web.store)
    token = web.feedback_path(alice, "2511.00001", "like").partition("?")[0].removeprefix("/f/")
    with web.client() as client:
        answers = [
            client.post("/api/feedback", json={"token": token, "vote": vote}).json()
            for vote in ("like", "like", "dislike", None)
        ]
        assert "/api/feedback" in client.get("/openapi.json").json()["paths"]
        bad_vote = client.post("/api/feedback", json={"token": token, "vote": "love"})
        no_vote = client.post("/api/feedback", json={"token": token})
        too_long = client.post("/api/feedback", json={"token": "A" * 600, "vote": "like"})
    assert answers == [
        {"paper_id": "2511.00001", "vote": "like", "previous": None},
        {"paper_id": "2511.00001", "vote": "like", "previous": "like"},
        {"paper_id": "2511.00001", "vote": "dislike", "previous": "like"},
        {"paper_id": "2511.00001", "vote": None, "previous": "dislike"},
    ]
    assert (bad_vote.status_code, no_vote.status_code, too_long.status_code) == (422, 422, 422)
    assert web.votes(alice) == ((), ())


def test_the_view_in_browser_copy_carries_working_feedback_links(web: Web) -> None:
    alice = add_subscriber(web.store)
    message = received_digest(web)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    (archive,) = re.findall(re.escape(web.url) + r"/a/[A-Za-z0-9_-]+", text.get_content())
    with web.client() as reader:
        copy = reader.get(web.path(archive))
        (like, *_) = [url for url in re.findall(r'href="([^"]+)"', copy.text) if "/f/" in url]
        page = reader.get(web.path(like))
        press(reader, page, web.path(like), vote="like")
    delivery = web.store.get_delivery(alice.id, TODAY)
    assert delivery is not None
    assert web.votes(alice) == ((delivery.paper_ids[0],), ())


def test_the_feedback_page_answers_head_and_carries_the_pages_headers(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.feedback_path(alice, "2511.00001", "like")
    with web.client() as client:
        head = client.head(path)
        page = client.get(path)
    assert (head.status_code, head.content) == (200, b"")
    assert page.headers["referrer-policy"] == "no-referrer"  # the URL carries a token
    assert page.headers["cache-control"] == "no-store"
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and "style=" not in page.text
    assert web.votes(alice) == ((), ())
