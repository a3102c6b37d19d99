"""A digest in Chromium in the light and the dark colour scheme, at phone and desktop widths:
each paper's links, readable contrast of every piece of text, no sideways scrolling.

The HTML part comes from `compose_digest`, as it is sent, served from 127.0.0.1. The dark
scheme is the browser's `prefers-color-scheme: dark`, as a mail client that honours it shows
the message. Screenshots of each scheme at 390 and 1280 pixels are kept under
var/test-artifacts/screenshots/ (see tests/support/browser.py).
"""

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.mail.compose import compose_digest
from service.models import Digest, Paper, ScoredPaper
from tests.support.browser import (
    DESKTOP,
    PHONE,
    BrowserPages,
    Screenshots,
    ServeFolder,
    StaticServer,
)
from tests.support.factories import NOW, TODAY, make_digest, make_paper, make_settings

if TYPE_CHECKING:
    from playwright.sync_api import Page

SETTINGS = make_settings()
SCHEMES = ("light", "dark")
# WCAG 2.1 AA for body text (1.4.3): none of the digest's text is large enough for 3:1.
MIN_CONTRAST = 4.5
MATCH = "Matches “diffusion models”"
SEARCH_URL = "https://arxiv.org/search/?searchtype=title&query=Fast+samplers"


def papers() -> list[tuple[Paper, str]]:
    """With and without a repository and a Hugging Face page; on arXiv and not, with a link of
    its own and without; each with a why-line as the ranking writes it."""
    return [
        (
            make_paper(
                id="2511.18001",
                title="One-step consistency distillation for video diffusion models",
                authors=("Ada Lovelace", "Grace Hopper", "Alan Turing", "Emmy Noether"),
                summary="A consistency distillation recipe makes video diffusion models sample "
                "in one step without losing quality.",
                upvotes=87,
                comments=5,
                github_stars=412,
                hf_url="https://huggingface.co/papers/2511.18001",
                github_repo="https://github.com/example/one-step-video",
            ),
            f"{MATCH} · trending: 87 upvotes, 5 comments, 412 GitHub stars",
        ),
        (
            make_paper(
                id="2511.18002",
                title="Diffusion models for protein design",
                upvotes=34,
                hf_url="https://huggingface.co/papers/2511.18002",
            ),
            f"{MATCH} · trending: 34 upvotes",
        ),
        (
            make_paper(
                id="2511.18003",
                title="Scaling laws for diffusion transformers trained on code and mathematics",
                upvotes=None,
            ),
            "Matches words: diffusion",
        ),
        (
            make_paper(id="8d3b9b2bfaa0", title="Fast samplers", url=SEARCH_URL, upvotes=None),
            MATCH,
        ),
        (
            make_paper(id="8d3b9b2bfaa1", title="A paper with no link at all", url=None, upvotes=2),
            f"{MATCH} · trending: 2 upvotes",
        ),
    ]


def serve_digest(folder: Path, static_server: ServeFolder) -> str:
    scored = tuple(
        ScoredPaper(paper=paper, score=1.0, relevance=0.8, trending=0.2, why=why)
        for paper, why in papers()
    )
    digest = Digest(subscriber=make_digest().subscriber, issue_date=TODAY, papers=scored)
    mail = compose_digest(digest, settings=SETTINGS, now=NOW)
    body = mail.as_email_message().get_body(preferencelist=("html",))
    assert body is not None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digest.html").write_text(str(body.get_content()), encoding="utf-8")
    server: StaticServer = static_server(folder)
    return server.url("digest.html")


# Every visible element that holds text of its own, with its colour and the background it is
# drawn on: that of the nearest element, itself or an ancestor, that paints one.
TEXT_COLOURS = """() => Array.from(document.body.querySelectorAll('*'))
    .filter(el => el.getClientRects().length > 0
        && getComputedStyle(el).visibility === 'visible'
        && Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim()))
    .map(el => {
        let painted = el;
        while (painted && /^rgba\\(.*, 0\\)$|^transparent$/.test(
            getComputedStyle(painted).backgroundColor)) {
            painted = painted.parentElement;
        }
        return {
            element: el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''),
            text: el.textContent.trim().slice(0, 40),
            color: getComputedStyle(el).color,
            background: painted ? getComputedStyle(painted).backgroundColor : 'none',
        };
    })"""


def rgb(colour: str) -> tuple[float, float, float]:
    match = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", colour)
    assert match is not None, f"not an opaque colour: {colour}"
    assert match.group(4) in (None, "1"), f"a translucent colour: {colour}"
    red, green, blue = (int(match.group(n)) for n in (1, 2, 3))
    return red, green, blue


def luminance(colour: str) -> float:
    """WCAG 2.1's relative luminance."""

    def linear(channel: float) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in rgb(colour))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_colours(page: "Page") -> list[dict[str, str]]:
    found: list[dict[str, str]] = page.evaluate(TEXT_COLOURS)
    return found


def scheme_colours(page: "Page") -> dict[str, str]:
    """The colours a scheme changes, of the page, a card and the text in it."""
    values: dict[str, str] = page.evaluate(
        """() => {
            const style = selector => getComputedStyle(document.querySelector(selector));
            return {
                page: style('body').backgroundColor,
                card: style('.card').backgroundColor,
                title: style('.title-link').color,
                text: style('.snippet').color,
                links: style('.links a').color,
                counts: style('.counts').color,
                footer: style('.footer').color,
            };
        }"""
    )
    return values


def scroll_width(page: "Page") -> int:
    width: int = page.evaluate("() => document.documentElement.scrollWidth")
    return width


def test_the_digest_is_readable_in_the_light_and_the_dark_scheme(
    new_page: BrowserPages, static_server: ServeFolder, screenshots: Screenshots, tmp_path: Path
) -> None:
    url = serve_digest(tmp_path / "site", static_server)
    colours: dict[str, dict[str, str]] = {}
    for scheme in SCHEMES:
        page = new_page(PHONE, color_scheme=scheme)
        page.goto(url)
        assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
        colours[scheme] = scheme_colours(page)
        for viewport in (PHONE, DESKTOP):
            page.set_viewport_size(viewport.size)
            shown = text_colours(page)
            checked = {item["element"] for item in shown}
            # Body text, titles and every kind of link are among what is measured.
            assert {"p.snippet", "a.title-link", "a", "h2.title", "a.footer-link"} <= checked
            too_faint = [
                (item, round(contrast(item["color"], item["background"]), 2))
                for item in shown
                if contrast(item["color"], item["background"]) < MIN_CONTRAST
            ]
            assert too_faint == [], (scheme, viewport.label)
            if viewport is PHONE:
                assert scroll_width(page) <= PHONE.width, scheme
        screenshots(page, f"digest-{scheme}")
    light, dark = colours["light"], colours["dark"]
    assert [name for name in light if light[name] == dark[name]] == []
    # Dark means dark: the page and the cards darker than the text on them.
    assert luminance(dark["card"]) < luminance(dark["text"])
    assert luminance(dark["page"]) < 0.05 and luminance(light["page"]) > 0.8


def test_each_paper_shows_the_links_it_has(
    new_page: BrowserPages, static_server: ServeFolder, tmp_path: Path
) -> None:
    page = new_page(PHONE)
    page.goto(serve_digest(tmp_path / "site", static_server))

    cards = page.locator("td.card")
    shown: list[list[tuple[str, Any]]] = []
    for index in range(cards.count()):
        row = cards.nth(index).locator("p.links a")
        shown.append(
            [
                (row.nth(n).inner_text(), row.nth(n).get_attribute("href"))
                for n in range(row.count())
            ]
        )

    assert shown == [
        [
            ("Abstract", "https://arxiv.org/abs/2511.18001"),
            ("PDF", "https://arxiv.org/pdf/2511.18001"),
            ("Code", "https://github.com/example/one-step-video"),
            ("Discussion", "https://huggingface.co/papers/2511.18001"),
        ],
        [
            ("Abstract", "https://arxiv.org/abs/2511.18002"),
            ("PDF", "https://arxiv.org/pdf/2511.18002"),
            ("Discussion", "https://huggingface.co/papers/2511.18002"),
        ],
        [
            ("Abstract", "https://arxiv.org/abs/2511.18003"),
            ("PDF", "https://arxiv.org/pdf/2511.18003"),
        ],
        [],
        [],
    ]
    titles = page.locator("h2.title a")
    assert [titles.nth(n).get_attribute("href") for n in range(titles.count())] == [
        "https://arxiv.org/abs/2511.18001",
        "https://arxiv.org/abs/2511.18002",
        "https://arxiv.org/abs/2511.18003",
        SEARCH_URL,
    ]
    # The figures once, on the counts line; the why-line keeps the reason.
    first = cards.nth(0)
    assert first.locator(".counts").inner_text() == "87 upvotes · 5 comments · 412 GitHub stars"
    assert first.locator(".why").inner_text() == f"Why: {MATCH} · trending"
    assert page.get_by_text("87 upvotes").count() == 1
