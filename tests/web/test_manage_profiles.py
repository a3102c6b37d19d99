"""Interest profiles on the manage page over real HTTP (uvicorn on 127.0.0.1), on SQLite and
PostgreSQL: the plain HTML forms add, edit (and rename), move and remove a profile; refusals are
shown back on the page with what was typed, as a 4xx; the digest's sections follow the order."""

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.delivery.pipeline import preview_digest
from service.models import Subscriber
from service.settings import Settings
from service.signup.links import subscriber_url
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.factories import (
    BACKGROUND_PAPERS,
    NOW,
    TODAY,
    add_subscriber,
    make_paper,
    make_settings,
)
from tests.support.services import free_port
from tests.support.web_server import serve

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PROBLEM = re.compile(r'<p class="error"[^>]*>([^<]+)</p>')
PROFILE_NAMES = re.compile(r'<h3 class="profile-name">([^<]+)</h3>')
DAY_PAPERS = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(
        id="2511.00002",
        title="Learned locomotion control for quadruped robots",
        abstract="Quadruped robots learn robust locomotion control on rough terrain.",
    ),
]
PROFILE_FORM = {
    "name": "Robots",
    "interests": "quadruped robots",
    "about": "",
    "authors": "",
    "excluded": "",
    "papers_per_issue": "5",
    "mix": "0",
}


@dataclass
class Web:
    url: str
    settings: Settings
    store: Store

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def manage_path(self, subscriber: Subscriber) -> str:
        url = subscriber_url(
            TokenPurpose.MANAGE, subscriber, settings=self.settings, now=datetime.now(UTC)
        )
        return url.removeprefix(self.url)

    def profile_names(self, subscriber: Subscriber) -> list[str]:
        return [profile.name for profile in self.store.get_subscriber(subscriber.id).profiles]


@pytest.fixture
def web(store: Store) -> Iterator[Web]:
    port = free_port()
    settings = make_settings(public_base_url=f"http://127.0.0.1:{port}", max_profiles=3)
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers(DAY_PAPERS, now=NOW - timedelta(hours=3))
    for _ in serve(settings, store, port):
        yield Web(f"http://127.0.0.1:{port}", settings, store)


def post(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    """The page's own form: its CSRF token from a GET, sent back with the cookie it is bound to."""
    page = client.get(path)
    match = CSRF.search(page.text)
    assert match is not None, page.text
    return client.post(path, data={**fields, "csrf_token": match.group(1)})


def shown_names(page: httpx.Response) -> list[str]:
    return [html.unescape(name) for name in PROFILE_NAMES.findall(page.text)]


def problems(page: httpx.Response) -> list[str]:
    return [html.unescape(text) for text in PROBLEM.findall(page.text)]


def test_profiles_are_added_edited_moved_and_removed_from_the_manage_page(web: Web) -> None:
    alice = add_subscriber(web.store, trending_weight=0.0)
    path = web.manage_path(alice)
    with web.client() as client:
        page = client.get(path)
        assert "Your interest profiles" in page.text and shown_names(page) == ["My interests"]
        assert "diffusion models · 10 papers an issue · 0% trending" in page.text
        assert 'name="confirm_remove"' not in page.text  # the only profile has no remove form

        added = post(client, path, action="add_profile", **{**PROFILE_FORM, "name": "Robot"})
        assert added.status_code == 200, added.text
        assert "Added “Robot”" in html.unescape(added.text)
        assert shown_names(added) == ["My interests", "Robot"]
        first, robots = web.store.get_subscriber(alice.id).profiles
        assert (robots.interests.keywords, robots.papers_per_issue) == (("quadruped robots",), 5)

        edited = post(
            client,
            path,
            action="edit_profile",
            profile_id=str(robots.id),
            **{**PROFILE_FORM, "interests": "quadruped robots, locomotion", "mix": "10"},
        )
        assert edited.status_code == 200, edited.text
        assert shown_names(edited) == ["My interests", "Robots"]
        robots = web.store.get_subscriber(alice.id).profiles[1]
        assert robots.name == "Robots"
        assert robots.interests.keywords == ("quadruped robots", "locomotion")
        assert robots.trending_weight == pytest.approx(0.1)

        moved = post(client, path, action="move_profile_up", profile_id=str(robots.id))
        assert moved.status_code == 200 and shown_names(moved) == ["Robots", "My interests"]
        assert web.profile_names(alice) == ["Robots", "My interests"]
        # At the top already, it stays there.
        again = post(client, path, action="move_profile_up", profile_id=str(robots.id))
        assert again.status_code == 200 and web.profile_names(alice) == ["Robots", "My interests"]

        # The next digest has its sections in the new order.
        digest, message = preview_digest(
            web.store, web.store.get_subscriber(alice.id), TODAY, settings=web.settings
        )
        assert [section.name for section in digest.sections] == ["Robots", "My interests"]
        assert message is not None
        text = message.get_body(preferencelist=("plain",))
        assert text is not None
        body = text.get_content()
        assert body.index("\n\nRobots\n======\n") < body.index("\n\nMy interests\n============\n")
        assert body.index("quadruped robots") < body.index("Consistency models")

        unticked = post(client, path, action="remove_profile", profile_id=str(first.id))
        assert unticked.status_code == 422
        assert "Tick the box to confirm that “My interests” should go." in problems(unticked)
        assert web.profile_names(alice) == ["Robots", "My interests"]
        removed = post(
            client, path, action="remove_profile", profile_id=str(first.id), confirm_remove="yes"
        )
        assert removed.status_code == 200 and shown_names(removed) == ["Robots"]
    assert web.profile_names(alice) == ["Robots"]


@pytest.mark.parametrize(
    ("action", "which", "fields", "status", "problem"),
    [
        ("add_profile", "", {"name": "my INTERESTS"}, 409, "There is a profile named"),
        ("add_profile", "", {"papers_per_issue": "31"}, 422, "Choose from 1 to 30 papers."),
        ("add_profile", "", {"papers_per_issue": "0"}, 422, "Choose from 1 to 30 papers."),
        ("add_profile", "", {"papers_per_issue": "ten"}, 422, "Choose from 1 to 30 papers."),
        ("add_profile", "", {"mix": "150"}, 422, "Choose a mix between 0 and 100."),
        ("add_profile", "", {"name": "  "}, 422, "A profile needs a name."),
        ("add_profile", "", {"name": "x" * 61}, 422, "at most 60 characters"),
        ("edit_profile", "FIRST", {"name": ""}, 422, "A profile needs a name."),
        ("remove_profile", "FIRST", {"confirm_remove": "yes"}, 409, "Your only profile stays"),
    ],
)
def test_refused_profile_forms_come_back_with_what_was_typed(
    web: Web, action: str, which: str, fields: dict[str, str], status: int, problem: str
) -> None:
    alice = add_subscriber(web.store)
    before = web.store.get_subscriber(alice.id).profiles
    profile_id = str(alice.first_profile.id) if which == "FIRST" else ""
    typed = {**PROFILE_FORM, "interests": "typed &amp; kept", **fields}
    with web.client() as client:
        answer = post(client, web.manage_path(alice), action=action, profile_id=profile_id, **typed)
    assert answer.status_code == status, answer.text
    assert any(problem in shown for shown in problems(answer)), problems(answer)
    if action != "remove_profile":
        assert "typed &amp;amp; kept</textarea>" in answer.text  # escaped, and kept
    assert web.store.get_subscriber(alice.id).profiles == before


def test_a_renamed_profile_cannot_take_another_ones_name_in_any_case(web: Web) -> None:
    alice = add_subscriber(web.store)
    with web.client() as client:
        path = web.manage_path(alice)
        assert post(client, path, action="add_profile", **PROFILE_FORM).status_code == 200
        robots = web.store.get_subscriber(alice.id).profiles[1]
        refused = post(
            client,
            path,
            action="edit_profile",
            profile_id=str(robots.id),
            **{**PROFILE_FORM, "name": "MY interests"},
        )
    assert refused.status_code == 409
    assert problems(refused) == ["There is a profile named 'My interests' already."]
    assert 'value="MY interests"' in refused.text
    assert web.profile_names(alice) == ["My interests", "Robots"]


@pytest.mark.parametrize(
    "action", ["edit_profile", "move_profile_up", "move_profile_down", "remove_profile"]
)
def test_a_profile_id_of_someone_else_is_answered_as_an_unknown_one(web: Web, action: str) -> None:
    alice = add_subscriber(web.store)
    bob = add_subscriber(web.store, "bob@example.org")
    fields = {**PROFILE_FORM, "confirm_remove": "yes"}
    answers = {}
    with web.client() as client:
        path = web.manage_path(alice)
        assert post(client, path, action="add_profile", **PROFILE_FORM).status_code == 200
        for label, profile_id in [
            ("unknown", "999999"),
            ("not a number", "abc"),
            ("missing", ""),
            ("bob's", str(bob.first_profile.id)),
        ]:
            answer = post(client, path, action=action, profile_id=profile_id, **fields)
            answers[label] = (answer.status_code, problems(answer))
    gone = (404, ["That profile is gone: it may have been removed in another window."])
    assert answers == dict.fromkeys(answers, gone)
    assert web.profile_names(alice) == ["My interests", "Robots"]
    assert web.store.get_subscriber(bob.id).profiles == bob.profiles


def test_no_more_profiles_than_the_setting_allows(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.manage_path(alice)
    with web.client() as client:
        for name in ("Two", "Three"):
            added = post(client, path, action="add_profile", **{**PROFILE_FORM, "name": name})
            assert added.status_code == 200, added.text
        assert "Add a profile" not in added.text
        assert "You have 3 profiles, the most there can be." in added.text
        refused = post(client, path, action="add_profile", **{**PROFILE_FORM, "name": "Four"})
    assert refused.status_code == 409
    assert problems(refused) == ["You have 3 profiles, the most there can be: remove one first."]
    assert web.profile_names(alice) == ["My interests", "Two", "Three"]


def test_profile_forms_without_their_csrf_token_change_nothing(web: Web) -> None:
    alice = add_subscriber(web.store)
    path = web.manage_path(alice)
    form = {**PROFILE_FORM, "action": "add_profile"}
    with web.client() as client, web.client() as other:
        token = CSRF.search(client.get(path).text)
        assert token is not None
        missing = client.post(path, data=form)
        forged = client.post(path, data={**form, "csrf_token": "x" * 40})
        # A token of another visitor's page does not match this visitor's cookie.
        stolen = other.post(path, data={**form, "csrf_token": token.group(1)})
    assert [answer.status_code for answer in (missing, forged, stolen)] == [403, 403, 403]
    assert web.profile_names(alice) == ["My interests"]
