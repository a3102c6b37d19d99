"""What a digest shows of each paper: its links (arXiv abstract and PDF, code, discussion),
its trending figures once, in both parts, and what a digest of many papers weighs."""

import random
import re
import textwrap
from email.message import EmailMessage

import pytest

from service.mail import compose
from service.mail.compose import (
    TEXT_WIDTH,
    arxiv_id_of,
    compose_digest,
    paper_view,
    render_digest,
)
from service.models import Digest, Interests, Paper
from service.ranking import build_corpus_stats, rank_papers
from tests.support.factories import (
    BACKGROUND_PAPERS,
    NOW,
    TODAY,
    make_digest,
    make_paper,
    make_settings,
)

SETTINGS = make_settings()
HF_PAGE = "https://huggingface.co/papers/2511.18001"
REPOSITORY = "https://github.com/example/one-step-video"


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def render(digest: Digest) -> tuple[str, str]:
    return parts(render_digest(digest, settings=SETTINGS, now=NOW))


def links_of(paper: Paper) -> list[tuple[str, str]]:
    return [(link.label, link.url) for link in paper_view(paper).links]


def test_an_arxiv_paper_links_its_abstract_and_pdf() -> None:
    paper = make_paper(id="2511.18001", url="https://arxiv.org/abs/2511.18001")

    view = paper_view(paper)

    assert view.url == "https://arxiv.org/abs/2511.18001"
    assert links_of(paper) == [
        ("Abstract", "https://arxiv.org/abs/2511.18001"),
        ("PDF", "https://arxiv.org/pdf/2511.18001"),
    ]


def test_a_versioned_arxiv_id_links_that_version() -> None:
    paper = make_paper(id="2501.01234v2", url="https://arxiv.org/abs/2501.01234v2")

    assert links_of(paper) == [
        ("Abstract", "https://arxiv.org/abs/2501.01234v2"),
        ("PDF", "https://arxiv.org/pdf/2501.01234v2"),
    ]


def test_the_title_links_the_abstract_page_whatever_url_an_arxiv_paper_was_given() -> None:
    paper = make_paper(id="2511.18001", url="https://example.org/elsewhere")

    assert paper_view(paper).url == "https://arxiv.org/abs/2511.18001"


@pytest.mark.parametrize(
    ("paper_id", "url", "arxiv_id"),
    [
        ("2511.18001", None, "2511.18001"),
        ("8d3b9b2bfaa0", "https://arxiv.org/abs/2511.18001", "2511.18001"),
        ("8d3b9b2bfaa0", "http://www.arxiv.org/abs/2511.18001v3", "2511.18001v3"),
        ("8d3b9b2bfaa0", "https://arxiv.org/search/?searchtype=title&query=A+title", None),
        ("8d3b9b2bfaa0", "https://arxiv.org/abs/2511.18001?x=1", None),
        ("8d3b9b2bfaa0", "https://arxiv.org.evil.example/abs/2511.18001", None),
        ("8d3b9b2bfaa0", "https://openreview.net/forum?id=abc", None),
        ("8d3b9b2bfaa0", None, None),
        ("hep-th/9901001", None, None),
        ("2511.18001\n", None, None),
    ],
)
def test_the_arxiv_id_comes_from_the_id_or_an_abstract_page_url(
    paper_id: str, url: str | None, arxiv_id: str | None
) -> None:
    assert arxiv_id_of(make_paper(id=paper_id, url=url)) == arxiv_id


def test_a_paper_without_an_arxiv_id_has_no_pdf_and_its_title_keeps_its_own_link() -> None:
    search = "https://arxiv.org/search/?searchtype=title&query=A+title"
    paper = make_paper(id="8d3b9b2bfaa0", title="A title", url=search)

    text, html = render(make_digest([paper]))

    assert links_of(paper) == []
    assert paper_view(paper).url == search
    assert f'href="{search.replace("&", "&amp;")}"' in html
    assert "arxiv.org/pdf" not in html + text and "Abstract" not in html + text
    assert '<p class="links"' not in html
    # The text part has no title to click: the title's link gets a line of its own.
    assert f"\n    Link:       {search}\n" in text


def test_a_paper_with_no_link_at_all_shows_its_title_alone() -> None:
    paper = make_paper(id="8d3b9b2bfaa0", title="A title", url=None)

    text, html = render(make_digest([paper]))

    assert paper_view(paper).url is None
    assert "A title\n</h2>" in html
    assert "Link:" not in text and "https://arxiv.org" not in text


def test_the_code_and_discussion_links_follow_the_arxiv_ones() -> None:
    paper = make_paper(id="2511.18001", github_repo=REPOSITORY, hf_url=HF_PAGE)

    text, html = render(make_digest([paper]))

    assert links_of(paper) == [
        ("Abstract", "https://arxiv.org/abs/2511.18001"),
        ("PDF", "https://arxiv.org/pdf/2511.18001"),
        ("Code", REPOSITORY),
        ("Discussion", HF_PAGE),
    ]
    assert (
        "    Abstract:   https://arxiv.org/abs/2511.18001\n"
        "    PDF:        https://arxiv.org/pdf/2511.18001\n"
        f"    Code:       {REPOSITORY}\n"
        f"    Discussion: {HF_PAGE}\n"
    ) in text
    assert f'<a href="{REPOSITORY}" style="color: #1d4ed8;">Code</a>' in html
    assert f'<a href="{HF_PAGE}" style="color: #1d4ed8;">Discussion</a>' in html


def test_each_link_shows_only_when_known() -> None:
    with_code = make_paper(id="8d3b9b2bfaa0", url=None, github_repo=REPOSITORY)
    with_page = make_paper(id="8d3b9b2bfaa1", url=None, hf_url=HF_PAGE)

    assert links_of(with_code) == [("Code", REPOSITORY)]
    assert links_of(with_page) == [("Discussion", HF_PAGE)]


@pytest.mark.parametrize(
    "repository",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(document.cookie)//github.com/x",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "https://evil.example/github.com/example/repo",
        "https://github.com@evil.example/example/repo",
        "https://github.com",
        "//github.com/example/repo",
        "https://github.com/example/repo\r\nBcc: evil@x.test",
    ],
)
def test_a_repository_that_is_no_code_hosts_page_is_never_linked(repository: str) -> None:
    """Stored papers may predate the sources' rule, or come from elsewhere: the digest checks
    again."""
    paper = make_paper(github_repo=repository)

    text, html = render(make_digest([paper]))

    assert [label for label, _ in links_of(paper)] == ["Abstract", "PDF"]
    assert ">Code</a>" not in html and "Code:" not in text
    assert "evil.example" not in html + text
    assert not re.search(r"(javascript|data|vbscript):", html + text, re.IGNORECASE)


def test_a_repository_link_is_a_valid_url_in_the_html() -> None:
    paper = make_paper(github_repo='https://github.com/example/repo"><script>alert(1)</script>')

    _, html = render(make_digest([paper]))

    assert "<script>" not in html
    assert 'href="https://github.com/example/repo%22%3E%3Cscript%3Ealert(1)%3C/script%3E"' in html


def test_a_discussion_link_that_is_no_web_page_is_left_out() -> None:
    paper = make_paper(hf_url="javascript:alert(1)")

    _, html = render(make_digest([paper]))

    assert [label for label, _ in links_of(paper)] == ["Abstract", "PDF"]
    assert "javascript:" not in html


@pytest.mark.parametrize(
    ("why", "shown"),
    [
        ("Matches “diffusion” · trending: 87 upvotes", "Matches “diffusion” · trending"),
        (
            "Matches words: x · trending: 1 comment, 1,200 GitHub stars",
            "Matches words: x · trending",
        ),
        ("Trending: 12,345 upvotes, 6,789 comments, 1 GitHub star", "Trending"),
        (
            "Like \u2018A paper\u2019 you liked · trending: 3 upvotes",
            "Like \u2018A paper\u2019 you liked · trending",
        ),
        (
            "By Ada Lovelace you follow · trending: 1 upvote",
            "By Ada Lovelace you follow · trending",
        ),
        ("Matches “diffusion models”", "Matches “diffusion models”"),
        ("Matches “trending: 5 upvotes”; words: x", "Matches “trending: 5 upvotes”; words: x"),
        ("New: published 2026-11-24", "New: published 2026-11-24"),
    ],
)
def test_the_why_line_keeps_the_reason_and_leaves_the_figures_to_the_counts(
    why: str, shown: str
) -> None:
    text, html = render(make_digest([make_paper()], why=why))

    assert f"Why: {shown}</p>" in html
    assert f" Why: {shown} Abstract: " in " ".join(text.split())


# Papers with trending figures of their own, so that a figure names one paper alone.
TRENDING = [
    make_paper(
        id="2511.18001",
        title="One-step consistency distillation for video diffusion models",
        abstract="We distil video diffusion models into consistency models for one-step sampling.",
        upvotes=87,
        comments=5,
        github_stars=412,
        hf_url=HF_PAGE,
        github_repo=REPOSITORY,
    ),
    make_paper(
        id="2511.18002",
        title="Diffusion models for protein design",
        abstract="Diffusion models generate protein backbones that fold as designed.",
        upvotes=34,
        comments=None,
        github_stars=None,
    ),
    make_paper(
        id="2511.18003",
        title="Sparse mixture-of-experts routing at long context",
        abstract="A load-balancing loss keeps expert routing stable on long inputs.",
        upvotes=1,
        comments=2,
        github_stars=1_207,
    ),
]
FIGURES = {
    "2511.18001": ["87 upvotes", "5 comments", "412 GitHub stars"],
    "2511.18002": ["34 upvotes"],
    "2511.18003": ["1 upvote", "2 comments", "1,207 GitHub stars"],
}


@pytest.mark.parametrize(
    "interests",
    [Interests(keywords=("diffusion models",)), Interests()],
    ids=["matched and trending", "trending only"],
)
def test_each_trending_figure_shows_once_per_paper_in_both_parts(interests: Interests) -> None:
    stats = build_corpus_stats([*BACKGROUND_PAPERS, *TRENDING])
    ranked = rank_papers(
        TRENDING, interests, stats=stats, trending_weight=0.5, limit=10, today=TODAY
    )
    # The ranking's why-lines carry the figures: without care they would show twice.
    assert ranked and all("rending: " in scored.why for scored in ranked)
    subscriber = make_digest().subscriber.model_copy(update={"interests": interests})
    digest = Digest(subscriber=subscriber, issue_date=TODAY, papers=tuple(ranked))

    text, html = render(digest)

    # Wrapping may break a figure across lines of the text part.
    for part in (" ".join(text.split()), html):
        for scored in ranked:
            for figure in FIGURES[scored.paper.id]:
                assert len(re.findall(rf"(?<![\d,]){re.escape(figure)}\b", part)) == 1, figure
        assert "rending: " not in part


def test_thirty_papers_with_every_link_stay_well_under_gmails_clipping_size() -> None:
    """Gmail clips a message past about 102 KB (of its HTML, by most accounts): 30 papers as
    Hugging Face gives them, every link and count shown, weigh 92.4 KB in all, 65.5 KB of
    HTML (100.3 KB and 76.0 KB, without a Code link, before each paper's links came and the
    figures stopped repeating)."""
    papers = [
        make_paper(
            id=f"2511.{18000 + n:05d}",
            title=f"Paper {n}: scaling consistency distillation for video diffusion models",
            authors=tuple(f"Author Name{j}" for j in range(8)),
            summary="A consistency distillation recipe makes video diffusion models sample in "
            "one step without losing quality on UCF-101 and Kinetics.",
            upvotes=87 + n,
            comments=5,
            github_stars=1_412,
            hf_url=f"https://huggingface.co/papers/2511.{18000 + n:05d}",
            github_repo=f"https://github.com/example-lab/project-{n}",
        )
        for n in range(30)
    ]
    why = "Matches “video diffusion”, “consistency models” · trending: 87 upvotes, 5 comments"
    mail = compose_digest(make_digest(papers, why=why), settings=SETTINGS, now=NOW)
    _, html = parts(mail.as_email_message())

    assert len(html.encode()) < 70_000
    assert len(mail.data) < 96_000


def test_lines_short_enough_are_wrapped_as_textwrap_would() -> None:
    chooser = random.Random(7)
    alphabet = ["a", "Z", "é", "“", " ", " ", "  ", "\t", "\n", "\xa0", "\u2009", "-", "·"]
    texts = ["", " ", "Why: Matches “diffusion models” · trending", " leading", "trailing "]
    texts += [
        "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 80)))
        for _ in range(3000)
    ]
    for text in texts:
        expected = textwrap.fill(text, TEXT_WIDTH, break_long_words=False, break_on_hyphens=False)
        assert compose._wrap(text) == expected, repr(text)
