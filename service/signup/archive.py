"""A subscriber's archive: the "view in browser" copy of each issue sent, rebuilt from its
ledger row, and the list of their issues, newest first, a page at a time."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from service.errors import PaperwireError, UnknownSubscriber
from service.mail.compose import digest_context, digest_links, long_date, paper_view, shown_why
from service.models import (
    ARCHIVED_STATUSES,
    Delivery,
    Digest,
    DigestSection,
    IssueItem,
    Paper,
    ScoredPaper,
    Subscriber,
)
from service.settings import Settings
from service.signup.links import feed_url, issue_for_link, issue_url, subscriber_for_link
from service.signup.tokens import TokenPurpose
from service.store import Store
from service.templating import template_environment

# Issues listed on one page of the archive.
ARCHIVE_PAGE_SIZE = 20


class IssueNotFound(UnknownSubscriber):
    """The link is genuine but the issue was never sent, or its subscriber was erased."""


class ArchivePageNotFound(PaperwireError):
    """The archive has no page of that number."""


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    html: str


@dataclass(frozen=True)
class ArchivedPaper:
    title: str
    url: str | None
    why: str


@dataclass(frozen=True)
class ArchivedIssue:
    issue_date: date
    long_date: str
    # Its "view in browser" copy; empty when none of its papers is stored any more.
    url: str
    papers: tuple[ArchivedPaper, ...]


@dataclass(frozen=True)
class ArchivePage:
    """One page of a subscriber's archive: `number` of `count` pages, newest issues first."""

    issues: tuple[ArchivedIssue, ...]
    number: int
    count: int
    feed_url: str


def archived_issue_html(store: Store, token: str, *, settings: Settings, now: datetime) -> str:
    """The HTML of the issue an archive link names, re-rendered from its ledger row. Raises
    `InvalidToken` (a bad link, or its subscriber is gone) or `IssueNotFound`.

    Rebuilt rather than stored: the ledger keeps each issue's papers with their why-lines, and
    a copy of every issue's ~40 KB of HTML would soon outweigh the rest of the database.
    Papers deleted since are skipped.
    """
    subscriber, issue_date = issue_for_link(store, token, settings=settings, now=now)
    delivery = store.get_delivery(subscriber.id, issue_date)
    if delivery is None or delivery.status not in ARCHIVED_STATUSES:
        raise IssueNotFound("no such issue was sent")
    papers = store.get_papers([item.paper_id for item in issue_items(delivery)])
    rendered = render_issue(subscriber, delivery, papers, settings=settings)
    if rendered is None:
        raise IssueNotFound("the papers of this issue are no longer stored")
    return rendered.html


def issue_items(delivery: Delivery) -> tuple[IssueItem, ...]:
    """The papers of an issue as sent; an issue from before why-lines were kept has its
    paper ids only."""
    return delivery.items or tuple(IssueItem(paper_id=paper_id) for paper_id in delivery.paper_ids)


def issue_links_made_at(delivery: Delivery) -> datetime:
    """The time an archived issue's links are made at: when it went out (or, in doubt, when
    its last attempt ended). Its copy is then the same on every visit and in the feed."""
    return delivery.sent_at or delivery.updated_at


def render_issue(
    subscriber: Subscriber,
    delivery: Delivery,
    papers: Mapping[str, Paper],
    *,
    settings: Settings,
) -> RenderedIssue | None:
    """The subject and the "view in browser" HTML of an issue, from the `papers` stored; None
    when none of its papers is stored any more."""
    # Consecutive items of one section make it up again, headed as sent.
    sections: list[DigestSection] = []
    for item in issue_items(delivery):
        if item.paper_id not in papers:
            continue
        scored = ScoredPaper(
            paper=papers[item.paper_id], score=0.0, relevance=0.0, trending=0.0, why=item.why
        )
        if sections and sections[-1].name == item.section:
            last = sections[-1]
            sections[-1] = last.model_copy(update={"papers": (*last.papers, scored)})
        else:
            sections.append(DigestSection(name=item.section, papers=(scored,)))
    if not sections:
        return None
    digest = Digest(
        subscriber=subscriber,
        issue_date=delivery.issue_date,
        sections=tuple(sections),
        ranked_for=tuple(section.name for section in sections) if len(sections) > 1 else (),
    )
    scored_papers = digest.papers
    links = digest_links(
        subscriber,
        delivery.issue_date,
        settings=settings,
        now=issue_links_made_at(delivery),
        with_manage_link=False,
        paper_ids=[scored_paper.paper.id for scored_paper in scored_papers],
    )
    context = digest_context(digest, links=links)
    html = template_environment().get_template("email/digest.html").render(context)
    return RenderedIssue(subject=context["subject"], html=html)


def archive_page(
    store: Store, token: str, *, number: int, settings: Settings, now: datetime
) -> ArchivePage:
    """Page `number` (from 1) of the archive an archive link names. Raises `InvalidToken`, or
    `ArchivePageNotFound` for a page past the last (page 1 always exists, if empty)."""
    subscriber = subscriber_for_link(
        store, TokenPurpose.ARCHIVE_LIST, token, settings=settings, now=now
    )
    count = max(1, math.ceil(store.count_archived_issues(subscriber.id) / ARCHIVE_PAGE_SIZE))
    if not 1 <= number <= count:
        raise ArchivePageNotFound(f"the archive has {count} pages")
    deliveries = store.archived_issues(
        subscriber.id, limit=ARCHIVE_PAGE_SIZE, offset=(number - 1) * ARCHIVE_PAGE_SIZE
    )
    papers = store.get_papers(
        [item.paper_id for delivery in deliveries for item in issue_items(delivery)]
    )
    issues = tuple(
        _listed_issue(subscriber, delivery, papers, settings=settings) for delivery in deliveries
    )
    return ArchivePage(
        issues=issues,
        number=number,
        count=count,
        feed_url=feed_url(subscriber, settings=settings),
    )


def _listed_issue(
    subscriber: Subscriber,
    delivery: Delivery,
    papers: Mapping[str, Paper],
    *,
    settings: Settings,
) -> ArchivedIssue:
    listed = []
    for item in issue_items(delivery):
        paper = papers.get(item.paper_id)
        if paper is None:
            continue  # deleted since, as its copy leaves it out
        view = paper_view(paper)
        listed.append(ArchivedPaper(title=view.title, url=view.url, why=shown_why(item.why)))
    url = (
        issue_url(
            subscriber, delivery.issue_date, settings=settings, now=issue_links_made_at(delivery)
        )
        if listed
        else ""
    )
    return ArchivedIssue(
        issue_date=delivery.issue_date,
        long_date=long_date(delivery.issue_date),
        url=url,
        papers=tuple(listed),
    )
