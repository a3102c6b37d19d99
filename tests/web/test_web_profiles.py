"""Interest profiles over the JSON API and the 👍/👎 links of a digest's sections, over real
HTTP (uvicorn on 127.0.0.1) on SQLite and PostgreSQL: list, add, replace, reorder, remove, with
clear 4xx answers; a vote from a section trains that section's profile."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.mail.compose import digest_links
from service.models import Digest, DigestSection, ScoredPaper, Subscriber
from service.settings import Settings
from service.signup.links import subscriber_url
from service.signup.subscriptions import erase_subscriber
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.factories import NOW, WHY, add_subscriber, make_paper, make_settings
from tests.support.services import free_port
from tests.support.web_server import serve

STORED = make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling")


@dataclass
class Web:
    url: str
    settings: Settings
    store: Store

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def profiles_path(self, subscriber: Subscriber) -> str:
        url = subscriber_url(
            TokenPurpose.MANAGE, subscriber, settings=self.settings, now=datetime.now(UTC)
        )
        return "/api/preferences/" + url.rpartition("/")[2] + "/profiles"


@pytest.fixture
def web(store: Store) -> Iterator[Web]:
    port = free_port()
    settings = make_settings(public_base_url=f"http://127.0.0.1:{port}", max_profiles=3)
    store.upsert_papers([STORED], now=NOW - timedelta(days=3))
    for _ in serve(settings, store, port):
        yield Web(f"http://127.0.0.1:{port}", settings, store)


def names(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [profile["name"] for profile in answer.json()["profiles"]]


def test_profiles_are_added_replaced_reordered_and_removed(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.profiles_path(alice)
    with web.client() as client:
        assert names(client.get(path)) == ["My interests"]
        added = client.post(
            path,
            json={
                "name": "RL theory",
                "interests": ["bandits"],
                "liked": ["2511.00001"],
                "papers_per_issue": 5,
                "trending_weight": 0.1,
            },
        )
        assert added.status_code == 201, added.text
        rl = added.json()
        assert (rl["name"], rl["liked"], rl["papers_per_issue"]) == ("RL theory", ["2511.00001"], 5)

        replaced = client.put(
            f"{path}/{rl['id']}",
            json={"name": "Bandits", "interests": ["regret bounds"], "papers_per_issue": 30},
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["name"] == "Bandits"
        assert replaced.json()["interests"] == ["regret bounds"]
        assert replaced.json()["liked"] == ["2511.00001"]  # votes are kept

        first = alice.first_profile.id
        assert names(client.put(f"{path}/order", json={"profile_ids": [rl["id"], first]})) == [
            "Bandits",
            "My interests",
        ]
        assert names(client.delete(f"{path}/{rl['id']}")) == ["My interests"]
    (left,) = web.store.get_subscriber(alice.id).profiles
    assert left.id == first


@pytest.mark.parametrize(
    ("method", "where", "body", "status", "detail"),
    [
        ("POST", "", {"name": "my INTERESTS"}, 409, "already"),
        ("POST", "", {"name": "Big", "papers_per_issue": 31}, 422, "less than or equal to 30"),
        ("POST", "", {"name": " "}, 422, "needs a name"),
        ("POST", "", {"interests": ["bandits"]}, 422, ""),
        ("POST", "", {"name": "Seeds", "liked": ["no such title at all"]}, 422, "liked"),
        ("PUT", "/999999", {"name": "Gone"}, 404, "no interest profile"),
        ("PUT", "/order", {"profile_ids": [1, 2]}, 409, "each of the subscriber's profiles"),
        ("DELETE", "/FIRST", None, 409, "at least one"),
        ("DELETE", "/OTHER", None, 404, "no interest profile"),
        ("PUT", "/abc", {"name": "X"}, 422, ""),
    ],
)
def test_refused_profile_changes_get_a_clear_4xx(
    web: Web,
    method: str,
    where: str,
    body: dict[str, object] | None,
    status: int,
    detail: str,
) -> None:
    alice = add_subscriber(web.store)
    bob = add_subscriber(web.store, "bob@example.org")
    where = where.replace("FIRST", str(alice.first_profile.id))
    where = where.replace("OTHER", str(bob.first_profile.id))
    with web.client() as client:
        answer = client.request(method, web.profiles_path(alice) + where, json=body)
        assert answer.status_code == status, answer.text
        assert detail in str(answer.json()["detail"])
        assert names(client.get(web.profiles_path(alice))) == ["My interests"]
    assert web.store.get_subscriber(bob.id).profiles == bob.profiles


def test_too_many_profiles_and_dead_links_are_refused(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.profiles_path(alice)
    with web.client() as client:
        for name in ("Two", "Three"):
            assert client.post(path, json={"name": name}).status_code == 201
        too_many = client.post(path, json={"name": "Four"})
        assert too_many.status_code == 409 and "at most 3" in too_many.json()["detail"]
        erase_subscriber(web.store, alice.id, settings=web.settings, now=NOW)
        assert client.get(path).status_code == 400
        assert client.post(path, json={"name": "Five"}).status_code == 400


def section_links(web: Web, subscriber: Subscriber) -> dict[str, str]:
    """The feedback tokens of a digest with the paper in its second profile's section."""
    second = subscriber.profiles[1]
    scored = ScoredPaper(paper=STORED, score=1.0, relevance=0.8, trending=0.2, why=WHY)
    digest = Digest(
        subscriber=subscriber,
        issue_date=NOW.date(),
        sections=(DigestSection(name=second.name, profile_id=second.id, papers=(scored,)),),
    )
    links = digest_links(
        subscriber,
        digest.issue_date,
        settings=web.settings,
        now=datetime.now(UTC),
        paper_ids=[STORED.id],
        profile_ids={STORED.id: second.id},
    )
    return {STORED.id: links.feedback_urls[STORED.id].rpartition("/")[2]}


def test_a_vote_from_a_section_trains_its_profile_or_the_first_once_it_is_gone(web: Web) -> None:
    alice = add_subscriber(web.store)
    with web.client() as client:
        rl = client.post(web.profiles_path(alice), json={"name": "RL"}).json()
        alice = web.store.get_subscriber(alice.id)
        token = section_links(web, alice)[STORED.id]
        voted = client.post("/api/feedback", json={"token": token, "vote": "dislike"})
        assert voted.status_code == 200, voted.text
        first, second = web.store.get_subscriber(alice.id).profiles
        assert (first.interests.disliked, second.interests.disliked) == ((), (STORED.id,))
        # The page of the link shows that profile's verdict.
        page = client.get(f"/f/{token}")
        assert page.status_code == 200 and "2511.00001" in page.text

        # The profile removed, the same link trains the first one.
        assert client.delete(f"{web.profiles_path(alice)}/{rl['id']}").status_code == 200
        again = client.post("/api/feedback", json={"token": token, "vote": "like"})
        assert again.status_code == 200 and again.json()["previous"] is None
        (first,) = web.store.get_subscriber(alice.id).profiles
        assert first.interests.liked == (STORED.id,)
