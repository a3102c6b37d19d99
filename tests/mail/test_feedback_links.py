"""The 👍/👎 links under each paper of a digest: in both parts, one page per paper made for one
subscriber, and what they add to a message's size."""

import re
from email.message import EmailMessage

from service.mail.compose import digest_context, digest_links, render_digest
from service.models import Digest, Paper
from service.signup.tokens import read_feedback_token
from service.templating import template_environment
from tests.support.factories import NOW, make_digest, make_paper, make_settings

SETTINGS = make_settings()
# What the links may add per paper, text and HTML parts together: about 630 bytes for an arXiv
# paper (four URLs of 69 characters, labels, the HTML's inlined style).
MAX_BYTES_PER_PAPER = 700


def papers(count: int) -> list[Paper]:
    return [
        make_paper(id=f"2511.{n:05d}", title=f"Paper {n} on diffusion models") for n in range(count)
    ]


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def test_every_paper_has_its_own_feedback_links_in_both_parts() -> None:
    issue = papers(2)
    text, html = parts(render_digest(make_digest(issue), settings=SETTINGS, now=NOW))
    bob = make_digest(issue, subscriber_id=43, email="bob@example.org")
    bobs = " ".join(parts(render_digest(bob, settings=SETTINGS, now=NOW)))
    pages = re.findall(r"(https://paperwire\.test/f/([A-Za-z0-9_-]+))\?vote=like\n", text)
    assert len(pages) == len(issue)
    for paper, (page, token) in zip(issue, pages, strict=True):
        # Made for this subscriber and this paper, with the subscriber's link key.
        assert read_feedback_token(
            token, link_key="alice-link-key", secret_keys=SETTINGS.secret_keys
        ) == (42, paper.id)
        assert f"    👎 Less like this: {page}?vote=dislike\n" in text
        assert f'href="{page}?vote=like"' in html and f'href="{page}?vote=dislike"' in html
        assert page not in bobs
    assert html.count(">👍 More like this</a>") == html.count(">👎 Less like this</a>") == 2
    assert html.count('class="feedback"') == len(issue)


def test_the_links_add_a_few_hundred_bytes_per_paper() -> None:
    digest = make_digest(papers(10))

    def size(digest: Digest, *, with_feedback: bool) -> int:
        ids = [scored.paper.id for scored in digest.papers] if with_feedback else []
        links = digest_links(
            digest.subscriber, digest.issue_date, settings=SETTINGS, now=NOW, paper_ids=ids
        )
        context = digest_context(digest, links=links)
        env = template_environment()
        return sum(
            len(env.get_template(f"email/digest.{kind}").render(context).encode())
            for kind in ("txt", "html")
        )

    added = size(digest, with_feedback=True) - size(digest, with_feedback=False)
    assert 0 < added <= MAX_BYTES_PER_PAPER * len(digest.papers)
