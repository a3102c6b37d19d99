""" "Feed only, no email": the daily run makes and records a feed-only reader's issue with no
SMTP connection for it, the feed and the archive have it, and the reader chooses it on the
manage page or through the JSON API. Real HTTP, the SMTP sink, SQLite and PostgreSQL."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.mail.compose import shown_why
from service.models import DeliveryStatus
from service.signup.links import subscriber_url
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.archive_web import Web, parse_feed, run_issue, serve_web, store_papers
from tests.support.factories import NOW, SIGNUP_FORM, TODAY, add_subscriber
from tests.support.smtp_sink import SmtpSink

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHECKBOX = re.compile(r'<input type="checkbox" name="feed_only" value="yes"[^>]*>')


@pytest.fixture
def web(store: Store, smtp_sink: SmtpSink) -> Iterator[Web]:
    yield from serve_web(store, smtp_sink)


def manage_path(web: Web, subscriber_id: int) -> str:
    subscriber = web.store.get_subscriber(subscriber_id)
    url = subscriber_url(
        TokenPurpose.MANAGE, subscriber, settings=web.settings, now=datetime.now(UTC)
    )
    return web.path(url)


def save_preferences(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    page = client.get(path)
    match = CSRF.search(page.text)
    assert match is not None, page.text
    data = {**SIGNUP_FORM, "papers": "", "action": "save", "csrf_token": match.group(1), **fields}
    return client.post(path, data=data)


def test_a_feed_only_reader_gets_no_email_and_finds_the_issue_in_the_feed(web: Web) -> None:
    store_papers(web)
    alice = add_subscriber(web.store)
    bob = add_subscriber(web.store, "bob@example.org", feed_only=True)

    summary = run_issue(web)
    again = run_issue(web, at=NOW + timedelta(hours=1))

    assert summary.outcomes == {DeliveryStatus.SENT: 2}
    assert [received.rcpt_tos for received in web.sink.messages] == [("alice@example.org",)]
    assert sum(again.outcomes.values()) == 2 and DeliveryStatus.SENT not in again.outcomes
    delivery = web.store.get_delivery(bob.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.message_id, delivery.sent_at) == (
        DeliveryStatus.SENT,
        None,
        NOW,
    )
    assert delivery.items and all(item.why for item in delivery.items)
    with web.client() as client:
        feed = parse_feed(client.get(web.feed_path(bob)))
        archive = client.get(web.archive_path(bob))
    (entry,) = feed.entries
    assert entry.id.endswith(f"{TODAY}:digest/{bob.id}")
    assert entry.updated_parsed[:6] == NOW.timetuple()[:6]
    content = entry.content[0].value
    for item in delivery.items:
        assert f"Why: {shown_why(item.why)}" in content
    assert f'<h2 id="issue-{TODAY}">' in archive.text
    # The papers count as sent: the next day's run does not repeat them to either reader.
    history = web.store.reading_history([alice.id, bob.id], before=TODAY + timedelta(days=1))
    assert history[bob.id].sent_paper_ids == history[alice.id].sent_paper_ids != frozenset()
    assert history[bob.id].last_sent_at == NOW


def test_a_day_of_feed_only_readers_makes_no_smtp_connection(web: Web) -> None:
    store_papers(web)
    add_subscriber(web.store, "bob@example.org", feed_only=True)

    summary = run_issue(web)

    assert summary.outcomes == {DeliveryStatus.SENT: 1}
    assert web.sink.session_count == 0
    assert web.sink.commands == [] and web.sink.messages == []


def test_the_manage_page_turns_feed_only_on_and_off(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = manage_path(web, alice.id)
    with web.client() as client:
        shown = client.get(path)
        turned_on = save_preferences(client, path, feed_only="yes")
        on = web.store.get_subscriber(alice.id).feed_only
        turned_off = save_preferences(client, path)
        off = web.store.get_subscriber(alice.id).feed_only

    (before,) = CHECKBOX.findall(shown.text)
    assert "checked" not in before
    assert turned_on.status_code == 200 and "Saved." in turned_on.text
    assert on is True
    (ticked,) = CHECKBOX.findall(turned_on.text)
    assert "checked" in ticked
    # An unticked box is not sent at all: saving without it means email again.
    assert turned_off.status_code == 200 and off is False
    assert "checked" not in CHECKBOX.findall(turned_off.text)[0]


def test_the_signup_page_offers_no_feed_only_box(web: Web) -> None:
    with web.client() as client:
        page = client.get("/")
    assert page.status_code == 200 and CHECKBOX.search(page.text) is None


def test_the_api_takes_feed_only_and_answers_the_archive_and_feed_urls(web: Web) -> None:
    alice = add_subscriber(web.store)
    token = manage_path(web, alice.id).rpartition("/")[2]
    with web.client() as client:
        put = client.put(
            f"/api/preferences/{token}",
            json={"interests": ["diffusion models"], "feed_only": True},
        )
        got = client.get(f"/api/preferences/{token}")
        body = got.json()
        archive = client.get(web.path(body["archive_url"]))
        feed = client.get(web.path(body["feed_url"]))

    assert put.status_code == got.status_code == 200
    assert put.json()["feed_only"] is True and body["feed_only"] is True
    assert web.store.get_subscriber(alice.id).feed_only is True
    assert body["archive_url"].startswith(f"{web.url}/archive/")
    assert archive.status_code == 200 and "Your archive" in archive.text
    assert feed.status_code == 200 and parse_feed(feed).entries == []
