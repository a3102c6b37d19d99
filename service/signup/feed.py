"""A subscriber's private Atom feed (RFC 4287) of their issues: one entry per issue, newest
first, its content the issue's "view in browser" HTML.

Written with `xml.etree`, which escapes every text and attribute; characters XML cannot carry
at all (C0 controls, lone surrogates) are dropped first, so no paper's text can break the feed.
"""

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime

from service.models import Subscriber
from service.settings import Settings
from service.signup.archive import issue_items, issue_links_made_at, render_issue
from service.signup.links import archive_list_url, feed_url, issue_url, subscriber_for_link
from service.signup.tokens import TokenPurpose
from service.store import Store

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
# The newest issues a feed holds: a month of daily issues, over a megabyte of HTML already. A
# reader polling at least monthly misses none; older ones stay in the archive.
FEED_ENTRIES = 30
FEED_TITLE = "Your Paperwire digest"
# What XML 1.0 cannot carry, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Feed:
    """A feed as served: its bytes, an ETag that changes whenever they do, and when its
    newest issue went out."""

    body: bytes
    etag: str
    last_modified: datetime


def subscriber_feed(store: Store, token: str, *, settings: Settings, now: datetime) -> Feed:
    """The feed a feed link names; raises `InvalidToken` (a bad link, or its subscriber is
    gone)."""
    subscriber = subscriber_for_link(store, TokenPurpose.FEED, token, settings=settings, now=now)
    deliveries = store.archived_issues(subscriber.id, limit=FEED_ENTRIES)
    papers = store.get_papers(
        [item.paper_id for delivery in deliveries for item in issue_items(delivery)]
    )
    updated = max(
        (issue_links_made_at(delivery) for delivery in deliveries),
        default=subscriber.created_at,
    )
    root = _feed_element(subscriber, updated, settings=settings)
    for delivery in deliveries:
        rendered = render_issue(subscriber, delivery, papers, settings=settings)
        if rendered is None:
            continue  # none of its papers is stored any more, as its copy says
        entry = ET.SubElement(root, "entry")
        _text(entry, "id", issue_entry_id(subscriber, delivery.issue_date, settings=settings))
        _text(entry, "title", rendered.subject)
        _text(entry, "updated", _rfc3339(issue_links_made_at(delivery)))
        url = issue_url(
            subscriber, delivery.issue_date, settings=settings, now=issue_links_made_at(delivery)
        )
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=url)
        _text(entry, "content", rendered.html, type="html")
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    # A hash of the bytes themselves: every input (the papers' details, the links, the
    # templates) is covered, and two fetches of an unchanged feed give the same bytes, since
    # each issue's links are made as of its sending.
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Feed(body=body, etag=etag, last_modified=updated)


def issue_entry_id(subscriber: Subscriber, issue_date: date, *, settings: Settings) -> str:
    """An issue's id in the feed (RFC 4151 tag URI): the same for as long as the issue exists,
    whatever the links or the address of the site become."""
    return f"tag:{settings.mail_domain},{issue_date.isoformat()}:digest/{subscriber.id}"


def feed_id(subscriber: Subscriber, *, settings: Settings) -> str:
    created = subscriber.created_at.date().isoformat()
    return f"tag:{settings.mail_domain},{created}:feed/{subscriber.id}"


def _feed_element(subscriber: Subscriber, updated: datetime, *, settings: Settings) -> ET.Element:
    # The default namespace as a plain attribute: ElementTree's own prefix registry is global.
    root = ET.Element("feed", xmlns=ATOM_NAMESPACE)
    _text(root, "id", feed_id(subscriber, settings=settings))
    _text(root, "title", FEED_TITLE)
    _text(root, "updated", _rfc3339(updated))
    author = ET.SubElement(root, "author")
    _text(author, "name", settings.mail_from_name)
    self_url = feed_url(subscriber, settings=settings)
    ET.SubElement(root, "link", rel="self", type="application/atom+xml", href=self_url)
    archive = archive_list_url(subscriber, settings=settings)
    ET.SubElement(root, "link", rel="alternate", type="text/html", href=archive)
    return root


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = _NOT_XML.sub("", text)
    return element


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
