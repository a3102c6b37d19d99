"""A reader's archive and Atom feed over real HTTP (uvicorn on 127.0.0.1, httpx, and feedparser
as a feed reader), on SQLite and PostgreSQL: issues sent through the SMTP sink keep their
why-lines, the archive lists them a page at a time, the feed carries each issue's copy and
answers 304 while it is current, and the links die with their subscriber."""

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import feedparser
import httpx
import pytest

from service.models import DeliveryStatus, Interests, IssueItem, ProfilePreferences, Subscriber
from service.signup.archive import ARCHIVE_PAGE_SIZE
from service.signup.feed import FEED_ENTRIES
from service.signup.links import archive_list_url, feed_url, issue_url, subscriber_url
from service.signup.subscriptions import erase_subscriber
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.archive_web import (
    ATOM,
    PAPERS,
    Web,
    parse_feed,
    run_issue,
    serve_web,
    store_papers,
)
from tests.support.factories import NOW, TODAY, add_subscriber, make_paper, send_issue
from tests.support.services import wait_until
from tests.support.smtp_sink import SmtpSink


@pytest.fixture
def web(store: Store, smtp_sink: SmtpSink) -> Iterator[Web]:
    yield from serve_web(store, smtp_sink)


def send_issues(web: Web, subscriber: Subscriber, count: int) -> list[date]:
    """`count` issues on consecutive days up to TODAY, each of one paper with its why-line;
    their dates, oldest first."""
    days = [TODAY - timedelta(days=count - 1 - n) for n in range(count)]
    # A paper per day, the same for every subscriber sent that day's issue.
    papers = [make_paper(id=f"day-{day}", title=f"Paper of {day}") for day in days]
    web.store.upsert_papers(papers, now=NOW - timedelta(days=count + 1))
    for day, paper in zip(days, papers, strict=True):
        sent_at = datetime.combine(day, NOW.time(), tzinfo=UTC)
        items = [IssueItem(paper_id=paper.id, why=f"Why of {day}")]
        send_issue(web.store, subscriber, day, paper_ids=[paper.id], items=items, now=sent_at)
    return days


def issue_dates_listed(page: httpx.Response) -> list[str]:
    return re.findall(r'<h2 id="issue-([0-9-]+)">', page.text)


def test_the_archived_copy_shows_the_why_lines_the_email_had(web: Web) -> None:
    store_papers(web)
    alice = add_subscriber(web.store)
    run_issue(web)
    wait_until(lambda: len(web.sink.messages) == 1, timeout=10, what="the digest")
    html_part = web.sink.messages[0].message.get_body(preferencelist=("html",))
    assert html_part is not None
    emailed_whys = re.findall(r'<p class="why"[^>]*>(Why: [^<]+)</p>', html_part.get_content())

    delivery = web.store.get_delivery(alice.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.SENT
    assert [item.paper_id for item in delivery.items] == list(delivery.paper_ids)
    assert all(item.why and item.section == "" for item in delivery.items)
    assert len(emailed_whys) == len(delivery.items) == len(PAPERS)
    with web.client() as client:
        (copy_url,) = re.findall(r'href="([^"]+/a/[^"]+)"', html_part.get_content())
        copy = client.get(web.path(copy_url))
    assert copy.status_code == 200
    assert re.findall(r'<p class="why"[^>]*>(Why: [^<]+)</p>', copy.text) == emailed_whys


def test_an_issue_from_before_why_lines_were_kept_still_opens(web: Web) -> None:
    alice = add_subscriber(web.store)
    web.store.upsert_papers([make_paper(id="p1")], now=NOW)
    send_issue(web.store, alice, paper_ids=["p1"])  # no items, as before migration 0010
    with web.client() as client:
        copy = client.get(web.path(issue_url(alice, TODAY, settings=web.settings, now=NOW)))
        listed = client.get(web.archive_path(alice))
    assert copy.status_code == 200 and "Consistency models" in copy.text
    assert 'class="why"' not in copy.text
    assert issue_dates_listed(listed) == [TODAY.isoformat()]


def test_the_archive_lists_issues_newest_first_a_page_at_a_time(web: Web) -> None:
    alice = add_subscriber(web.store)
    bob = add_subscriber(web.store, "bob@example.org")
    days = send_issues(web, alice, ARCHIVE_PAGE_SIZE + 3)
    send_issues(web, bob, 1)
    newest_first = [day.isoformat() for day in reversed(days)]
    path = web.archive_path(alice)

    with web.client() as client:
        first = client.get(path)
        second = client.get(f"{path}?page=2")
        copy = client.get(
            web.path(re.findall(r'<h2 id="issue-[0-9-]+"><a href="([^"]+)"', first.text)[0])
        )
        beyond = [client.get(f"{path}?page={page}") for page in ("3", "0", "-1", "x", "9" * 40)]

    assert first.status_code == second.status_code == 200
    assert issue_dates_listed(first) == newest_first[:ARCHIVE_PAGE_SIZE]
    assert issue_dates_listed(second) == newest_first[ARCHIVE_PAGE_SIZE:]
    assert f"Why: Why of {days[-1]}" in first.text and f"Paper of {days[-1]}" in first.text
    assert 'rel="next" href="?page=2"' in first.text and 'rel="prev"' not in first.text
    assert 'rel="prev" href="?page=1"' in second.text and 'rel="next"' not in second.text
    assert "Page 2 of 2" in second.text
    assert first.text.count("<li>") == ARCHIVE_PAGE_SIZE
    # Each issue opens as its "view in browser" copy.
    assert copy.status_code == 200 and f"Why: Why of {days[-1]}" in copy.text
    assert [page.status_code for page in beyond] == [404] * 5
    # The feed is named for feed readers and for people.
    feed = feed_url(alice, settings=web.settings)
    head = first.text.partition("</head>")[0]
    assert (
        f'<link rel="alternate" type="{ATOM}" title="Your Paperwire digest" href="{feed}">' in head
    )
    assert f'href="{feed}"' in first.text.split("</head>")[1]


def test_an_archive_without_issues_says_so(web: Web) -> None:
    alice = add_subscriber(web.store)
    with web.client() as client:
        page = client.get(web.archive_path(alice))
        feed = parse_feed(client.get(web.feed_path(alice)))
    assert page.status_code == 200 and "No issues yet" in page.text
    assert feed.entries == []
    assert feed.feed.updated_parsed[:6] == alice.created_at.timetuple()[:6]


def test_the_feed_holds_each_issue_as_its_copy_shows_it(web: Web) -> None:
    store_papers(web)
    alice = add_subscriber(web.store)
    run_issue(web)
    later = NOW + timedelta(days=1, minutes=3)
    web.store.upsert_papers(
        [make_paper(id="2511.00003", title="Diffusion models, the next day")],
        now=later - timedelta(hours=3),
    )
    run_issue(web, TODAY + timedelta(days=1), at=later)
    with web.client() as client:
        first = client.get(web.feed_path(alice))
        again = client.get(web.feed_path(alice))
        copies = [
            client.get(
                web.path(issue_url(alice, day, settings=web.settings, now=datetime.now(UTC)))
            )
            for day in (TODAY + timedelta(days=1), TODAY)
        ]

    feed, fetched_again = parse_feed(first), parse_feed(again)
    assert first.headers["content-type"].startswith(ATOM)
    assert first.content == again.content
    assert feed.version == "atom10"
    assert feed.feed.title == "Your Paperwire digest"
    assert feed.feed.author == "Paperwire"
    assert feed.feed.id == f"tag:paperwire.test,{alice.created_at.date()}:feed/{alice.id}"
    links = {link.rel: link.href for link in feed.feed.links}
    assert links == {
        "self": feed_url(alice, settings=web.settings),
        "alternate": archive_list_url(alice, settings=web.settings),
    }
    assert [entry.id for entry in feed.entries] == [
        f"tag:paperwire.test,{TODAY + timedelta(days=1)}:digest/{alice.id}",
        f"tag:paperwire.test,{TODAY}:digest/{alice.id}",
    ]
    assert [entry.id for entry in fetched_again.entries] == [entry.id for entry in feed.entries]
    sent_times = [later, NOW]
    assert [entry.updated_parsed[:6] for entry in feed.entries] == [
        moment.timetuple()[:6] for moment in sent_times
    ]
    assert feed.feed.updated_parsed[:6] == later.timetuple()[:6]
    assert parsedate_to_datetime(first.headers["last-modified"]) == later.replace(microsecond=0)
    # Each entry is titled as its email was.
    wait_until(lambda: len(web.sink.messages) == 2, timeout=10, what="the digests")
    subjects = [str(received.message["Subject"]) for received in web.sink.messages]
    assert [entry.title for entry in feed.entries] == subjects[::-1]
    for entry, copy in zip(feed.entries, copies, strict=True):
        assert copy.status_code == 200
        (content,) = entry.content
        assert content.type == "text/html"
        assert content.value == copy.text
        assert entry.link == entry.links[0].href and "/a/" in entry.link
        assert "Why: " in content.value
    assert (
        "Discrete diffusion models for &lt;text&gt; &amp; code" in feed.entries[1].content[0].value
    )


def test_the_feed_answers_304_while_it_is_current_and_200_after_a_new_issue(web: Web) -> None:
    alice = add_subscriber(web.store)
    send_issues(web, alice, 2)
    path = web.feed_path(alice)
    with web.client() as client:
        first = client.get(path)
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        by_etag = client.get(path, headers={"If-None-Match": etag})
        by_weak_etag = client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
        by_date = client.get(path, headers={"If-Modified-Since": modified})
        by_both = client.get(path, headers={"If-None-Match": etag, "If-Modified-Since": modified})
        other_etag = client.get(path, headers={"If-None-Match": '"something else"'})
        # If-None-Match decides when sent, whatever the date says.
        other_etag_same_date = client.get(
            path, headers={"If-None-Match": '"x"', "If-Modified-Since": modified}
        )
        earlier = format_datetime(
            parsedate_to_datetime(modified) - timedelta(seconds=1), usegmt=True
        )
        older_copy = client.get(path, headers={"If-Modified-Since": earlier})
        bad_date = client.get(path, headers={"If-Modified-Since": "yesterday"})
        head = client.head(path, headers={"If-None-Match": etag})

        next_day = TODAY + timedelta(days=1)
        web.store.upsert_papers([make_paper(id="2512.00001", title="Next")], now=NOW)
        send_issue(
            web.store,
            alice,
            next_day,
            paper_ids=["2512.00001"],
            items=[IssueItem(paper_id="2512.00001", why="Trending this week.")],
            now=NOW + timedelta(days=1),
        )
        after = client.get(path, headers={"If-None-Match": etag, "If-Modified-Since": modified})
        after_by_date = client.get(path, headers={"If-Modified-Since": modified})

    assert first.status_code == 200
    assert first.headers["cache-control"] == "private, no-cache"
    for answer in (by_etag, by_weak_etag, by_date, by_both, head):
        assert answer.status_code == 304, answer.request.headers
        assert answer.content == b""
        assert answer.headers["etag"] == etag
        assert answer.headers["last-modified"] == modified
        assert answer.headers["cache-control"] == "private, no-cache"
    for answer in (other_etag, other_etag_same_date, older_copy, bad_date):
        assert answer.status_code == 200, answer.request.headers
        assert answer.content == first.content
    assert after.status_code == after_by_date.status_code == 200
    assert after.headers["etag"] != etag
    assert parsedate_to_datetime(after.headers["last-modified"]) == NOW + timedelta(days=1)
    entries = parse_feed(after).entries
    assert len(entries) == 3 and entries[0].id.endswith(f"{next_day}:digest/{alice.id}")


def test_a_feed_reader_polls_with_the_validators_it_was_given(web: Web) -> None:
    alice = add_subscriber(web.store)
    send_issues(web, alice, 1)
    url = feed_url(alice, settings=web.settings)

    first = feedparser.parse(url)
    again = feedparser.parse(url, etag=first.etag, modified=first.modified)

    assert first.status == 200 and len(first.entries) == 1 and not first.bozo
    assert again.status == 304 and again.entries == []


def test_the_feed_holds_the_newest_issues_only(web: Web) -> None:
    alice = add_subscriber(web.store)
    days = send_issues(web, alice, FEED_ENTRIES + 2)
    with web.client() as client:
        feed = parse_feed(client.get(web.feed_path(alice)))
    assert len(feed.entries) == FEED_ENTRIES
    assert feed.entries[0].id.endswith(f"{days[-1]}:digest/{alice.id}")
    assert feed.entries[-1].id.endswith(f"{days[2]}:digest/{alice.id}")


def test_hostile_paper_text_cannot_break_the_feed(web: Web) -> None:
    alice = add_subscriber(web.store)
    paper = make_paper(
        id="p1", title="]]></content><script>x</script>\x01 & \ufffe", abstract="A\x0b\x1fB."
    )
    web.store.upsert_papers([paper], now=NOW)
    why = "Matches “<b>x</b>”\x01"
    send_issue(web.store, alice, paper_ids=["p1"], items=[IssueItem(paper_id="p1", why=why)])
    with web.client() as client:
        feed = parse_feed(client.get(web.feed_path(alice)))
    (entry,) = feed.entries
    content = entry.content[0].value
    assert "&lt;script&gt;x&lt;/script&gt;" in content and "<script>" not in content
    assert "Matches “&lt;b&gt;x&lt;/b&gt;”" in content


@pytest.mark.parametrize("leaves_by", ["erase", "remove"])
def test_the_archive_and_feed_links_of_someone_gone_are_dead(web: Web, leaves_by: str) -> None:
    alice = add_subscriber(web.store)
    send_issues(web, alice, 1)
    paths = [web.archive_path(alice), web.feed_path(alice)]
    with web.client() as client:
        before = [client.get(path).status_code for path in paths]
        if leaves_by == "erase":
            erase_subscriber(web.store, alice.id, settings=web.settings, now=NOW)
        else:
            web.store.remove_subscriber(alice.email)
        # Whoever signs up next never gets the id, the archive or the feed.
        add_subscriber(web.store, "eve@example.org")
        after = [client.get(path) for path in paths]
        invalid = client.get("/archive/not-a-token")
    assert before == [200, 200]
    for answer in after:
        assert answer.status_code == 400
        assert answer.text == invalid.text
        assert "Paper of" not in answer.text


def test_a_tampered_or_misused_link_gets_the_invalid_link_page(web: Web) -> None:
    alice = add_subscriber(web.store)
    send_issues(web, alice, 1)
    archive, feed = web.archive_path(alice), web.feed_path(alice)
    token = feed.rpartition("/")[2]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    manage = subscriber_url(TokenPurpose.MANAGE, alice, settings=web.settings, now=NOW)
    manage_token = manage.rpartition("/")[2]
    with web.client() as client:
        invalid = client.get("/archive/not-a-token").text
        answers = {
            "tampered feed": client.get(f"/feed/{tampered}"),
            "truncated feed": client.get(f"/feed/{token[:-1]}"),
            "feed token as archive": client.get(f"/archive/{token}"),
            "archive token as feed": client.get(f"/feed/{archive.rpartition('/')[2]}"),
            "manage token as feed": client.get(f"/feed/{manage_token}"),
            "manage token as archive": client.get(f"/archive/{manage_token}?page=x"),
            "feed token as manage": client.get(f"/m/{token}"),
        }
    for name, answer in answers.items():
        assert answer.status_code == 400, name
        assert answer.text == invalid, name


def test_archive_and_feed_urls_are_the_same_each_time_and_never_expire(web: Web) -> None:
    alice = add_subscriber(web.store, now=datetime.now(UTC) - timedelta(days=3 * 365))
    send_issues(web, alice, 1)
    assert archive_list_url(alice, settings=web.settings) == archive_list_url(
        web.store.get_subscriber(alice.id), settings=web.settings
    )
    with web.client() as client:
        manage = client.get(
            web.path(
                subscriber_url(
                    TokenPurpose.MANAGE, alice, settings=web.settings, now=datetime.now(UTC)
                )
            )
        )
        archive = client.get(web.archive_path(alice))
        feed = client.get(web.feed_path(alice))
    assert archive.status_code == feed.status_code == manage.status_code == 200
    assert f'href="{archive_list_url(alice, settings=web.settings)}"' in manage.text
    assert f'href="{feed_url(alice, settings=web.settings)}"' in manage.text


def test_an_issue_of_two_profiles_keeps_its_sections_in_the_archive_and_the_feed(
    web: Web,
) -> None:
    store_papers(web)
    alice = add_subscriber(web.store, interests=Interests(keywords=("consistency models",)))
    web.store.add_profile(
        alice.id,
        ProfilePreferences(name="Discrete <tokens>", interests=Interests(keywords=("discrete",))),
        max_profiles=5,
        now=NOW,
    )

    assert run_issue(web).outcomes == {DeliveryStatus.SENT: 1}

    delivery = web.store.get_delivery(alice.id, TODAY)
    assert delivery is not None
    assert [(item.paper_id, item.section) for item in delivery.items] == [
        ("2511.00001", "My interests"),
        ("2511.00002", "Discrete <tokens>"),
    ]
    with web.client() as client:
        (entry,) = parse_feed(client.get(web.feed_path(alice))).entries
    content = entry.content[0].value
    headings = list(re.finditer(r'<h2 class="section-heading"[^>]*>([^<]*)</h2>', content))
    assert [heading.group(1) for heading in headings] == ["My interests", "Discrete &lt;tokens&gt;"]
    second_section = headings[1].start()
    assert headings[0].start() < content.index("2511.00001") < second_section
    assert second_section < content.index("2511.00002")
