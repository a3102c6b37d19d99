"""arXiv: the new papers of the configured categories, from the API's Atom feed.

`GET /api/query?search_query=(cat:cs.LG OR …) AND submittedDate:[… TO …]&sortBy=submittedDate`
answers an Atom feed, a page at a time (`start`, `max_results`). An entry's id is its abstract
URL with a version (`http://arxiv.org/abs/2511.01234v2`); the feed always describes the newest
version, so a paper is its id without the version and the latest metadata wins.

`GET /api/query?id_list=2511.01234,2511.05678` answers the same feed for named papers: the
papers a reader likes that the store does not hold yet.
"""

import logging
import re
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from xml.etree.ElementTree import Element, ParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import ValidationError

from service.models import Paper
from service.settings import Settings
from service.sources import Rejected, SourcePage, one_line, without_version
from service.sources.jsonl import ARXIV_ID, paper_url
from service.sources.remote import SourceError, get_page

log = logging.getLogger(__name__)

SOURCE = "arxiv"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
_ABS_ID = re.compile(r"/abs/(?P<id>[^/?#]+)$")
# arXiv marks a withdrawn paper in its comment ("This paper has been withdrawn by the author").
_WITHDRAWN = re.compile(r"\bwithdrawn\b", re.IGNORECASE)
_CATEGORY = re.compile(r"^[A-Za-z-]+(\.[A-Za-z-]+)?$")


class QueryRefused(SourceError):
    """arXiv answered, and refused the query (an id it does not accept, a malformed query):
    asking again would be refused again."""


def announcement_window(day: date, *, holidays: frozenset[date]) -> tuple[date, date] | None:
    """The submission dates of the papers arXiv announces on `day`, or None when it announces
    nothing (weekends and arXiv holidays).

    Approximated in whole UTC days: Tuesday to Friday bring the previous day's submissions,
    Monday those of Friday to Sunday. (arXiv's real cut-off is 14:00 US Eastern.)
    """
    if day.weekday() >= 5 or day in holidays:
        return None
    previous = day - timedelta(days=1)
    while previous.weekday() >= 5 or previous in holidays:
        previous -= timedelta(days=1)
    return previous, day - timedelta(days=1)


def fetch_new_papers(
    client: httpx.Client, *, first: date, last: date, settings: Settings
) -> Iterator[SourcePage]:
    """The papers first submitted from `first` to `last` (inclusive) in the configured
    categories, newest first, a page at a time until a short page."""
    categories = settings.arxiv_category_list
    bad = [c for c in categories if not _CATEGORY.match(c)]
    if bad or not categories:
        raise SourceError(
            f"arXiv: invalid PAPERWIRE_ARXIV_CATEGORIES {settings.arxiv_categories!r}"
        )
    query = "({}) AND submittedDate:[{}0000 TO {}2359]".format(
        " OR ".join(f"cat:{c}" for c in categories), f"{first:%Y%m%d}", f"{last:%Y%m%d}"
    )
    url = f"{settings.arxiv_base_url}/api/query"
    size = settings.arxiv_page_size
    for number in range(settings.source_max_pages):
        if number:
            # arXiv asks API users for a pause between calls.
            time.sleep(settings.arxiv_request_interval_seconds)
        what = f"arXiv {first}..{last}, page {number + 1}"
        params: dict[str, str | int] = {
            "search_query": query,
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "start": number * size,
            "max_results": size,
        }
        body = get_page(client, url, params=params, settings=settings, what=what)
        entries = _entries(body, what=what)
        yield parse_entries(entries)
        if len(entries) < size:
            return
    log.warning("%s: stopped after %d pages", SOURCE, settings.source_max_pages)


def fetch_papers_by_id(
    client: httpx.Client, arxiv_ids: Sequence[str], *, settings: Settings
) -> SourcePage:
    """The papers of `arxiv_ids` (new-style ids, without a version: the newest version is
    asked for), in one call. An id arXiv does not know is missing from the page; raises
    `QueryRefused` for an id it does not accept, `SourceError` when it cannot be read."""
    if not arxiv_ids:
        return SourcePage()
    bad = [paper_id for paper_id in arxiv_ids if not ARXIV_ID.match(paper_id)]
    if bad:
        raise QueryRefused(f"arXiv: not an arXiv id: {bad[0]!r}")
    url = f"{settings.arxiv_base_url}/api/query"
    params: dict[str, str | int] = {"id_list": ",".join(arxiv_ids), "max_results": len(arxiv_ids)}
    what = f"arXiv id_list {','.join(arxiv_ids)}"
    body = get_page(client, url, params=params, settings=settings, what=what)
    return parse_entries(_entries(body, what=what))


def parse_entries(entries: list[Element]) -> SourcePage:
    """Papers of a page; of two versions of one paper, the newer one."""
    page = SourcePage()
    newest: dict[str, tuple[int, Paper]] = {}
    for position, entry in enumerate(entries):
        raw_id = _text(entry, "atom:id")
        match = _ABS_ID.search(raw_id)
        name = match.group("id") if match else f"entry {position + 1}"
        if match is None or not ARXIV_ID.match(match.group("id")):
            page.rejected.append(Rejected(entry=name, reason=f"not an arXiv id: {raw_id!r}"))
            continue
        comment = _text(entry, "arxiv:comment")
        if _WITHDRAWN.search(comment) or _text(entry, "atom:summary").lower().startswith(
            "this paper has been withdrawn"
        ):
            page.rejected.append(Rejected(entry=name, reason="withdrawn"))
            continue
        try:
            paper = _paper(entry, without_version(name))
        except (ValidationError, ValueError) as exc:
            page.rejected.append(Rejected(entry=name, reason=str(exc).splitlines()[0]))
            continue
        version = int(name.rpartition("v")[2]) if name != paper.id else 0
        if paper.id not in newest or newest[paper.id][0] < version:
            newest[paper.id] = (version, paper)
    page.papers = [paper for _, paper in newest.values()]
    return page


def _paper(entry: Element, paper_id: str) -> Paper:
    title = one_line(_text(entry, "atom:title"))
    authors = tuple(
        name
        for author in entry.findall("atom:author", NS)
        if (name := one_line(_text(author, "atom:name")))
    )
    primary = entry.find("arxiv:primary_category", NS)
    categories = [primary.get("term", "")] if primary is not None else []
    categories += [c.get("term", "") for c in entry.findall("atom:category", NS)]
    published = _text(entry, "atom:published")
    return Paper(
        id=paper_id,
        title=title,
        abstract=one_line(_text(entry, "atom:summary")),
        authors=authors,
        authors_count=len(authors) if authors else None,
        published_date=datetime.fromisoformat(published).date() if published else None,
        source=SOURCE,
        url=paper_url(paper_id, title),
        categories=tuple(dict.fromkeys(c for c in categories if c)),
    )


def _entries(content: bytes, *, what: str) -> list[Element]:
    try:
        # defusedxml refuses entity definitions and external references: a hostile feed gets
        # an error, not gigabytes of expanded entities.
        feed = fromstring(content, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as exc:
        raise SourceError(f"{what}: malformed XML: {exc}") from exc
    if feed.tag != f"{{{NS['atom']}}}feed":
        raise SourceError(f"{what}: not an Atom feed (root element {feed.tag!r})")
    entries = feed.findall("atom:entry", NS)
    # The API reports a bad query as a feed with one entry whose id points at its errors page.
    for entry in entries:
        if "/api/errors" in _text(entry, "atom:id"):
            raise QueryRefused(f"{what}: arXiv refused the query: {_text(entry, 'atom:summary')}")
    return entries


def _text(element: Element, path: str) -> str:
    found = element.find(path, NS)
    return (found.text or "").strip() if found is not None else ""
