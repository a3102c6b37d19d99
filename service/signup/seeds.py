"""The papers a reader says they like, as they typed them: arXiv ids, arXiv or Hugging Face
paper links, stored ids or titles, resolved to the ids of stored papers.

An arXiv paper the store does not hold yet is looked up with the arXiv API (`id_list`) and
stored; a title is matched to stored papers only. Each line that cannot be resolved gets one
sentence saying why, so a form can show it next to what was typed.
"""

import re
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from service.models import PAPER_ID_PATTERN, Paper, Vote
from service.settings import Settings
from service.signup.limits import WindowLimiter
from service.sources import SourcePage, without_version
from service.sources.arxiv import QueryRefused, fetch_papers_by_id
from service.sources.remote import SourceError, make_client
from service.store import Store

# What one submit may ask for: a reader's favourite papers, not a library import.
MAX_PAPER_LINES = 20
MAX_PAPER_LINE_CHARS = 300
# A reader waits for the lookup: one try, not the daily fetch's patient retries.
LOOKUP_TIMEOUT_SECONDS = 10.0
# arXiv asks its API users for one call every 3 seconds: 20 a minute for the whole service,
# and a share of that for one client, so one visitor cannot use up everyone's lookups.
LOOKUPS_PER_MINUTE = 20
LOOKUPS_PER_CLIENT_PER_MINUTE = 5
MINUTE = timedelta(minutes=1)

_ID = r"(?P<id>\d{4}\.\d{4,5})(?:v\d+)?"
_ARXIV_LINK = re.compile(
    rf"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/{_ID}(?:\.pdf)?/?(?:[?#].*)?$", re.I
)
_HF_LINK = re.compile(rf"^https?://(?:www\.)?huggingface\.co/papers/{_ID}/?(?:[?#].*)?$", re.I)
_BARE_ID = re.compile(rf"^(?:arxiv:\s*)?{_ID}$", re.I)
_LINK = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_STORED_ID = re.compile(PAPER_ID_PATTERN)
_WORD = re.compile(r"[^\W_]+")

# Looks up arXiv ids (without versions); raises `SourceError` when arXiv cannot be asked.
ArxivLookup = Callable[[Sequence[str]], SourcePage]


class LookupUnavailable(SourceError):
    """No arXiv lookup now: the service's or this client's share of arXiv calls is used up."""


@dataclass(frozen=True)
class ResolvedPapers:
    """The stored papers the lines name, in the order typed and each once, and one sentence
    per line that names none."""

    paper_ids: tuple[str, ...]
    problems: tuple[str, ...] = ()
    # Some line went unresolved because arXiv could not be asked: trying later may work.
    lookup_failed: bool = False


@dataclass(frozen=True)
class _Line:
    typed: str
    # The arXiv id (without a version) an id or a link names; None for anything else.
    arxiv_id: str | None = None
    problem: str | None = None


def paper_lines(typed: str) -> list[str]:
    """The non-empty lines of a "Papers I like" box."""
    return [line.strip() for line in typed.splitlines() if line.strip()]


def check_paper_lines(lines: Sequence[str]) -> str | None:
    """Why these lines are more than one submit may ask for, or None."""
    if len(lines) > MAX_PAPER_LINES:
        return f"Up to {MAX_PAPER_LINES} papers at a time, one per line."
    if any(len(line) > MAX_PAPER_LINE_CHARS for line in lines):
        return f"Keep each line under {MAX_PAPER_LINE_CHARS} characters."
    return None


def resolve_papers(
    store: Store,
    lines: Sequence[str],
    *,
    lookup: ArxivLookup | None,
    now: datetime,
    known: Collection[str] = (),
) -> ResolvedPapers:
    """The stored papers `lines` name. An arXiv id the store lacks is looked up with `lookup`
    (None: stored papers only) and stored. Ids in `known` (papers the reader already likes)
    resolve as they are, stored or not."""
    parsed = [_parse_line(line) for line in lines]
    arxiv_ids = sorted({line.arxiv_id for line in parsed if line.arxiv_id})
    stored = set(store.get_papers(arxiv_ids)) if arxiv_ids else set()
    missing = [paper_id for paper_id in arxiv_ids if paper_id not in stored | set(known)]
    fetched, failure = _look_up(store, missing, lookup=lookup, now=now)
    paper_ids: dict[str, None] = {}
    problems: list[str] = []
    for line in parsed:
        if line.problem is not None:
            problems.append(line.problem)
        elif line.arxiv_id is not None:
            if line.arxiv_id in stored or line.arxiv_id in known or line.arxiv_id in fetched:
                paper_ids[line.arxiv_id] = None
            elif failure is not None:
                problems.append(failure(line.typed))
            else:
                problems.append(_not_found(line.typed))
        else:
            paper_id, problem = _stored_or_title(store, line.typed, known=known)
            if paper_id is not None:
                paper_ids[paper_id] = None
            else:
                problems.append(problem or _not_found(line.typed))
    return ResolvedPapers(
        paper_ids=tuple(paper_ids),
        problems=tuple(problems),
        lookup_failed=failure is not None
        and any(line.arxiv_id is not None and line.arxiv_id not in paper_ids for line in parsed),
    )


def arxiv_lookup(
    settings: Settings, *, limiter: WindowLimiter, client_key: str | None = None
) -> ArxivLookup:
    """An arXiv lookup for a reader who is waiting: one short try, within the service's and
    the client's share of arXiv calls (`LookupUnavailable` beyond them)."""
    quick = settings.model_copy(
        update={
            "source_max_attempts": 1,
            "source_timeout_seconds": min(settings.source_timeout_seconds, LOOKUP_TIMEOUT_SECONDS),
            "source_max_retry_after_seconds": 0.0,
        }
    )

    def look_up(arxiv_ids: Sequence[str]) -> SourcePage:
        if client_key is not None and not limiter.hit(
            f"arxiv-lookup:{client_key}", limit=LOOKUPS_PER_CLIENT_PER_MINUTE, window=MINUTE
        ):
            raise LookupUnavailable("too many arXiv lookups from this client")
        if not limiter.hit("arxiv-lookup", limit=LOOKUPS_PER_MINUTE, window=MINUTE):
            raise LookupUnavailable("too many arXiv lookups")
        with make_client(quick) as client:
            return fetch_papers_by_id(client, arxiv_ids, settings=quick)

    return look_up


def like_papers(
    store: Store, subscriber_id: int, paper_ids: Sequence[str], *, profile_id: int | None = None
) -> int:
    """Add `paper_ids` to the papers a subscriber's profile likes (their first one unless
    `profile_id`; a 👎 on one becomes a 👍); how many were not liked before."""
    added = 0
    for paper_id in paper_ids:
        vote = store.set_paper_vote(subscriber_id, paper_id, Vote.LIKE, profile_id=profile_id)
        if vote is not Vote.LIKE:
            added += 1
    return added


def normalised_title(title: str) -> str:
    """A title as it is compared: case and white space ignored."""
    return " ".join(unicodedata.normalize("NFKC", title).casefold().split())


def _parse_line(typed: str) -> _Line:
    for pattern in (_BARE_ID, _ARXIV_LINK, _HF_LINK):
        if match := pattern.match(typed):
            arxiv_id = without_version(match.group("id"))
            # YYMM: a month arXiv never had is refused by its API, for the whole lookup.
            if not 1 <= int(arxiv_id[2:4]) <= 12:
                return _Line(typed, problem=f"“{typed}” is not an arXiv id.")
            return _Line(typed, arxiv_id=arxiv_id)
    if _LINK.match(typed):
        return _Line(
            typed,
            problem=f"“{typed}” is not a link to a paper: use its arXiv or Hugging Face page.",
        )
    return _Line(typed)


def _look_up(
    store: Store, arxiv_ids: Sequence[str], *, lookup: ArxivLookup | None, now: datetime
) -> tuple[set[str], Callable[[str], str] | None]:
    """Look up and store `arxiv_ids`: the ids found, and when arXiv could not be asked, the
    sentence for each line it leaves unresolved."""
    if not arxiv_ids or lookup is None:
        return set(), None
    try:
        page = lookup(arxiv_ids)
    except QueryRefused:
        return set(), None  # ids arXiv does not accept: not found
    except SourceError:
        return set(), _unreachable
    wanted = set(arxiv_ids)
    papers = [_seen_when_published(paper, now=now) for paper in page.papers if paper.id in wanted]
    if papers:
        store.upsert_papers(papers, now=now)
    return {paper.id for paper in papers}, None


def _seen_when_published(paper: Paper, *, now: datetime) -> Paper:
    """A paper looked up for a reader counts as first seen on its publication date: an old
    paper someone likes must not turn up in every digest as news."""
    if paper.published_date is None:
        return paper
    published = datetime.combine(paper.published_date, time(), tzinfo=UTC)
    return paper.model_copy(update={"first_seen_at": min(published, now)})


def _stored_or_title(
    store: Store, typed: str, *, known: Collection[str]
) -> tuple[str | None, str | None]:
    """The paper a line that is not an arXiv id names: a stored id, or a stored paper's title
    (exactly, case and white space aside; else the same words, punctuation aside)."""
    if typed in known:
        return typed, None
    if _STORED_ID.match(typed) and store.get_paper(typed) is not None:
        return typed, None
    candidates = store.find_papers_by_title(typed)
    wanted = normalised_title(typed)
    same = [paper for paper in candidates if normalised_title(paper.title) == wanted]
    if not same:
        words = _WORD.findall(wanted)
        same = [p for p in candidates if _WORD.findall(normalised_title(p.title)) == words]
    if len(same) > 1:
        # The same title under an arXiv id and an imported one is one paper: take arXiv's.
        on_arxiv = [paper for paper in same if _BARE_ID.match(paper.id)]
        same = on_arxiv or same
    if len(same) == 1:
        return same[0].id, None
    if same:
        ids = " or ".join(paper.id for paper in same[:3])
        return None, f"Several papers are titled “{typed}”: enter the id of yours ({ids})."
    return None, None


def _not_found(typed: str) -> str:
    return f"No paper found for “{typed}”."


def _unreachable(typed: str) -> str:
    return f"arXiv could not be asked about “{typed}” just now: try again later."
