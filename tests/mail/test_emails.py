"""Rendering digest emails: the text and HTML parts, headers, and hostile paper data."""

import random
import re
import string
from datetime import timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from html.parser import HTMLParser

import css_inline
import pytest
from jinja2 import Environment

from service.mail.compose import (
    _parsed_recipient_address,
    abstract_snippet,
    compose_digest,
    digest_context,
    digest_links,
    paper_view,
    recipient_address,
    render_digest,
    split_sentences,
)
from service.mail.wire import OutgoingMail
from service.models import Digest, Frequency, InterestProfile, Paper
from service.settings import Settings
from service.signup.return_addresses import digest_message_id
from service.templating import template_environment
from tests.support.factories import (
    HOSTILE_TITLES,
    NOW,
    TODAY,
    make_digest,
    make_paper,
    make_settings,
)


def render(digest: Digest, settings: Settings | None = None) -> EmailMessage:
    return render_digest(digest, settings=settings or make_settings(), now=NOW)


def compose(digest: Digest, settings: Settings | None = None) -> OutgoingMail:
    return compose_digest(digest, settings=settings or make_settings(), now=NOW)


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def reparse(mail: OutgoingMail) -> EmailMessage:
    """The bytes on the wire, as a receiver's stdlib reads them."""
    parsed = BytesParser(policy=policy.default).parsebytes(mail.data)
    assert isinstance(parsed, EmailMessage)
    return parsed


def two_papers() -> list[Paper]:
    """An arXiv paper with every link, and an imported paper with no arXiv id and no URL."""
    return [
        make_paper(
            hf_url="https://huggingface.co/papers/2511.00001",
            github_repo="https://github.com/example/consistency",
        ),
        make_paper(
            id="sparse-attention-at-scale",
            title="Sparse attention at scale",
            abstract="Attention is sparse. We exploit it, e.g. in long documents. It is fast.",
            authors=(),
            authors_count=7,
            published_date=None,
            url=None,
            upvotes=None,
            comments=3,
            github_stars=1500,
        ),
    ]


def test_the_text_part_is_a_numbered_list_written_for_people() -> None:
    ids = [paper.id for paper in two_papers()]
    links = digest_links(
        make_digest().subscriber, TODAY, settings=make_settings(), now=NOW, paper_ids=ids
    )
    first, second = (links.feedback_urls[paper_id] for paper_id in ids)
    text, _ = parts(render(make_digest(two_papers())))
    assert text == (
        "Your papers for Wednesday 25 November 2026\n"
        "2 papers picked for your interests.\n"
        "\n"
        "Only 2 new papers matched your interests closely enough today. For\n"
        "more, add broader interests or a sentence about your work, press\n"
        "“More like this” on papers you enjoy, or move the mix towards\n"
        "trending, all under “Manage preferences” below.\n"
        "\n"
        "1.  Consistency models for fast diffusion sampling\n"
        "    Ada Lovelace, Grace Hopper · 24 Nov 2026 · 12 upvotes\n"
        "\n"
        "    We distil diffusion models into consistency models that sample in\n"
        "    one step. Quality matches multi-step samplers on ImageNet. Code is\n"
        "    released.\n"
        "\n"
        "    Why: Matches “diffusion models”; trending this week.\n"
        "\n"
        "    Abstract:   https://arxiv.org/abs/2511.00001\n"
        "    PDF:        https://arxiv.org/pdf/2511.00001\n"
        "    Code:       https://github.com/example/consistency\n"
        "    Discussion: https://huggingface.co/papers/2511.00001\n"
        "\n"
        f"    👍 More like this: {first}?vote=like\n"
        f"    👎 Less like this: {first}?vote=dislike\n"
        "\n"
        "2.  Sparse attention at scale\n"
        "    7 authors · 3 comments · 1,500 GitHub stars\n"
        "\n"
        "    Attention is sparse. We exploit it, e.g. in long documents. It is\n"
        "    fast.\n"
        "\n"
        "    Why: Matches “diffusion models”; trending this week.\n"
        "\n"
        f"    👍 More like this: {second}?vote=like\n"
        f"    👎 Less like this: {second}?vote=dislike\n"
        "\n"
        "------------------------------------------------------------------------\n"
        f"View in your browser:  {links.archive_url}\n"
        f"Your archive:          {links.archive_list_url}\n"
        f"Manage preferences:    {links.manage_url}\n"
        f"Unsubscribe:           {links.unsubscribe_url}\n"
        "\n"
        "You get this email because you subscribed to the Paperwire daily digest.\n"
    )


def test_the_html_part_shows_one_card_per_paper() -> None:
    links = digest_links(make_digest().subscriber, TODAY, settings=make_settings(), now=NOW)
    _, html = parts(render(make_digest(two_papers())))
    assert "Your papers for Wednesday 25 November 2026" in html
    assert "2 papers picked for your interests." in html
    assert html.count('class="card"') == 2
    assert 'href="https://arxiv.org/abs/2511.00001"' in html
    assert ">Consistency models for fast diffusion sampling</a>" in html
    assert "Ada Lovelace, Grace Hopper · 24 Nov 2026</p>" in html
    assert ">12 upvotes</p>" in html
    assert ">3 comments · 1,500 GitHub stars</p>" in html
    assert "7 authors" in html
    assert "Code is released.</p>" in html
    assert "A fourth sentence never shows." not in html
    assert "Why: Matches “diffusion models”; trending this week." in html
    # The links under a paper, in this order, each only when known.
    assert re.findall(r'<p class="links"[^>]*>(.*?)</p>', html) == [
        '<a href="https://arxiv.org/abs/2511.00001" style="color: #1d4ed8;">Abstract</a> · '
        '<a href="https://arxiv.org/pdf/2511.00001" style="color: #1d4ed8;">PDF</a> · '
        '<a href="https://github.com/example/consistency" style="color: #1d4ed8;">Code</a> · '
        '<a href="https://huggingface.co/papers/2511.00001" style="color: #1d4ed8;">Discussion</a>'
    ]
    # A paper with no arXiv id and no URL keeps its title, unlinked, and has no links.
    assert "Sparse attention at scale\n</h2>" in html
    for url in (links.archive_url, links.archive_list_url, links.manage_url, links.unsubscribe_url):
        assert f'href="{url}"' in html


def test_the_html_part_is_inlined_and_mobile_friendly() -> None:
    _, html = parts(render(make_digest(two_papers())))
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "max-width: 600px" in html
    assert 'class="card" style="padding: 18px 20px;' in html
    assert "@media only screen and (max-width: 620px)" in html  # kept for clients that read it
    assert "@media (prefers-color-scheme: dark)" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    # Everything else went into style attributes.
    assert ".title-link { color: #1d4ed8" not in html


@pytest.mark.parametrize(
    ("count", "subject"),
    [
        (1, "Your paper for Wed 25 Nov: “Consistency models for fast diffusion sampling”"),
        (2, "Your papers for Wed 25 Nov: “Consistency models for fast diffusion sampling” and "
            "1 more"),
    ],
)  # fmt: skip
def test_the_subject_names_the_top_paper_and_counts_the_rest(count: int, subject: str) -> None:
    message = render(make_digest(two_papers()[:count]))
    assert message["Subject"] == subject


def test_a_long_top_title_is_shortened_in_the_subject() -> None:
    title = "A very long title about diffusion models that goes on and on well past sixty chars"
    message = render(make_digest([make_paper(title=title)] * 10))
    assert message["Subject"] == (
        "Your papers for Wed 25 Nov: “A very long title about diffusion models that goes on and…” "
        "and 9 more"
    )


def test_headers_name_the_sender_recipient_and_list() -> None:
    settings = make_settings(mail_from_name="Paperwire — “Daily”")
    links = digest_links(make_digest().subscriber, TODAY, settings=settings, now=NOW)
    message = reparse(compose(make_digest(), settings))
    assert message["From"].addresses[0].display_name == "Paperwire — “Daily”"
    assert message["From"].addresses[0].addr_spec == "digest@paperwire.test"
    assert str(message["To"]) == "alice@example.org"
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == digest_message_id(
        make_digest().subscriber, TODAY, settings=settings
    )
    assert re.fullmatch(
        r"<digest-2026-11-25-42-[a-z2-7]{16}@paperwire\.test>", message["Message-ID"]
    )
    assert message["List-Id"] == "Paperwire digest <digest.paperwire.test>"
    assert message["List-Unsubscribe"] == (
        f"<{links.unsubscribe_url}>, <{links.unsubscribe_mailto}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_links_use_the_agreed_url_shapes() -> None:
    links = digest_links(make_digest().subscriber, TODAY, settings=make_settings(), now=NOW)
    assert links.unsubscribe_url.startswith("https://paperwire.test/u/")
    assert links.manage_url.startswith("https://paperwire.test/m/")
    assert links.archive_url.startswith("https://paperwire.test/a/")
    assert links.archive_list_url.startswith("https://paperwire.test/archive/")
    assert re.fullmatch(
        r"mailto:unsubscribe\+42-[a-z2-7]{16}@paperwire\.test\?subject=unsubscribe",
        links.unsubscribe_mailto,
    )


def test_the_message_id_is_the_same_for_every_rendering_of_an_issue() -> None:
    first = render_digest(make_digest(), settings=make_settings(), now=NOW)
    again = render_digest(make_digest(), settings=make_settings(), now=NOW + timedelta(hours=5))
    assert first["Message-ID"] == again["Message-ID"]
    settings = make_settings(mail_from_address="digest@x.test")
    ada = make_digest().subscriber
    message_id = digest_message_id(ada, TODAY, settings=settings)
    assert message_id.startswith("<digest-2026-11-25-42-") and message_id.endswith("@x.test>")
    others = {
        digest_message_id(ada.model_copy(update={"id": 43}), TODAY, settings=settings),
        digest_message_id(ada, TODAY + timedelta(days=1), settings=settings),
        # The same subscriber id in another row (another link key): another id.
        digest_message_id(ada.model_copy(update={"link_key": "k" * 32}), TODAY, settings=settings),
    }
    assert message_id not in others and len(others) == 3


@pytest.mark.parametrize(
    "base_url", ["https://paperwire.test", "https://digest.papers.example-university.edu/paperwire"]
)
def test_list_unsubscribe_is_never_encoded_on_the_wire(base_url: str) -> None:
    settings = make_settings(public_base_url=base_url)
    raw = compose(make_digest(subscriber_id=987_654_321), settings).data
    header = raw.split(b"\r\nList-Unsubscribe: ", 1)[1].split(b"\r\nList-Unsubscribe-Post", 1)[0]
    assert b"=?" not in header
    assert header.startswith(f"<{base_url}/u/".encode())
    mailto = rb",\r\n <mailto:unsubscribe\+987654321-[a-z2-7]{16}@paperwire\.test\?subject="
    assert re.search(mailto + rb"unsubscribe>$", header)


def test_the_message_is_text_then_html_both_utf8_8bit() -> None:
    message = render(make_digest())
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert [text.get_content_type(), html.get_content_type()] == ["text/plain", "text/html"]
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "8bit"
        assert "MIME-Version" not in part


def test_an_empty_digest_is_not_rendered() -> None:
    digest = make_digest().model_copy(update={"sections": ()})
    with pytest.raises(ValueError, match="empty"):
        render(digest)


def test_hostile_titles_never_break_headers_or_html() -> None:
    urls = ["javascript:alert(1)", 'https://x.test/?a=1&b="2"><script>', None, None, None]
    papers = [
        make_paper(id=f"p{i}", title=title, url=url)
        for i, (title, url) in enumerate(zip(HOSTILE_TITLES, urls, strict=True))
    ]
    digest = make_digest(papers, why="<b>bold</b>\r\nBcc: evil@x.test")
    message = reparse(compose(digest))
    assert "Bcc" not in message
    assert [str(value) for value in message.get_all("To", [])] == ["alice@example.org"]
    assert "\n" not in str(message["Subject"]) and "Bcc:" in str(message["Subject"])
    text, html = parts(message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in html
    assert "&lt;b&gt;bold&lt;/b&gt; Bcc: evil@x.test" in html
    assert "javascript:" not in html
    assert 'href="https://x.test/?a=1&amp;b=%222%22%3E%3Cscript%3E"' in html
    # Autoescaped by Jinja, quotes included; the curly ones need no escaping.
    assert "Quotes &#34;double&#34; and &#39;single&#39; and “curly”" in html
    assert "Emoji 🚀 and non-ASCII: Über Čeština 日本語" in html
    assert "<script>alert(1)</script> & friends" in text  # plain text is not HTML
    assert "Title Bcc: evil@x.test" in text


def test_overlong_lines_are_folded_within_the_smtp_limit() -> None:
    mail = compose(make_digest([make_paper(title="Long " + "word " * 400)]))
    assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998
    message = reparse(mail)
    assert all(part["Content-Transfer-Encoding"] == "8bit" for part in message.iter_parts())
    _, html = parts(message)
    assert "Long" + " word" * 400 + "</a>" in " ".join(html.split())  # folded at spaces only


def test_an_unbreakable_overlong_line_falls_back_to_quoted_printable() -> None:
    title = "X" * 2000
    mail = compose(make_digest([make_paper(title=title)]))
    assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998
    message = reparse(mail)
    assert [part["Content-Transfer-Encoding"] for part in message.iter_parts()] == [
        "quoted-printable",
        "quoted-printable",
    ]
    text, html = parts(message)
    assert title in text and title in html


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.org\r\nBcc: evil@x.test",
        "alice@example.org\nBcc: evil@x.test",
        "alice@example.org\rBcc: evil@x.test",
        "alice@example.org, evil@x.test",
        "alice@example.org>, <evil@x.test",
        '"alice\\\r\nBcc: evil"@x.test',
        '"alice\x00"@example.org',
        # The stdlib's parser fails on these with an IndexError and an AttributeError.
        "alice@",
        "alice@[",
    ],
)
def test_an_address_that_could_inject_headers_is_refused(email: str) -> None:
    with pytest.raises(ValueError, match="cannot address"):
        compose(make_digest(email=email))


def test_a_plain_address_is_taken_as_the_header_parser_would_take_it() -> None:
    """Plain addresses skip the parser: every address, plain or not, must come out as the
    parser gives it, or be refused alike."""
    chooser = random.Random(5)
    alphabet = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-.@ \"(),:;<>[]\\é"
    emails = [
        "alice@example.org",
        "Alice.Smith+news@Mail.Example.ORG",
        "a@b.c",
        "o'brien@example.ie",
        "x_y-z@sub-domain.example.co.uk",
        "-dash@-host.example",
        "a..b@example.org",
        ".a@example.org",
        "a.@example.org",
        "a@example..org",
        "a@localhost",
        "a@example.org.",
        '"quoted"@example.org',
        "a@[127.0.0.1]",
        "",
        "@example.org",
        "a@",
    ]
    emails += [
        "".join(chooser.choice(alphabet) for _ in range(chooser.randint(1, 12)))
        + chooser.choice(["@", "@@", "", "."])
        + "".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 12)))
        for _ in range(3000)
    ]
    for email in emails:
        try:
            parsed = _parsed_recipient_address(email)
        except ValueError as exc:
            with pytest.raises(ValueError, match="cannot address"):
                recipient_address(email)
            assert str(exc).startswith("cannot address")
            continue
        taken = recipient_address(email)
        assert (taken.username, taken.domain, str(taken)) == (
            parsed.username,
            parsed.domain,
            str(parsed),
        ), email


def test_an_internationalised_domain_is_sent_as_idna() -> None:
    message = render(make_digest(email="alice@bücher.example"))
    assert str(message["To"]) == "alice@xn--bcher-kva.example"


def test_ten_papers_with_long_abstracts_stay_under_gmails_clipping_size() -> None:
    sentence = "This sentence about diffusion models is padding for a long abstract. "
    papers = [
        make_paper(
            id=f"p{i}",
            title=f"Paper {i}: " + "a rather long title about many things " * 3,
            abstract=sentence * 60,
            authors=tuple(f"Author Number{j}" for j in range(40)),
            comments=120,
            github_stars=12_345,
        )
        for i in range(10)
    ]
    mail = compose(make_digest(papers, why="Matches " + "“a term”, " * 20))
    assert len(mail.data) < 100_000


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two! Three? Four.", ["One.", "Two!", "Three?", "Four."]),
        ("We use e.g. MMLU. Then stop.", ["We use e.g. MMLU.", "Then stop."]),
        ("Smith et al. Show it. Fig. 3 too.", ["Smith et al. Show it.", "Fig. 3 too."]),
        ("Up 3.5 points. (See below.) Done", ["Up 3.5 points.", "(See below.)", "Done"]),
        ("By J. Doe. Next one.", ["By J. Doe.", "Next one."]),
        ("lowercase. after a stop stays", ["lowercase. after a stop stays"]),
        ("", []),
    ],
)  # fmt: skip
def test_sentences_split_where_people_would(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_the_snippet_keeps_whole_sentences_within_the_cap() -> None:
    short = "First sentence. Second sentence. Third sentence. Fourth sentence."
    assert abstract_snippet(short) == "First sentence. Second sentence. Third sentence."
    long_second = "A first sentence. " + "Long " * 100 + "end."
    assert abstract_snippet(long_second) == "A first sentence."
    one_huge = "Word " * 200
    snippet = abstract_snippet(one_huge)
    assert len(snippet) <= 400 and snippet.endswith("Word…")
    assert abstract_snippet("  Spaced\n\n out.\tText.  ") == "Spaced out. Text."


@pytest.mark.parametrize(
    ("authors", "count", "line"),
    [
        (("A", "B"), None, "A, B"),
        (("A", "B", "C"), None, "A, B, C"),
        (("A", "B", "C", "D"), None, "A, B, C et al."),
        (("A", "B"), 9, "A, B et al."),
        ((), 7, "7 authors"),
        ((), 1, "1 author"),
        ((), None, ""),
    ],
)
def test_authors_are_shortened(authors: tuple[str, ...], count: int | None, line: str) -> None:
    view = paper_view(make_paper(authors=authors, authors_count=count, published_date=None))
    assert view.meta == line


def test_a_paper_is_prepared_once_for_all_subscribers() -> None:
    assert paper_view(make_paper()) is paper_view(make_paper())


def test_html_templates_autoescape_and_text_templates_do_not() -> None:
    autoescape = template_environment().autoescape
    assert callable(autoescape)
    assert autoescape("email/digest.html") is True
    assert autoescape("web/page.html.j2") is True
    assert autoescape("outbox/index.html") is True
    assert autoescape("email/digest.txt") is False


def test_a_trending_digest_says_so_and_a_weekly_one_says_weekly() -> None:
    digest = make_digest()
    subscriber = digest.subscriber.model_copy(
        update={"profiles": (InterestProfile(id=1),), "frequency": Frequency.WEEKLY}
    )
    text, html = parts(render(digest.model_copy(update={"subscriber": subscriber})))
    for part in (text, html):
        assert "1 trending paper." in part
        assert "picked for your interests" not in part
        assert "Paperwire weekly digest" in part


# The bytes on the wire are written by hand (service/outgoing.py); these check them against
# what the stdlib reads and against the message the stdlib used to build.

HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
]


def sample(case: str) -> tuple[Digest, Settings]:
    """Digests that exercise the encodings: plain, hostile, overlong, non-ASCII everywhere."""
    settings = make_settings()
    if case == "two papers":
        return make_digest(two_papers()), settings
    if case == "hostile":
        papers = [make_paper(id=f"p{i}", title=title) for i, title in enumerate(HOSTILE_TITLES)]
        return make_digest(papers, why="<b>bold</b>\r\nBcc: evil@x.test"), settings
    if case == "non-ASCII top title and sender name":
        title = "Über Čeština 日本語 🚀 «guillemets» and a title long enough to be shortened"
        sender = make_settings(mail_from_name="Paperwire — “Daily” Ü")
        return make_digest([make_paper(title=title), make_paper(id="p2")]), sender
    if case == "2,000 characters of words":
        return make_digest([make_paper(title="Word " * 400)]), settings
    if case == "2,000 unbreakable characters":
        return make_digest([make_paper(title="X" * 2000)]), settings
    if case == "2,000 unbreakable CJK characters":
        return make_digest([make_paper(title="日本語のタイトル" * 250)]), settings
    if case == "internationalised domain, weekly, no interests":
        digest = make_digest(email="alice@bücher.example")
        subscriber = digest.subscriber.model_copy(
            update={"profiles": (InterestProfile(id=1),), "frequency": Frequency.WEEKLY}
        )
        return digest.model_copy(update={"subscriber": subscriber}), settings
    raise AssertionError(case)


CASES = [
    "two papers",
    "hostile",
    "non-ASCII top title and sender name",
    "2,000 characters of words",
    "2,000 unbreakable characters",
    "2,000 unbreakable CJK characters",
    "internationalised domain, weekly, no interests",
]


def stdlib_headers(digest: Digest, settings: Settings) -> EmailMessage:
    """The headers as the stdlib built them before the bytes were written by hand."""
    links = digest_links(digest.subscriber, digest.issue_date, settings=settings, now=NOW)
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(
        display_name=settings.mail_from_name, addr_spec=settings.mail_from_address
    )
    message["To"] = recipient_address(digest.subscriber.email)
    message["Subject"] = digest_context(digest, links=links)["subject"]
    message["Date"] = format_datetime(NOW)
    message["Message-ID"] = digest_message_id(
        digest.subscriber, digest.issue_date, settings=settings
    )
    message["List-Id"] = f"Paperwire digest <digest.{settings.mail_domain}>"
    message["List-Unsubscribe"] = f"<{links.unsubscribe_url}>, <{links.unsubscribe_mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_lines(data: bytes) -> list[bytes]:
    return data.partition(b"\r\n\r\n")[0].split(b"\r\n")


@pytest.mark.parametrize("case", CASES)
def test_the_wire_bytes_parse_cleanly(case: str) -> None:
    mail = compose(*sample(case))
    assert b"\r" not in mail.data.replace(b"\r\n", b"")
    assert b"\n" not in mail.data.replace(b"\r\n", b"")
    assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998
    lines = header_lines(mail.data)
    assert all(line.isascii() for line in lines)
    # Folded within 78 wherever a space allows it: only a URI may run longer.
    assert all(len(line) <= 78 or line.startswith(b" <mailto:") for line in lines)
    message = reparse(mail)
    assert list(message.keys()) == HEADERS
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    for part in message.walk():
        assert part.defects == []
        assert [(name, value.defects) for name, value in part.items() if value.defects] == []
    assert mail.message_id == message["Message-ID"]
    # VERP: the envelope sender names the issue (tests/inbound reads it back).
    assert re.fullmatch(r"bounces\+\d{4}-\d\d-\d\d-\d+-[a-z2-7]{16}@paperwire\.test", mail.sender)
    assert mail.recipients == (message["To"].addresses[0].addr_spec,)


@pytest.mark.parametrize("case", CASES)
def test_headers_decode_to_what_the_stdlib_built(case: str) -> None:
    digest, settings = sample(case)
    message = reparse(compose(digest, settings))
    expected = stdlib_headers(digest, settings)
    same = [name for name in HEADERS[:8] if name != "List-Unsubscribe"]
    assert [(name, str(message[name])) for name in same] == [
        (name, str(expected[name])) for name in same
    ]
    # The stdlib folds List-Unsubscribe with a space more after the comma; same URIs.
    assert str(message["List-Unsubscribe"]).split() == str(expected["List-Unsubscribe"]).split()


@pytest.mark.parametrize("case", CASES)
def test_the_preview_is_what_is_sent(case: str) -> None:
    digest, settings = sample(case)
    preview = render_digest(digest, settings=settings, now=NOW)
    sent = reparse(compose(digest, settings))
    assert [(name, str(value)) for name, value in preview.items()] == [
        (name, str(value)) for name, value in sent.items()
    ]
    assert parts(preview) == tuple(part.replace("\r\n", "\n") for part in parts(sent))
    assert preview.as_bytes() == compose(digest, settings).data  # `digest preview --out x.eml`


@pytest.mark.parametrize(
    "title",
    [
        "Title\r\nBcc: evil@x.test",
        "Title\nX-Injected: yes",
        "Title\rX-Injected: yes",
        "Title\u2028X-Injected: yes",
        "Title\x85X-Injected: yes",
        "Title\r\n\r\n<p>a body of its own</p>",
        "Title\x00\x1b\x7f: controls",
    ],
)
def test_a_hostile_title_cannot_add_a_header(title: str) -> None:
    mail = compose(make_digest([make_paper(title=title)]))
    message = reparse(mail)
    assert list(message.keys()) == HEADERS
    assert mail.recipients == ("alice@example.org",)
    assert all(part.defects == [] for part in message.walk())
    assert str(message["Subject"]).startswith("Your paper for Wed 25 Nov: “Title")


def test_a_sender_name_that_could_inject_headers_is_refused() -> None:
    settings = make_settings(mail_from_name="Paperwire\r\nBcc: evil@x.test")
    with pytest.raises(ValueError, match="CR or LF"):
        compose(make_digest(), settings)


@pytest.mark.parametrize(
    "title",
    [
        "Word " * 400,
        "X" * 2000,
        "日本語のタイトル" * 250,
        "🚀" * 2000,
        "x" * 997 + " " + "y" * 1002,
    ],
    ids=["words", "unbreakable", "unbreakable CJK", "unbreakable emoji", "two long runs"],
)
def test_a_2000_character_title_keeps_every_line_within_998_octets(title: str) -> None:
    mail = compose(make_digest([make_paper(title=title)]))
    assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998
    assert all(len(line) <= 78 for line in header_lines(mail.data) if line.startswith(b"Subj"))
    text, html = parts(reparse(mail))
    for part in (text, html):
        # Folding only ever replaced a space with a line break.
        assert " ".join(title.split()) in " ".join(part.split())


def test_a_non_ascii_subject_is_encoded_and_decodes_back() -> None:
    title = "Über Čeština 日本語 🚀 — “quoted” =?utf-8?q?literal?= under_score"
    mail = compose(make_digest([make_paper(title=title)]))
    subject = b"\r\n".join(
        line
        for line in header_lines(mail.data)[2:]
        if line.startswith((b"Subject:", b" ")) and not line.startswith(b" <")
    )
    assert subject.startswith(b"Subject: Your paper for Wed 25 Nov: =?utf-8?")
    assert subject.isascii() and b"=?utf-8?" in subject
    shortened = "Über Čeština 日本語 🚀 — “quoted” =?utf-8?q?literal?=…"
    assert reparse(mail)["Subject"] == f"Your paper for Wed 25 Nov: “{shortened}”"


@pytest.mark.parametrize("case", CASES)
def test_the_7bit_version_is_ascii_and_says_the_same(case: str) -> None:
    mail = compose(*sample(case))
    seven_bit = mail.seven_bit_data()
    assert seven_bit.isascii()
    assert max(len(line) for line in seven_bit.split(b"\r\n")) <= 998
    assert b"\n" not in seven_bit.replace(b"\r\n", b"")
    parsed = BytesParser(policy=policy.default).parsebytes(seven_bit)
    assert isinstance(parsed, EmailMessage)
    assert all(part.defects == [] for part in parsed.walk())
    assert [part["Content-Transfer-Encoding"] for part in parsed.iter_parts()] != [None, None]
    sent = reparse(mail)
    assert [(name, str(parsed[name])) for name in HEADERS[:9]] == [
        (name, str(sent[name])) for name in HEADERS[:9]
    ]
    assert [part.replace("\r\n", "\n") for part in parts(parsed)] == [
        part.replace("\r\n", "\n") for part in parts(sent)
    ]


class _Outline(HTMLParser):
    """What a browser makes of a page, give or take whitespace, attribute order, implied
    <tbody> elements and where <style> sits in <head>."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, ...]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        if tag not in ("tbody", "style"):
            self.events.append(("<", tag, *(f"{n}={v}" for n, v in sorted(attrs))))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if tag not in ("tbody", "style"):
            self.events.append(("/", tag))

    def handle_data(self, data: str) -> None:
        if (text := " ".join(data.split())) and self._in_style:
            self.styles.append(text)
        elif text:
            self.events.append(("text", text))


def outline(html: str) -> tuple[list[tuple[str, ...]], list[str]]:
    parser = _Outline()
    parser.feed(html)
    parser.close()
    return parser.events, parser.styles


@pytest.mark.parametrize("case", CASES)
def test_css_inlined_once_gives_the_page_inlining_each_message_gave(case: str) -> None:
    digest, settings = sample(case)
    ids = [scored.paper.id for scored in digest.papers]
    links = digest_links(
        digest.subscriber, digest.issue_date, settings=settings, now=NOW, paper_ids=ids
    )
    context = digest_context(digest, links=links)
    env = template_environment()
    # The same environment without the extension, as every message was rendered before.
    per_message = Environment(
        loader=env.loader,
        autoescape=env.autoescape,
        undefined=env.undefined,
        trim_blocks=env.trim_blocks,
        lstrip_blocks=env.lstrip_blocks,
    )
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    before = inliner.inline(per_message.get_template("email/digest.html").render(context))
    after = env.get_template("email/digest.html").render(context)
    assert outline(after) == outline(before)
    assert "style=" in after and ".title-link { color: #1d4ed8" not in after


def test_a_sources_summary_is_the_snippet_and_its_hugging_face_page_is_linked() -> None:
    paper = make_paper(
        summary="A one-line summary from the source.",
        hf_url="https://huggingface.co/papers/2511.00001",
    )
    text, html = parts(render(make_digest([paper])))
    assert "    A one-line summary from the source.\n" in text
    assert "We distil" not in text
    assert "    Discussion: https://huggingface.co/papers/2511.00001\n" in text
    assert (
        '<a href="https://huggingface.co/papers/2511.00001" style="color: #1d4ed8;">Discussion</a>'
        in html
    )
    assert "A one-line summary from the source." in html


def test_a_sender_with_an_internationalised_domain_can_send() -> None:
    settings = make_settings(mail_from_address="digest@bücher.example")
    mail = compose_digest(make_digest(), settings=settings, now=NOW)
    assert mail.sender.startswith("bounces+") and mail.sender.endswith("@xn--bcher-kva.example")
    assert mail.message_id.endswith("@xn--bcher-kva.example>")


def test_a_digest_with_few_matches_says_how_to_get_more() -> None:
    few = render_digest(make_digest(), settings=make_settings(), now=NOW)
    text, html = parts(few)
    assert "Only 1 new paper matched your interests closely enough today" in text
    assert "Only 1 new paper matched your interests closely enough today" in html
    assert "add broader interests" in text

    papers = [make_paper(id=f"2511.0000{number}", title=f"Paper {number}") for number in range(3)]
    enough = render_digest(make_digest(papers), settings=make_settings(), now=NOW)
    assert "closely enough" not in parts(enough)[0]


def test_a_trending_digest_does_not_say_it_matched_few_interests() -> None:
    digest = make_digest()
    subscriber = digest.subscriber.model_copy(update={"profiles": (InterestProfile(id=1),)})
    trending = render_digest(
        digest.model_copy(update={"subscriber": subscriber}), settings=make_settings(), now=NOW
    )
    text, _ = parts(trending)
    assert "closely enough" not in text
    assert "Add interests under “Manage preferences”" in text
