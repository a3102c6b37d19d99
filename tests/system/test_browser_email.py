"""The digest email and the development outbox, as Chromium shows them.

The HTML part is written to a file and served from 127.0.0.1, as a webmail client or the
outbox would show it. Screenshots of each page at phone and desktop widths are kept under
var/test-artifacts/screenshots/ (see tests/support/browser.py).
"""

import os
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from service.mail.compose import clean_text, compose_digest, digest_links
from service.mail.wire import OutgoingMail
from service.models import Paper
from tests.support.browser import (
    DESKTOP,
    PHONE,
    BrowserPages,
    Screenshots,
    ServeFolder,
    StaticServer,
    Viewport,
    run_command,
)
from tests.support.factories import (
    HOSTILE_TITLES,
    NOW,
    TODAY,
    WHY,
    make_digest,
    make_paper,
    make_settings,
)

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

PAPERWIRE = str(Path(sys.executable).parent / "paperwire")
SETTINGS = make_settings()
SUBSCRIBER_ID = 42
# Stored in the page by any payload that manages to run script.
PWNED = "window.__pwned"
# Payloads beyond HOSTILE_TITLES that would set the flag, or load something, if unescaped.
INJECTIONS = [
    '<img src=x onerror="window.__pwned=1">',
    '"><script>window.__pwned=1</script>',
    "</h2><svg onload=window.__pwned=1>",
    "<a href=javascript:window.__pwned=1>click</a>",
]


def ten_papers() -> list[Paper]:
    """A realistic issue: long and short titles, many authors, badges, one paper without any."""
    titles = [
        "Consistency models for fast diffusion sampling",
        "Scaling laws for sparse mixture-of-experts language models trained on code and "
        "mathematics, with an analysis of routing collapse",
        "Graph neural networks for molecules",
        "Neural radiance fields from a single image",
        "RLHF without reward models: direct preference optimisation at scale",
        "Retrieval-augmented question answering over scientific tables",
        "Sparse attention for long documents",
        "Federated learning under label shift",
        "Speech recognition for low-resource languages",
        "Robust control of quadruped robots on deformable terrain",
    ]
    authors = [
        ("Ada Lovelace", "Grace Hopper"),
        tuple(f"Author {n}" for n in range(14)),
        ("Edsger W. Dijkstra",),
        (),
    ]
    return [
        make_paper(
            id=f"2511.{n:05d}",
            title=title,
            url=f"https://arxiv.org/abs/2511.{n:05d}",
            authors=authors[n % len(authors)],
            upvotes=[12, 340, None, 1][n % 4],
            comments=[None, 27, 3, None][n % 4],
            github_stars=[None, 12_400, None, None][n % 4],
        )
        for n, title in enumerate(titles)
    ]


def html_part(mail: OutgoingMail) -> str:
    body = mail.as_email_message().get_body(preferencelist=("html",))
    assert body is not None, "the digest has no HTML part"
    content = body.get_content()
    assert isinstance(content, str)
    return content


def serve_digest(
    papers: list[Paper], folder: Path, static_server: ServeFolder, *, why: str = WHY
) -> str:
    """The digest's HTML part as a file on a local web server; returns its URL."""
    digest = make_digest(papers, subscriber_id=SUBSCRIBER_ID, why=why)
    mail = compose_digest(digest, settings=SETTINGS, now=NOW)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digest.html").write_text(html_part(mail), encoding="utf-8")
    server: StaticServer = static_server(folder)
    return server.url("digest.html")


def horizontal_overflow(page: "Page") -> dict[str, Any]:
    """How far the document is wider than the viewport, and the widest elements."""
    result: dict[str, Any] = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const wide = Array.from(document.body.querySelectorAll('*'))
                .filter(el => el.getBoundingClientRect().right > width + 0.5)
                .map(el => `${el.tagName.toLowerCase()}.${el.className}`);
            return {scrollWidth: document.documentElement.scrollWidth, width, wide};
        }"""
    )
    return result


def computed(page: "Page", selector: str, *properties: str) -> dict[str, str]:
    """Computed style values of the first element matching `selector`."""
    values: dict[str, str] = page.locator(selector).first.evaluate(
        "(el, names) => Object.fromEntries(names.map(n => [n, getComputedStyle(el)[n]]))",
        list(properties),
    )
    return values


def test_the_digest_fits_a_phone_and_links_every_title(
    new_page: BrowserPages, static_server: ServeFolder, screenshots: Screenshots, tmp_path: Path
) -> None:
    papers = ten_papers()
    url = serve_digest(papers, tmp_path / "site", static_server)
    page = new_page(PHONE)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(url)

    overflow = horizontal_overflow(page)
    assert overflow["scrollWidth"] <= PHONE.width, overflow
    titles = page.locator("h2.title a")
    assert titles.count() == len(papers)
    for index, paper in enumerate(papers):
        link = titles.nth(index)
        assert link.is_visible()
        assert link.inner_text() == paper.title
        assert link.get_attribute("href") == paper.url
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE.width
    links = digest_links(
        make_digest(subscriber_id=SUBSCRIBER_ID).subscriber, TODAY, settings=SETTINGS, now=NOW
    )
    for name, href in (
        ("Unsubscribe", links.unsubscribe_url),
        ("Manage preferences", links.manage_url),
        ("View in browser", links.archive_url),
        ("Your archive", links.archive_list_url),
    ):
        link = page.get_by_role("link", name=name, exact=True)
        assert link.is_visible(), name
        assert link.get_attribute("href") == href
    # The preheader is for inbox lists only: present, never shown.
    assert page.locator(".preheader").count() == 1
    assert not page.locator(".preheader").is_visible()
    assert errors == []
    shots = screenshots(page, "digest")
    assert [path.name for path in shots] == ["digest-390.png", "digest-1280.png"]
    assert all(path.stat().st_size > 0 for path in shots)


@pytest.mark.parametrize(
    ("viewport", "card_padding", "card_radius", "heading_size"),
    [(PHONE, "12px", "0px", "20px"), (DESKTOP, "20px", "8px", "22px")],
    ids=["phone", "desktop"],
)
def test_the_digest_media_query_applies_below_620_pixels(
    new_page: BrowserPages,
    static_server: ServeFolder,
    tmp_path: Path,
    viewport: Viewport,
    card_padding: str,
    card_radius: str,
    heading_size: str,
) -> None:
    """Inlined styles set the desktop look; the @media rule overrides them (!important)."""
    page = new_page(viewport)
    page.goto(serve_digest(ten_papers(), tmp_path / "site", static_server))

    card = computed(page, ".card", "paddingLeft", "borderTopLeftRadius")
    heading = computed(page, ".heading", "fontSize")

    assert card == {"paddingLeft": card_padding, "borderTopLeftRadius": card_radius}
    assert heading == {"fontSize": heading_size}
    # The container stays at most 600 pixels wide, centred, at any width.
    box = page.locator("table.container").bounding_box()
    assert box is not None
    assert box["width"] == min(600, viewport.width)


def test_hostile_text_shows_as_text_and_runs_nothing(
    new_page: BrowserPages, static_server: ServeFolder, screenshots: Screenshots, tmp_path: Path
) -> None:
    titles = [*HOSTILE_TITLES, *INJECTIONS]
    papers = [
        make_paper(
            id=f"p{index}",
            title=title,
            # The other fields a paper source controls carry the payloads too.
            abstract=f"{injection} is in the abstract.",
            authors=(injection,),
            url=f'https://arxiv.org/abs/p{index}?q="><script>window.__pwned=1</script>',
        )
        for index, (title, injection) in enumerate(
            zip(titles, INJECTIONS * len(titles), strict=False)
        )
    ]
    url = serve_digest(papers, tmp_path / "site", static_server, why=INJECTIONS[0])
    page = new_page(PHONE)
    dialogs: list[str] = []

    def on_dialog(dialog: "Dialog") -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    page.goto(url)
    page.wait_for_load_state("load")

    assert page.evaluate(f"typeof {PWNED}") == "undefined"
    assert dialogs == []
    injected = page.evaluate(
        """() => ({
            scripts: document.querySelectorAll('script').length,
            images: document.querySelectorAll('img, svg, iframe, object, embed').length,
            handlers: Array.from(document.querySelectorAll('*')).flatMap(
                el => el.getAttributeNames().filter(name => name.startsWith('on'))),
            scriptLinks: Array.from(document.querySelectorAll('a[href]')).filter(
                a => !/^(https?|mailto):/.test(a.getAttribute('href'))).length,
        })"""
    )
    assert injected == {"scripts": 0, "images": 0, "handlers": [], "scriptLinks": 0}
    headings = page.locator("h2.title")
    assert headings.count() == len(titles)
    for index, title in enumerate(titles):
        # Shown as written, white space collapsed as for any title.
        shown = " ".join(headings.nth(index).inner_text().split())
        assert shown == clean_text(title)
    # The whole-word title is broken so that it still fits a phone.
    assert horizontal_overflow(page)["scrollWidth"] <= PHONE.width
    screenshots(page, "hostile")


def test_a_long_link_in_an_abstract_still_fits_a_phone(
    new_page: BrowserPages, static_server: ServeFolder, tmp_path: Path
) -> None:
    paper = make_paper(
        abstract="We distil models. Code is at https://github.com/huggingface/transformers/"
        "tree/main/examples/research_projects/distillation."
    )
    page = new_page(PHONE)
    page.goto(serve_digest([paper], tmp_path / "site", static_server))

    assert horizontal_overflow(page)["scrollWidth"] <= PHONE.width


@pytest.fixture
def demo_outbox(tmp_path: Path) -> Path:
    """`paperwire demo` run as a person runs it, in a scratch folder: five digests."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAPERWIRE_")}
    run_command([PAPERWIRE, "demo"], cwd=tmp_path, env=env, timeout=120)
    outbox = tmp_path / "var" / "outbox"
    assert (outbox / "index.html").is_file()
    return outbox


def test_the_outbox_index_lists_and_opens_every_message(
    new_page: BrowserPages,
    static_server: ServeFolder,
    screenshots: Screenshots,
    demo_outbox: Path,
) -> None:
    messages = sorted(path.stem for path in demo_outbox.glob("*.eml"))
    assert len(messages) == 5
    server: StaticServer = static_server(demo_outbox)
    page = new_page(DESKTOP)

    page.goto(server.url("index.html"))

    rows = page.locator("tbody tr")
    assert rows.count() == len(messages)
    assert page.get_by_text(f"{len(messages)} messages, newest first").is_visible()
    html_links = page.locator("tbody a", has_text=".html")
    listed = sorted(Path(str(html_links.nth(i).get_attribute("href"))).stem for i in range(5))
    assert listed == messages
    screenshots(page, "outbox-index")

    for index in range(rows.count()):
        row = rows.nth(index)
        subject = row.locator("summary").inner_text()
        # The preview: opening the row's details loads the message into its sandboxed frame.
        row.locator("summary").click()
        frame = row.frame_locator("iframe")
        assert frame.locator("h1.heading").inner_text().startswith("Your papers for ")
        row.locator("summary").click()
        # The .eml link answers with the message file itself.
        eml_href = row.get_by_role("link", name=".eml", exact=True).get_attribute("href")
        response = page.request.get(server.url(str(eml_href)))
        assert response.ok
        message = BytesParser(policy=policy.default).parsebytes(response.body())
        assert str(message["Subject"]) == subject
        # The .html link opens that message.
        with page.expect_navigation():
            row.get_by_role("link", name=".html", exact=True).click()
        assert page.title() == subject
        assert page.locator("h2.title a").count() >= 1
        if index == 0:
            screenshots(page, "outbox-message")
        page.go_back()
        page.wait_for_url(server.url("index.html"))
    # Each file was fetched from the server: nothing came from a cache or elsewhere.
    for stem in messages:
        assert any(f"/{stem}.html " in line for line in server.requests), stem


def test_the_outbox_index_fits_a_phone(
    new_page: BrowserPages,
    static_server: ServeFolder,
    screenshots: Screenshots,
    demo_outbox: Path,
) -> None:
    server: StaticServer = static_server(demo_outbox)
    page = new_page(PHONE)

    page.goto(server.url("index.html"))
    page.locator("summary").first.click()

    frame = page.locator("tbody tr").first.frame_locator("iframe")
    assert frame.locator("h2.title a").first.is_visible()
    screenshots(page, "outbox-index-open")
    assert horizontal_overflow(page)["scrollWidth"] <= PHONE.width
