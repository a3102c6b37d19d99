"""The "view in browser" copy of a sent issue, rebuilt from its ledger row."""

from datetime import datetime

from service.errors import UnknownSubscriber
from service.mail.compose import digest_context, digest_links
from service.models import DeliveryStatus, Digest, ScoredPaper
from service.settings import Settings
from service.signup.links import issue_for_link
from service.store import Store
from service.templating import template_environment


class IssueNotFound(UnknownSubscriber):
    """The link is genuine but the issue was never sent, or its subscriber was erased."""


def archived_issue_html(store: Store, token: str, *, settings: Settings, now: datetime) -> str:
    """The HTML of the issue an archive link names, re-rendered from the papers its ledger row
    lists, in the order sent. Raises `InvalidToken` (a bad link, or its subscriber is gone) or
    `IssueNotFound`.

    Rebuilt rather than stored: the ledger already keeps each issue's paper ids, and a copy of
    every issue's ~40 KB of HTML would soon outweigh the rest of the database. The "why" line
    of each paper is not kept, so the copy leaves it out; papers deleted since are skipped.
    """
    subscriber, issue_date = issue_for_link(store, token, settings=settings, now=now)
    delivery = store.get_delivery(subscriber.id, issue_date)
    if delivery is None or delivery.status not in (DeliveryStatus.SENT, DeliveryStatus.IN_DOUBT):
        raise IssueNotFound("no such issue was sent")
    papers = store.get_papers(delivery.paper_ids)
    scored = tuple(
        ScoredPaper(paper=papers[paper_id], score=0.0, relevance=0.0, trending=0.0, why="")
        for paper_id in delivery.paper_ids
        if paper_id in papers
    )
    if not scored:
        raise IssueNotFound("the papers of this issue are no longer stored")
    digest = Digest(subscriber=subscriber, issue_date=issue_date, papers=scored)
    links = digest_links(
        subscriber,
        issue_date,
        settings=settings,
        now=now,
        with_manage_link=False,
        paper_ids=[scored_paper.paper.id for scored_paper in scored],
    )
    context = digest_context(digest, links=links)
    return template_environment().get_template("email/digest.html").render(context)
