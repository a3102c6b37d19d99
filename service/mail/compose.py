"""Digest and notice emails: subject/text/HTML triplets from templates/email/, bulk-mail headers."""

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2.filters import do_indent

from service.mail.wire import MailHeaders, OutgoingMail, multipart_alternative
from service.models import (
    Digest,
    Frequency,
    Paper,
    ScoredPaper,
    Subscriber,
    code_repository_url,
)
from service.settings import Settings
from service.signup.links import archive_list_url, feedback_urls, issue_url, subscriber_url
from service.signup.return_addresses import (
    BOUNCE_LOCAL_PART,
    issue_addresses,
    unsubscribe_address,
)
from service.signup.tokens import TokenPurpose
from service.sources.jsonl import ARXIV_ID
from service.templating import template_environment

SNIPPET_MAX_CHARS = 400
SNIPPET_MAX_SENTENCES = 3
SUBJECT_TITLE_CHARS = 60
PREHEADER_CHARS = 140
# Fewer papers than this passing the relevance floor make the digest say how to get more.
FEW_MATCHES = 3
# Text lines are wrapped at 68 characters and indented by 4 under the list numbers.
TEXT_WIDTH = 68
TEXT_INDENT = 4
# The text part's link lines line their URLs up after the longest label, "Discussion: ".
TEXT_LINK_LABEL_WIDTH = 12

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class DigestLinks:
    manage_url: str
    unsubscribe_url: str
    # This issue's "view in browser" copy, and the list of every issue ("Your archive").
    archive_url: str
    archive_list_url: str
    unsubscribe_mailto: str
    # The feedback page of each paper, by paper id; `?vote=like` or `?vote=dislike` follows.
    feedback_urls: Mapping[str, str] = field(default_factory=dict)

    @property
    def list_unsubscribe(self) -> tuple[str, str]:
        """The URIs of the `List-Unsubscribe` header: the one-click URL first, then mailto."""
        return (self.unsubscribe_url, self.unsubscribe_mailto)


@dataclass(frozen=True)
class PaperLink:
    label: str
    url: str


@dataclass(frozen=True)
class PaperView:
    """What every digest shows of a paper: computed once per paper, shared by subscribers."""

    title: str
    short_title: str
    # The title's link: the arXiv abstract page, else the page the source gave.
    url: str | None
    meta: str
    # The trending figures ("87 upvotes · 5 comments"), shown here and nowhere else.
    counts: str
    snippet: str
    # Abstract and PDF (arXiv papers), Code, Discussion (the Hugging Face page): each if known.
    links: tuple[PaperLink, ...]
    # The text part's lines, wrapped, and laid out as it shows them: indented by
    # TEXT_INDENT after the first line (see text_block).
    text_title: str
    text_meta: str
    text_snippet: str
    # One line per link, the title's own first when it is not the arXiv abstract page.
    text_links: str


@dataclass(frozen=True)
class DigestItem:
    paper: PaperView
    why: str
    text_why: str
    # This reader's 👍/👎 page for the paper ("" leaves the buttons out).
    feedback_url: str = ""


@dataclass(frozen=True)
class SectionView:
    """The papers of one profile in an issue; `name` is "" when the issue has one profile
    only, which reads as a digest without sections."""

    name: str
    items: tuple[DigestItem, ...]
    text_heading: str = ""


def render_digest(
    digest: Digest, *, settings: Settings, now: datetime | None = None
) -> EmailMessage:
    """The email of one issue, as `compose_digest` sends it, for previews and tests."""
    return compose_digest(digest, settings=settings, now=now).as_email_message()


def compose_digest(
    digest: Digest, *, settings: Settings, now: datetime | None = None
) -> OutgoingMail:
    """The email of one issue, ready to send; pure apart from reading templates."""
    if not digest.papers:
        raise ValueError("an empty digest is recorded as skipped, never rendered")
    now = now or datetime.now(UTC)
    subscriber = digest.subscriber
    paper_ids = [scored.paper.id for scored in digest.papers]
    profile_ids = {
        scored.paper.id: section.profile_id
        for section in digest.sections
        if section.profile_id is not None
        for scored in section.papers
    }
    links = digest_links(
        subscriber,
        digest.issue_date,
        settings=settings,
        now=now,
        paper_ids=paper_ids,
        profile_ids=profile_ids,
    )
    context = digest_context(digest, links=links)
    env = template_environment()
    text = env.get_template("email/digest.txt").render(context)
    html = env.get_template("email/digest.html").render(context)
    recipient = recipient_address(subscriber.email)
    # VERP: a bounce comes back to an address that names this issue (see
    # `service.signup.return_addresses`).
    sender, message_id = issue_addresses(subscriber, digest.issue_date, settings=settings)

    headers = MailHeaders()
    headers.add_mailbox(
        "From", display_name=settings.mail_from_name, addr_spec=settings.mail_from_address
    )
    headers.add("To", str(recipient))
    headers.add_text("Subject", context["subject"])
    headers.add("Date", format_datetime(now.astimezone(UTC)))
    headers.add("Message-ID", message_id)
    headers.add("List-Id", f"Paperwire digest <digest.{settings.mail_domain}>")
    headers.add_uri_list("List-Unsubscribe", links.list_unsubscribe)
    headers.add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    return OutgoingMail(
        sender=sender,
        recipients=(recipient.addr_spec,),
        message_id=message_id,
        data=multipart_alternative(headers, text=text, html=html),
    )


def compose_confirmation(
    email: str,
    *,
    confirm_url: str,
    message_key: str,
    settings: Settings,
    now: datetime | None = None,
) -> OutgoingMail:
    """The double opt-in email: one link that opens the confirm page. `message_key` makes
    its Message-ID unique per link sent."""
    context = {"confirm_url": confirm_url, "email": email}
    return _compose_notice(
        "confirm",
        email,
        context,
        message_id_key=f"confirm-{message_key}",
        settings=settings,
        now=now,
    )


def compose_already_subscribed(
    email: str,
    *,
    manage_url: str,
    message_key: str,
    settings: Settings,
    now: datetime | None = None,
) -> OutgoingMail:
    """For a signup of an address already subscribed: nothing changed, and here is the link
    to manage it (someone who lost their digests gets it back this way)."""
    context = {"manage_url": manage_url, "email": email}
    return _compose_notice(
        "already_subscribed",
        email,
        context,
        message_id_key=f"already-{message_key}",
        settings=settings,
        now=now,
    )


def compose_manage_link(
    email: str,
    *,
    manage_url: str,
    valid_days: int,
    message_key: str,
    settings: Settings,
    now: datetime | None = None,
) -> OutgoingMail:
    """A fresh manage link, asked for from the page of an expired one."""
    context = {"manage_url": manage_url, "email": email, "days": valid_days}
    return _compose_notice(
        "manage_link",
        email,
        context,
        message_id_key=f"manage-{message_key}",
        settings=settings,
        now=now,
    )


def _compose_notice(
    name: str,
    email: str,
    context: dict[str, Any],
    *,
    message_id_key: str,
    settings: Settings,
    now: datetime | None,
) -> OutgoingMail:
    """A one-off email a visitor asked for, from the `email/NAME.*` triplet."""
    now = now or datetime.now(UTC)
    env = template_environment()
    subject = " ".join(env.get_template(f"email/{name}.subject.txt").render(context).split())
    context = {**context, "subject": subject}
    text = env.get_template(f"email/{name}.txt").render(context)
    html = env.get_template(f"email/{name}.html").render(context)
    recipient = recipient_address(email)
    message_id = f"<{message_id_key}@{settings.mail_domain}>"
    headers = MailHeaders()
    headers.add_mailbox(
        "From", display_name=settings.mail_from_name, addr_spec=settings.mail_from_address
    )
    headers.add("To", str(recipient))
    headers.add_text("Subject", subject)
    headers.add("Date", format_datetime(now.astimezone(UTC)))
    headers.add("Message-ID", message_id)
    # Asked for by the visitor: no List-* headers, and auto-replies should stay away.
    headers.add("Auto-Submitted", "auto-generated")
    return OutgoingMail(
        # Bounces reach `paperwire inbound`, which keeps them for the operator: they name no
        # issue, and an address that never confirmed has no score to keep.
        sender=f"{BOUNCE_LOCAL_PART}@{settings.bounce_address_domain}",
        recipients=(recipient.addr_spec,),
        message_id=message_id,
        data=multipart_alternative(headers, text=text, html=html),
    )


def digest_context(digest: Digest, *, links: DigestLinks) -> dict[str, Any]:
    """What the digest templates are rendered with."""
    subscriber = digest.subscriber
    feedback = links.feedback_urls
    # Headings and the line naming the profiles only for a reader of several profiles: with
    # one, the issue reads as it did before profiles.
    profiles = digest.ranked_for if len(digest.ranked_for) > 1 else ()
    sections = [
        _section_view(
            section.name if profiles else "",
            [_digest_item(scored, feedback.get(scored.paper.id, "")) for scored in section.papers],
        )
        for section in digest.sections
    ]
    items = [item for section in sections for item in section.items]
    trending_only = all(profile.interests.is_empty for profile in subscriber.profiles)
    context: dict[str, Any] = {
        "count": len(items),
        "trending_only": trending_only,
        # The relevance floor let few papers through: say so, and how to widen the interests.
        "few_matches": not trending_only and len(items) < FEW_MATCHES,
        "cadence": "weekly" if subscriber.frequency is Frequency.WEEKLY else "daily",
        "items": items,
        "sections": sections,
        "profiles": profiles,
        "links": links,
        "long_date": long_date(digest.issue_date),
        "short_date": _short_date(digest.issue_date),
        "top_title": items[0].paper.short_title,
    }
    if profiles:
        context["profiles_text"] = _wrap(
            f"Ranked for your profiles: {' · '.join(map(clean_text, profiles))}. Edit them under "
            "“Manage preferences” below."
        )
    if context["few_matches"]:
        context["few_matches_text"] = _wrap(_few_matches_text(len(items)))
    subject = template_environment().get_template("email/digest.subject.txt").render(context)
    context["subject"] = " ".join(subject.split())
    context["preheader"] = _preheader(items)
    return context


def digest_links(
    subscriber: Subscriber,
    issue_date: date,
    *,
    settings: Settings,
    now: datetime,
    with_manage_link: bool = True,
    paper_ids: Sequence[str] = (),
    profile_ids: Mapping[str, int] | None = None,
) -> DigestLinks:
    """The links of one issue, each made for this subscriber alone (`service.signup.links`),
    with a feedback link for each of `paper_ids`, which trains the profile `profile_ids`
    gives for the paper (its section's), if any.

    `with_manage_link=False` leaves the manage link out, for the "view in browser" copy: its
    link never expires, and must not hand out a fresh manage link whenever it is opened.
    """
    unsubscribe_url = subscriber_url(
        TokenPurpose.UNSUBSCRIBE, subscriber, settings=settings, now=now
    )
    manage_url = (
        subscriber_url(TokenPurpose.MANAGE, subscriber, settings=settings, now=now)
        if with_manage_link
        else ""
    )
    mailto = f"mailto:{unsubscribe_address(subscriber, settings=settings)}?subject=unsubscribe"
    return DigestLinks(
        manage_url=manage_url,
        unsubscribe_url=unsubscribe_url,
        archive_url=issue_url(subscriber, issue_date, settings=settings, now=now),
        archive_list_url=archive_list_url(subscriber, settings=settings),
        unsubscribe_mailto=mailto,
        feedback_urls=_feedback_urls(
            subscriber, paper_ids, profile_ids or {}, settings=settings, now=now
        ),
    )


def _feedback_urls(
    subscriber: Subscriber,
    paper_ids: Sequence[str],
    profile_ids: Mapping[str, int],
    *,
    settings: Settings,
    now: datetime,
) -> dict[str, str]:
    """Each paper's feedback link, made a profile's papers at a time."""
    by_profile: dict[int | None, list[str]] = {}
    for paper_id in paper_ids:
        by_profile.setdefault(profile_ids.get(paper_id), []).append(paper_id)
    urls: dict[str, str] = {}
    for profile_id, papers in by_profile.items():
        urls.update(
            feedback_urls(subscriber, papers, settings=settings, now=now, profile_id=profile_id)
        )
    return urls


# A dot-atom local part at an ASCII host name: what nearly every address is, and what the
# header parser would give back unchanged (tests/mail/test_emails.py compares the two).
_PLAIN_ADDRESS = re.compile(
    r"(?P<username>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)


def recipient_address(email: str) -> Address:
    """`email` as a header address, or ValueError if it cannot be sent to safely."""
    if plain := _PLAIN_ADDRESS.fullmatch(email):
        # Parsing costs a tenth of a digest's rendering; a plain address needs none.
        return Address(username=plain["username"], domain=plain["domain"])
    return _parsed_recipient_address(email)


def _parsed_recipient_address(email: str) -> Address:
    try:
        address = Address(addr_spec=email)
    except (ValueError, HeaderParseError, IndexError, AttributeError) as exc:
        # The stdlib's parser fails on some malformed addresses ("a@", "a@[") with an
        # IndexError or AttributeError instead of an error of its own.
        raise ValueError(f"cannot address mail to {email!r}: {exc}") from exc
    if not address.username or not address.domain:
        raise ValueError(f"cannot address mail to {email!r}: no domain")
    if not address.domain.isascii():
        # Headers go out without SMTPUTF8, so an internationalised domain travels as IDNA.
        try:
            domain = address.domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"cannot address mail to {email!r}: {exc}") from exc
        address = Address(username=address.username, domain=domain)
    return address


@lru_cache(maxsize=4096)
def paper_view(paper: Paper) -> PaperView:
    """Cached: a day's digests share a few hundred papers among many subscribers."""
    title = clean_text(paper.title)
    meta = " · ".join(part for part in (_authors_line(paper), _date_line(paper)) if part)
    counts = " · ".join(_counts(paper))
    # A source's short summary (Hugging Face's `ai_summary`) reads better than the abstract's
    # first sentences; the abstract is the fallback.
    snippet = abstract_snippet(paper.summary) or abstract_snippet(paper.abstract)
    arxiv_id = arxiv_id_of(paper)
    links = _paper_links(paper, arxiv_id)
    url = _arxiv_url("abs", arxiv_id) if arxiv_id else _safe_url(paper.url)
    # The text part has no title to click: a title link that is not the abstract page (an
    # imported paper's own page, or an arXiv title search) gets a line of its own there.
    text_links = links if arxiv_id or url is None else (PaperLink("Link", url), *links)
    return PaperView(
        title=title,
        short_title=shorten(title, SUBJECT_TITLE_CHARS),
        url=url,
        meta=meta,
        counts=counts,
        snippet=snippet,
        links=links,
        text_title=text_block(title),
        text_meta=text_block(" · ".join(part for part in (meta, counts) if part)),
        text_snippet=text_block(snippet),
        text_links=do_indent(
            "\n".join(
                f"{link.label + ':':<{TEXT_LINK_LABEL_WIDTH}}{link.url}" for link in text_links
            ),
            TEXT_INDENT,
        ),
    )


def text_block(text: str) -> str:
    """`text` wrapped, its lines after the first indented as the text part's list items are:
    done once per paper or why-line, not by the template for every digest."""
    return do_indent(_wrap(text), TEXT_INDENT)


# An arXiv abstract page given as a paper's URL, for an imported paper whose id is not its
# arXiv id.
_ARXIV_ABSTRACT_URL = re.compile(r"^https?://(?:www\.)?arxiv\.org/abs/(?P<id>[0-9.v]+)$")


def _paper_links(paper: Paper, arxiv_id: str | None) -> tuple[PaperLink, ...]:
    """The links under a paper: its arXiv abstract and PDF (only for a paper on arXiv), its
    code repository (only a code host's https page), its Hugging Face page ("Discussion")."""
    candidates = (
        ("Abstract", _arxiv_url("abs", arxiv_id) if arxiv_id else None),
        ("PDF", _arxiv_url("pdf", arxiv_id) if arxiv_id else None),
        ("Code", _safe_url(code_repository_url(paper.github_repo))),
        ("Discussion", _safe_url(paper.hf_url)),
    )
    return tuple(PaperLink(label, url) for label, url in candidates if url)


def _arxiv_url(page: str, arxiv_id: str) -> str:
    return f"https://arxiv.org/{page}/{arxiv_id}"


def arxiv_id_of(paper: Paper) -> str | None:
    """The paper's arXiv id: its own id when that is one (every paper from Hugging Face and
    arXiv), else the id of an arXiv abstract page given as its URL; None for other papers."""
    if ARXIV_ID.fullmatch(paper.id):
        return paper.id
    match = _ARXIV_ABSTRACT_URL.fullmatch(paper.url or "")
    if match and ARXIV_ID.fullmatch(match.group("id")):
        return match.group("id")
    return None


# C0 and C1 control characters left after whitespace is collapsed: never useful in a title.
_CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)])


def clean_text(value: str) -> str:
    """One line of text: any run of whitespace (CR, LF, U+2028…) becomes one space."""
    return " ".join(value.split()).translate(_CONTROL_CHARS)


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-\u2013\u2014") + "…"


# A sentence ends at . ! or ? (perhaps inside a quote or bracket), then space, then a
# capital, digit or opening quote.
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "al.", "cf.", "vs.", "fig.", "figs.", "eq.", "eqs.", "sec.", "approx."}
    | {"resp.", "no.", "dr.", "prof.", "st.", "vol.", "ref.", "refs.", "tab.", "ch."}
)
_INITIAL = re.compile(r"[A-Z]\.")


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        last_word = text[start : match.start() + 1].rsplit(None, 1)[-1].lstrip("([\"'\u201c\u2018")
        if last_word.lower() in _ABBREVIATIONS or _INITIAL.fullmatch(last_word):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    if tail := text[start:].strip():
        sentences.append(tail)
    return sentences


def abstract_snippet(abstract: str) -> str:
    """The first two or three sentences of an abstract, within SNIPPET_MAX_CHARS."""
    sentences = split_sentences(clean_text(abstract))
    if not sentences:
        return ""
    snippet = ""
    for sentence in sentences[:SNIPPET_MAX_SENTENCES]:
        longer = f"{snippet} {sentence}" if snippet else sentence
        if len(longer) > SNIPPET_MAX_CHARS:
            break
        snippet = longer
    return snippet or shorten(sentences[0], SNIPPET_MAX_CHARS)


def _section_view(name: str, items: list[DigestItem]) -> SectionView:
    heading = clean_text(name)
    # The text part underlines a heading, as far as it is wide in a fixed-width font.
    text_heading = f"{heading}\n{'=' * min(len(heading), TEXT_WIDTH)}" if heading else ""
    return SectionView(name=heading, items=tuple(items), text_heading=text_heading)


def _digest_item(scored: ScoredPaper, feedback_url: str) -> DigestItem:
    why, text_why = _why_lines(scored.why)
    return DigestItem(
        paper=paper_view(scored.paper), why=why, text_why=text_why, feedback_url=feedback_url
    )


# The trending figures that end a why-line of the ranking (`service.ranking.explain`): "Matches
# “x” · trending: 87 upvotes, 5 comments", or "Trending: 87 upvotes" alone.
_FIGURE = r"[0-9][0-9,]* (?:upvotes?|comments?|GitHub stars?)"
_TRENDING_FIGURES = re.compile(rf"(^Trending| · trending): {_FIGURE}(?:, {_FIGURE})*$")


@lru_cache(maxsize=4096)
def shown_why(why: str) -> str:
    """The why-line as a reader sees it: the figures are the paper's counts line, so the
    why-line keeps the reason ("· trending") and drops them."""
    return _TRENDING_FIGURES.sub(r"\1", clean_text(why))


@lru_cache(maxsize=4096)
def _why_lines(why: str) -> tuple[str, str]:
    # Reasons repeat across subscribers ("Matches …"), so wrap each one once.
    cleaned = shown_why(why)
    return cleaned, text_block(f"Why: {cleaned}") if cleaned else ""


def _authors_line(paper: Paper) -> str:
    names = [name for name in map(clean_text, paper.authors) if name]
    if names:
        shown = names[:3]
        more = max(len(names), paper.authors_count or 0) > len(shown)
        return ", ".join(shown) + (" et al." if more else "")
    if paper.authors_count:
        return _count(paper.authors_count, "author", "authors")
    return ""


def _date_line(paper: Paper) -> str:
    day = paper.published_date
    return f"{day.day} {_MONTHS[day.month - 1][:3]} {day.year}" if day else ""


def _counts(paper: Paper) -> tuple[str, ...]:
    # A zero is known but says nothing worth showing.
    counts = (
        (paper.upvotes, "upvote", "upvotes"),
        (paper.comments, "comment", "comments"),
        (paper.github_stars, "GitHub star", "GitHub stars"),
    )
    return tuple(_count(n, one, many) for n, one, many in counts if n)


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _safe_url(url: str | None) -> str | None:
    """Only plain http(s) links: a `javascript:` or malformed URL stays unlinked.

    Characters a URL may not contain (quotes, <, >, non-ASCII) are percent-encoded, so the
    href holds a valid URL whatever the HTML serializer leaves unescaped in attributes.
    """
    if not url or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~")


def _wrap(text: str) -> str:
    # Most lines (a why-line, a short title) fit as they are: the same text textwrap would
    # give back, for none of its splitting. Printable means no tab, newline or Unicode space
    # that it would replace or drop.
    if len(text) <= TEXT_WIDTH and text.isprintable() and not text.endswith(" "):
        return text
    return textwrap.fill(text, TEXT_WIDTH, break_long_words=False, break_on_hyphens=False)


def _preheader(items: list[DigestItem]) -> str:
    """The preview line inbox lists show after the subject, which already names the top paper."""
    if len(items) == 1:
        return shorten(items[0].paper.snippet, PREHEADER_CHARS)
    return shorten("Also: " + " · ".join(item.paper.title for item in items[1:4]), PREHEADER_CHARS)


def long_date(day: date) -> str:
    """ "Wednesday 25 November 2026", in English whatever the locale."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _short_date(day: date) -> str:
    return f"{_DAYS[day.weekday()][:3]} {day.day} {_MONTHS[day.month - 1][:3]}"


def _few_matches_text(count: int) -> str:
    papers = "paper" if count == 1 else "papers"
    return (
        f"Only {count} new {papers} matched your interests closely enough today. For more, "
        "add broader interests or a sentence about your work, press “More like this” on "
        "papers you enjoy, or move the mix towards trending, all under “Manage preferences” "
        "below."
    )
