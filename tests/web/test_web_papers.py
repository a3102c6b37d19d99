"""Papers liked, authors followed and topics left out, over real HTTP: the signup and manage
forms and the JSON API, with uvicorn on 127.0.0.1, SQLite and PostgreSQL, the SMTP sink for
the confirmation emails and a scripted arXiv for the papers not stored yet."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.models import Subscriber, SubscriptionStatus, Vote
from service.settings import Settings
from service.signup.links import subscriber_url
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.factories import NOW, SIGNUP_FORM, add_subscriber, make_paper, make_settings
from tests.support.paper_server import PaperServer, Reply, fixture_reply
from tests.support.services import free_port, wait_until
from tests.support.smtp_sink import SmtpSink
from tests.support.web_server import serve

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ARXIV = "/api/query"
ID_LIST = "arxiv/id_list_2511.18201_2511.18299.xml"
CONSISTENCY = make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling")
SURVEY = make_paper(
    id="2511.00002", title="Graph Networks: A Survey", url="https://arxiv.org/abs/2511.00002"
)
FOLDING = make_paper(
    id="2511.00003", title="Protein folding <with> language models", url="javascript:alert(1)"
)


@dataclass
class Web:
    url: str
    settings: Settings
    store: Store
    sink: SmtpSink
    arxiv: PaperServer

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def manage_path(self, subscriber: Subscriber) -> str:
        url = subscriber_url(
            TokenPurpose.MANAGE, subscriber, settings=self.settings, now=datetime.now(UTC)
        )
        return url.removeprefix(self.url)

    def confirm_path(self) -> str:
        wait_until(lambda: len(self.sink.messages) >= 1, timeout=10, what="the confirmation")
        body = self.sink.messages[-1].message.get_body(preferencelist=("plain",))
        assert body is not None
        (url,) = [word for word in body.get_content().split() if "/c/" in word]
        return str(url).removeprefix(self.url)


@pytest.fixture
def web(
    store: Store, smtp_sink: SmtpSink, redis_url: str, paper_server: PaperServer
) -> Iterator[Web]:
    port = free_port()
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{port}",
        mail_url=smtp_sink.url,
        redis_url=redis_url,
        trusted_proxies=["127.0.0.1"],
        signup_answer_seconds=0,
        arxiv_base_url=paper_server.url,
    )
    store.upsert_papers([CONSISTENCY, SURVEY, FOLDING], now=NOW - timedelta(days=3))
    for _ in serve(settings, store, port):
        yield Web(f"http://127.0.0.1:{port}", settings, store, smtp_sink, paper_server)


def _csrf(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return match.group(1)


def _sign_up(client: httpx.Client, email: str, **fields: str) -> httpx.Response:
    token = _csrf(client.get("/"))
    data = {**SIGNUP_FORM, **fields, "email": email, "csrf_token": token}
    return client.post("/", data=data, headers={"X-Forwarded-For": "198.51.100.1"})


def _post_form(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    token = _csrf(client.get(path))
    return client.post(path, data={**fields, "csrf_token": token})


def _confirm(web: Web, client: httpx.Client) -> httpx.Response:
    path = web.confirm_path()
    page = client.get(path)
    confirmed = client.post(path, data={"csrf_token": _csrf(page)})
    assert confirmed.status_code == 200, confirmed.text
    return page


def _script_id_list(web: Web, ids: str) -> None:
    atom = fixture_reply(ID_LIST, content_type="application/atom+xml")
    web.arxiv.script(ARXIV, atom, id_list=ids)


def test_a_signup_with_ids_links_and_titles_confirms_with_those_papers_liked(web: Web) -> None:
    papers = "\n".join(
        [
            "2511.00001v2",
            "https://arxiv.org/pdf/2511.00002v1.pdf",
            "  protein FOLDING <with>   language models ",
            "https://huggingface.co/papers/2511.00001",
        ]
    )
    with web.client() as client:
        answer = _sign_up(
            client,
            "ada@example.org",
            papers=papers,
            authors="J. Müller\nGrace Hopper, Ada Lovelace",
            excluded="quantum computing, robotics",
        )
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        page = _confirm(web, client)
    # The confirmation page shows the papers it confirms, by title, escaped.
    assert "Consistency models for fast diffusion sampling" in page.text
    assert "Protein folding &lt;with&gt; language models" in page.text
    assert "J. Müller, Grace Hopper, Ada Lovelace" in page.text
    subscriber = web.store.find_subscriber("ada@example.org")
    assert subscriber.status is SubscriptionStatus.CONFIRMED
    interests = subscriber.interests
    assert interests.liked == ("2511.00001", "2511.00002", "2511.00003")
    assert interests.authors == ("J. Müller", "Grace Hopper", "Ada Lovelace")
    assert interests.excluded == ("quantum computing", "robotics")
    assert web.arxiv.requests == []  # every paper was stored already


def test_a_signup_with_only_liked_papers_is_a_subscription(web: Web) -> None:
    with web.client() as client:
        answer = _sign_up(client, "ada@example.org", interests="", about="", papers="2511.00002")
        assert answer.status_code == 200
        page = _confirm(web, client)
    assert "none besides the papers you like" in page.text
    interests = web.store.find_subscriber("ada@example.org").interests
    assert (interests.keywords, interests.liked) == ((), ("2511.00002",))
    assert not interests.is_empty


def test_a_title_with_no_match_shows_the_form_again_keeping_what_was_typed(web: Web) -> None:
    with web.client() as client:
        answer = _sign_up(
            client,
            "ada@example.org",
            papers="2511.00001\nA paper <b>nobody</b> wrote\nhttps://example.org/x",
            authors="Grace Hopper",
            excluded="robotics",
        )
    assert answer.status_code == 422
    assert "No paper found for “A paper &lt;b&gt;nobody&lt;/b&gt; wrote”." in answer.text
    assert "“https://example.org/x” is not a link to a paper" in answer.text
    assert "<b>nobody</b>" not in answer.text
    # Everything typed is still there, the papers that were found too.
    assert 'value="ada@example.org"' in answer.text
    assert "2511.00001\nA paper &lt;b&gt;nobody&lt;/b&gt; wrote\nhttps://example.org/x" in (
        answer.text
    )
    assert ">Grace Hopper</textarea>" in answer.text and 'value="robotics"' in answer.text
    assert "diffusion models, graph networks</textarea>" in answer.text
    assert web.store.list_subscribers() == [] and web.sink.messages == []


def test_too_many_or_too_long_lines_are_refused_without_asking_anyone(web: Web) -> None:
    many = "\n".join(f"2512.{n:05d}" for n in range(21))
    with web.client() as client:
        too_many = _sign_up(client, "ada@example.org", papers=many)
        too_long = _sign_up(client, "ada@example.org", papers="x" * 301)
    assert too_many.status_code == too_long.status_code == 422
    assert "Up to 20 papers at a time" in too_many.text
    assert "under 300 characters" in too_long.text
    assert web.arxiv.requests == [] and web.store.list_subscribers() == []


def test_an_arxiv_id_not_stored_is_fetched_from_arxiv_and_liked(web: Web) -> None:
    _script_id_list(web, "2511.18201,2511.18299")
    _script_id_list(web, "2511.18201")
    typed = "https://arxiv.org/abs/2511.18201v2\n2511.18299\n2511.00001"
    with web.client() as client:
        first = _sign_up(client, "ada@example.org", papers=typed)
        # arXiv has no 2511.18299; the paper it has is stored, whatever else the form says.
        assert first.status_code == 422
        assert "No paper found for “2511.18299”." in first.text
        assert web.store.get_paper("2511.18201") is not None
        second = _sign_up(
            client, "ada@example.org", papers="https://arxiv.org/abs/2511.18201v2\n2511.00001"
        )
        assert second.status_code == 200
        _confirm(web, client)
    liked = web.store.find_subscriber("ada@example.org").interests.liked
    assert liked == ("2511.18201", "2511.00001")
    # Asked once: the second time the paper was in the store.
    assert web.arxiv.requests == [(ARXIV, {"id_list": "2511.18201,2511.18299", "max_results": "2"})]


def test_when_arxiv_cannot_be_reached_the_form_says_so_for_those_lines(web: Web) -> None:
    web.arxiv.script(ARXIV, Reply(status=503))
    with web.client() as client:
        answer = _sign_up(client, "ada@example.org", papers="2511.18201\nGraph networks: a survey")
    assert answer.status_code == 422
    assert "arXiv could not be asked about “2511.18201” just now" in answer.text
    assert "Graph networks: a survey" in answer.text and "No paper found" not in answer.text
    assert web.store.list_subscribers() == []


def test_manage_lists_liked_and_disliked_papers_and_removes_one(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    for paper_id, vote in [
        ("2511.00001", Vote.LIKE),
        ("2401.99999", Vote.LIKE),
        ("2511.00003", Vote.LIKE),
        ("2511.00002", Vote.DISLIKE),
    ]:
        web.store.set_paper_vote(subscriber.id, paper_id, vote)
    manage = web.manage_path(subscriber)
    with web.client() as client:
        page = client.get(manage)
        assert page.status_code == 200
        liked, disliked = page.text.split("<h3>Liked</h3>")[1].split("<h3>Disliked</h3>")
        # Newest first; a paper no longer stored shows as its id; titles escaped; only web
        # links become links.
        assert liked.index("Protein folding &lt;with&gt;") < liked.index("2401.99999")
        assert liked.index("2401.99999") < liked.index("Consistency models")
        assert '<a href="https://arxiv.org/abs/2511.00001"' in liked
        assert "javascript:" not in page.text
        assert '<a href="https://arxiv.org/abs/2511.00002"' in disliked
        assert liked.count('value="remove_paper"') == 3 and disliked.count("remove_paper") == 1

        removed = _post_form(client, manage, action="remove_paper", paper_id="2511.00001")
        assert removed.status_code == 200
        assert "Removed “Consistency models for fast diffusion sampling”" in removed.text
        gone = _post_form(client, manage, action="remove_paper", paper_id="2511.00002")
        assert "from the papers you disliked" in gone.text
        unknown = _post_form(client, manage, action="remove_paper", paper_id="<nope>")
        assert unknown.status_code == 200 and "Removed" not in unknown.text
        # Without its CSRF token, a remove button does nothing.
        client.post(manage, data={"action": "remove_paper", "paper_id": "2511.00003"})
    interests = web.store.get_subscriber(subscriber.id).interests
    assert interests.liked == ("2401.99999", "2511.00003")
    assert interests.disliked == ()


def test_saving_the_manage_form_keeps_votes_and_adds_the_papers_typed(web: Web) -> None:
    subscriber = add_subscriber(web.store)
    web.store.set_paper_vote(subscriber.id, "2401.99999", Vote.LIKE)
    web.store.set_paper_vote(subscriber.id, "2511.00002", Vote.DISLIKE)
    manage = web.manage_path(subscriber)
    form = {
        **SIGNUP_FORM,
        "action": "save",
        "interests": "protein folding",
        "authors": "J. Müller, Grace Hopper",
        "excluded": "quantum computing,  robotics",
    }
    with web.client() as client:
        saved = _post_form(client, manage, **form)
        assert saved.status_code == 200 and "Saved" in saved.text
        assert "added to those you like" not in saved.text
        shown = client.get(manage).text
        more = _post_form(
            client, manage, **form, papers="consistency models for fast diffusion sampling"
        )
        assert "1 paper added to those you like" in more.text
        bad = _post_form(client, manage, **{**form, "interests": "casino"}, papers="No such paper")
    assert ">J. Müller\nGrace Hopper</textarea>" in shown
    assert 'value="quantum computing, robotics"' in shown
    assert bad.status_code == 422 and "No paper found for “No such paper”." in bad.text
    after = web.store.get_subscriber(subscriber.id).interests
    assert after.keywords == ("protein folding",)  # the refused save changed nothing
    assert after.authors == ("J. Müller", "Grace Hopper")
    assert after.excluded == ("quantum computing", "robotics")
    assert after.liked == ("2401.99999", "2511.00001")
    assert after.disliked == ("2511.00002",)
    # Saved again as shown, nothing changes.
    with web.client() as client:
        again = _post_form(
            client,
            manage,
            **{
                **form,
                "authors": "J. Müller\nGrace Hopper",
                "excluded": "quantum computing, robotics",
            },
        )
    assert again.status_code == 200
    assert web.store.get_subscriber(subscriber.id).interests == after


def _api_signup(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post(
        "/api/signup",
        json={"email": "api@example.org", **body},
        headers={"X-Forwarded-For": "192.0.2.50"},
    )


def test_the_api_takes_and_shows_authors_topics_and_liked_papers(web: Web) -> None:
    with web.client() as client:
        accepted = _api_signup(
            client,
            interests=[],
            authors=["J. Müller"],
            excluded=["robotics"],
            liked=["https://huggingface.co/papers/2511.00001", "graph networks: a survey"],
        )
        assert accepted.status_code == 202, accepted.text
        token = web.confirm_path().removeprefix("/c/")
        confirmed = client.post("/api/confirm", json={"token": token}).json()
        assert confirmed["liked"] == ["2511.00001", "2511.00002"]
        assert (confirmed["authors"], confirmed["excluded"]) == (["J. Müller"], ["robotics"])
        assert confirmed["disliked"] == []

        subscriber = web.store.find_subscriber("api@example.org")
        web.store.set_paper_vote(subscriber.id, "2401.99999", Vote.DISLIKE)
        manage = web.manage_path(subscriber).removeprefix("/m/")
        # What GET shows, PUT back, changes nothing: more than 20 papers liked before, and
        # some no longer stored, are fine.
        earlier = [f"2401.{n:05d}" for n in range(88000, 88025)]
        for paper_id in earlier:
            web.store.set_paper_vote(subscriber.id, paper_id, Vote.LIKE)
        current = client.get(f"/api/preferences/{manage}").json()
        same = client.put(f"/api/preferences/{manage}", json=current)
        assert same.status_code == 200 and same.json() == current
        changed = client.put(
            f"/api/preferences/{manage}",
            json={"interests": ["diffusion"], "authors": [], "liked": ["2401.99999", "2511.00003"]},
        ).json()
    assert changed["interests"] == ["diffusion"] and changed["authors"] == []
    assert changed["excluded"] == []
    # Liked papers join those before; a paper disliked before and now liked changes sides.
    assert changed["liked"] == [
        "2511.00001",
        "2511.00002",
        *earlier,
        "2401.99999",
        "2511.00003",
    ]
    assert changed["disliked"] == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"liked": ["A paper nobody wrote"]}, "No paper found for “A paper nobody wrote”."),
        ({"liked": ["2513.00001"]}, "“2513.00001” is not an arXiv id."),
        ({"liked": ["x" * 301]}, "at most 300 characters"),
        ({"liked": ["2511.00001"] * 21}, "up to 20 new papers at a time"),
        ({"authors": ["y" * 101]}, "at most 100 characters"),
        ({"excluded": ["z"] * 21}, "at most 20 items"),
    ],
)
def test_the_api_refuses_what_it_cannot_resolve_naming_it(
    web: Web, body: dict[str, Any], detail: str
) -> None:
    subscriber = add_subscriber(web.store)
    manage = web.manage_path(subscriber).removeprefix("/m/")
    with web.client() as client:
        created = _api_signup(client, **body)
        updated = client.put(f"/api/preferences/{manage}", json=body)
    for answer in (created, updated):
        assert answer.status_code == 422, answer.text
        assert detail in str(answer.json()["detail"])
    assert web.store.find_subscriber_by_email("api@example.org") is None
    assert web.store.get_subscriber(subscriber.id).interests == subscriber.interests


def test_the_api_says_when_arxiv_cannot_be_asked(web: Web) -> None:
    web.arxiv.script(ARXIV, Reply(status=503))
    with web.client() as client:
        answer = _api_signup(client, liked=["2511.18201"])
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
    assert "2511.18201" in answer.json()["detail"]
    assert web.store.find_subscriber_by_email("api@example.org") is None
