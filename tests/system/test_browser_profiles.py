"""Interest profiles in headless Chromium: a reader adds a profile on the manage page (the app
under uvicorn on 127.0.0.1) and moves it up; their digest, built as the day's run builds it,
then has two sections in that order, whose headings are readable in the light and the dark
colour scheme at 390 and 1280 px with no sideways scrolling on the phone. Screenshots go to
var/test-artifacts/screenshots/<test name>/ (see tests/support/browser.py)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.delivery.pipeline import preview_digest
from service.settings import Settings
from service.signup.links import subscriber_url
from service.signup.tokens import TokenPurpose
from service.store import Store
from tests.support.browser import DESKTOP, PHONE, BrowserPages, Screenshots, ServeFolder
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
from tests.system.test_browser_digest import MIN_CONTRAST, contrast, scroll_width, text_colours

if TYPE_CHECKING:
    from playwright.sync_api import Page

DAY_PAPERS = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(
        id="2511.00002",
        title="Learned locomotion control for quadruped robots",
        abstract="Quadruped robots learn robust locomotion control on rough terrain.",
    ),
]


@pytest.fixture
def app(sqlite_store: Store) -> Iterator[Settings]:
    """The app under uvicorn on 127.0.0.1; its settings."""
    port = free_port()
    settings = make_settings(public_base_url=f"http://127.0.0.1:{port}", redis_url="")
    for _ in serve(settings, sqlite_store, port):
        yield settings


def profile_names(page: "Page") -> list[str]:
    return page.locator("#profiles .profile-name").all_inner_texts()


def test_a_profile_added_and_moved_up_heads_the_digest_in_both_schemes(
    new_page: BrowserPages,
    screenshots: Screenshots,
    static_server: ServeFolder,
    sqlite_store: Store,
    app: Settings,
    tmp_path: Path,
) -> None:
    store = sqlite_store
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers(DAY_PAPERS, now=NOW - timedelta(hours=3))
    alice = add_subscriber(store, trending_weight=0.0)
    manage_url = subscriber_url(TokenPurpose.MANAGE, alice, settings=app, now=datetime.now(UTC))

    page = new_page(PHONE)
    page.goto(manage_url)
    assert profile_names(page) == ["My interests"]
    page.get_by_text("Add a profile", exact=True).click()
    page.fill("#new-profile-name", "Robots")
    page.fill("#new-profile-interests", "quadruped robots")
    page.fill("#new-profile-papers", "5")
    page.locator("#new-profile-mix").evaluate("slider => { slider.value = '0'; }")
    page.get_by_role("button", name="Add profile").click()
    page.wait_for_selector("text=Added “Robots”")
    assert profile_names(page) == ["My interests", "Robots"]

    page.get_by_role("button", name="Move Robots up").click()
    page.wait_for_selector("text=Moved “Robots” up")
    assert profile_names(page) == ["Robots", "My interests"]
    assert scroll_width(page) <= PHONE.width
    screenshots(page, "1-manage-profiles")
    stored = store.get_subscriber(alice.id)
    assert [profile.name for profile in stored.profiles] == ["Robots", "My interests"]
    assert (stored.profiles[0].papers_per_issue, stored.profiles[0].trending_weight) == (5, 0.0)

    digest, message = preview_digest(store, stored, TODAY, settings=app)
    assert [section.name for section in digest.sections] == ["Robots", "My interests"]
    assert message is not None
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    folder = tmp_path / "webmail"
    folder.mkdir()
    (folder / "digest.html").write_text(html.get_content(), encoding="utf-8")
    url = static_server(folder).url("digest.html")

    for scheme in ("light", "dark"):
        reader = new_page(PHONE, color_scheme=scheme)
        reader.goto(url)
        assert reader.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
        headings = reader.locator("h2.section-heading")
        for viewport in (PHONE, DESKTOP):
            reader.set_viewport_size(viewport.size)
            assert headings.all_inner_texts() == ["Robots", "My interests"]
            assert all(heading.is_visible() for heading in headings.all())
            shown = [
                item for item in text_colours(reader) if item["element"] == "h2.section-heading"
            ]
            assert [item["text"] for item in shown] == ["Robots", "My interests"]
            for item in shown:
                ratio = contrast(item["color"], item["background"])
                assert ratio >= MIN_CONTRAST, (scheme, viewport.label, item, round(ratio, 2))
            if viewport is PHONE:
                assert scroll_width(reader) <= PHONE.width, scheme
        screenshots(reader, f"2-digest-{scheme}")
