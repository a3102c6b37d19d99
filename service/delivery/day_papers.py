"""A day's candidate papers, analysed once for every subscriber, and each subscriber's digest
ranked from them: the rank step of the digest path."""

import gc
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from types import MappingProxyType

from service.delivery.sections import pick_sections
from service.models import Digest, DigestSection, Paper, ReadingHistory, ScoredPaper, Subscriber
from service.ranking import (
    CorpusStats,
    PreparedCandidates,
    prepare_candidates,
    rank_prepared,
)
from service.store import Store

# A digest brings news: papers first seen more than a week before the issue are never candidates,
# however long a subscriber has gone without an issue.
LOOKBACK = timedelta(days=7)

# Ids per query for the papers a batch voted on: a batch of 100 subscribers with every vote
# they may keep (2 x MAX_PAPER_VOTES) fits in one, well within SQLite's 32,766 and
# PostgreSQL's 65,535 bound parameters.
VOTED_PAPERS_PER_QUERY = 20_000

NO_VOTED_PAPERS: Mapping[str, Paper] = MappingProxyType({})

# Voted papers kept per process for the day's later batches: a few MB.
VOTED_PAPERS_KEPT = 20_000


# Candidate sets kept per process, by how many of the week's papers a subscriber's last issue
# already had the chance to bring: readers sent an issue yesterday share one, readers new this
# week another, with room for a few sending hours between fetches.
PREPARED_SETS_KEPT = 8


@dataclass(frozen=True, eq=False)
class DayPapers:
    """What a day's issues are ranked from: the recent papers, analysed once for everyone who
    can still get them."""

    recent: Sequence[Paper]
    stats: CorpusStats
    today: date
    _prepared: dict[int, PreparedCandidates] = field(default_factory=dict, repr=False)
    # Papers voted on, read for earlier batches (`voted_papers`); dropped with the day, as
    # they may be refreshed like any other.
    _voted: dict[str, Paper] = field(default_factory=dict, repr=False)

    @property
    def voted(self) -> Mapping[str, Paper]:
        return self._voted

    def keep_voted(self, papers: Mapping[str, Paper]) -> None:
        if len(self._voted) + len(papers) > VOTED_PAPERS_KEPT:
            self._voted.clear()
        self._voted.update(papers)

    @property
    def prepared(self) -> PreparedCandidates:
        """The whole week's papers, prepared for ranking."""
        return self._prepared_after(0)

    @cached_property
    def _by_first_seen(self) -> tuple[list[datetime], list[str]]:
        """When each recent paper was first seen, in order, and its id: a subscriber's older
        papers are then a prefix, found by bisection instead of a pass over the week's papers
        for each digest."""
        dated = sorted((p.first_seen_at, p.id) for p in self.recent if p.first_seen_at is not None)
        return [seen_at for seen_at, _ in dated], [paper_id for _, paper_id in dated]

    def seen_by(self, history: ReadingHistory) -> frozenset[str]:
        """Papers this subscriber has, or had the chance to get: sent, or older than their
        last issue (a paper passed over then is not news now)."""
        _, ids = self._by_first_seen
        return history.sent_paper_ids.union(ids[: self._passed_over(history)])

    def candidates_for(self, history: ReadingHistory) -> PreparedCandidates:
        """The papers first seen after this subscriber's last issue (the whole week without
        one), prepared for ranking. Ranking them ranks exactly as ranking the week with
        `seen_by` left out would, for the cost of what is new: on day 30 a reader sent an issue
        yesterday is ranked from a day of papers, not a week."""
        return self._prepared_after(self._passed_over(history))

    def _passed_over(self, history: ReadingHistory) -> int:
        """How many of the week's dated papers were first seen up to the last issue."""
        if history.last_sent_at is None:
            return 0
        seen_times, _ = self._by_first_seen
        return bisect_right(seen_times, history.last_sent_at)

    def _prepared_after(self, passed_over: int) -> PreparedCandidates:
        prepared = self._prepared.pop(passed_over, None)
        if prepared is not None:
            self._prepared[passed_over] = prepared  # the most recently used, kept longest
            return prepared
        _, ids = self._by_first_seen
        left_out = frozenset(ids[:passed_over])
        prepared = prepare_candidates(
            [paper for paper in self.recent if paper.id not in left_out],
            stats=self.stats,
            today=self.today,
        )
        while len(self._prepared) >= PREPARED_SETS_KEPT:
            del self._prepared[next(iter(self._prepared))]
        self._prepared[passed_over] = prepared
        # Kept for the day: out of the cyclic collector's way (see DayPapersCache.get).
        gc.freeze()
        return prepared


def issue_window_end(issue_date: date) -> datetime:
    """Papers first seen after the end of the issue date (UTC) belong to later issues."""
    return datetime.combine(issue_date + timedelta(days=1), time(), tzinfo=UTC)


class DayPapersCache:
    """A day's papers, analysed once per process and kept while the stored papers stay the
    same: every batch of the day ranks from the same candidates, and loading them costs as
    much CPU as ranking a few dozen digests."""

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._entries: dict[tuple[str, date], tuple[tuple[int, datetime | None], DayPapers]] = {}

    def get(self, store: Store, issue_date: date) -> DayPapers:
        key = (store.url.render_as_string(hide_password=True), issue_date)
        version = store.papers_version()
        cached = self._entries.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        day = load_day_papers(store, issue_date)
        self._entries.pop(key, None)
        while len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (version, day)
        # What stays for the day is out of the cyclic collector's way: a full collection
        # would otherwise walk all of it every few hundred digests for nothing.
        gc.freeze()
        return day


def load_day_papers(store: Store, issue_date: date) -> DayPapers:
    end = issue_window_end(issue_date)
    recent = store.list_papers(seen_since=end - LOOKBACK, seen_before=end)
    # Term statistics come from everything stored, so a rare term stays rare on a busy day;
    # the store keeps them counted, so reading them costs the same on day 1 and day 365.
    stats = store.corpus_stats()
    return DayPapers(recent=recent, stats=stats, today=issue_date)


def reading_histories(
    store: Store, subscriber_ids: Sequence[int], issue_date: date
) -> dict[int, ReadingHistory]:
    """What these subscribers were sent that could be a candidate again: papers of issues
    dated within the look-back (a day's margin for issues sent late). An older issue's papers
    were first seen before the window opened, so they are never candidates now; and an older
    issue, even one re-sent by hand lately, offered none of the window's papers, so it is not
    the last issue that passed them over."""
    since = issue_date - LOOKBACK - timedelta(days=1)
    return store.reading_history(
        subscriber_ids, before=issue_date, since=since, last_sent_since=since
    )


def voted_papers(
    store: Store, subscribers: Iterable[Subscriber], day: DayPapers | None = None
) -> dict[str, Paper]:
    """The stored papers these subscribers' profiles liked or disliked, by id, in one query for
    a batch; ids of papers not stored are left out (their votes still keep them out of
    digests). Given the day's papers, those already read for an earlier batch of the day are
    not read again: a reader's votes gather over months, and a year of them cost more to read
    than to rank."""
    ids = sorted(
        {
            paper_id
            for subscriber in subscribers
            for profile in subscriber.profiles
            for paper_id in (*profile.interests.liked, *profile.interests.disliked)
        }
    )
    known = NO_VOTED_PAPERS if day is None else day.voted
    papers = {paper_id: known[paper_id] for paper_id in ids if paper_id in known}
    missing = [paper_id for paper_id in ids if paper_id not in known]
    for start in range(0, len(missing), VOTED_PAPERS_PER_QUERY):
        papers.update(store.get_papers(missing[start : start + VOTED_PAPERS_PER_QUERY]))
    if day is not None:
        day.keep_voted(papers)
    return papers


def build_digest(
    subscriber: Subscriber,
    day: DayPapers,
    *,
    issue_date: date,
    history: ReadingHistory,
    limit: int,
    voted: Mapping[str, Paper] = NO_VOTED_PAPERS,
) -> Digest:
    """Rank the subscriber's candidate papers for each of their profiles, a section each with
    the profile's number of papers (at most `limit`); pure apart from the data passed in.
    `voted` holds the papers the subscriber liked and disliked (voted_papers, for a whole
    batch)."""
    profiles = subscriber.profiles
    # A paper voted on in one profile was seen, like one sent: no section brings it. Papers
    # passed over in earlier issues are not among the candidates at all.
    candidates = day.candidates_for(history)
    exclude_ids = history.sent_paper_ids.union(
        *(profile.interests.liked + profile.interests.disliked for profile in profiles)
    )

    def rank(number: int, papers: int) -> list[ScoredPaper]:
        interests = profiles[number].interests
        return rank_prepared(
            candidates,
            interests,
            trending_weight=profiles[number].trending_weight,
            limit=papers,
            exclude_ids=exclude_ids,
            liked=[voted[paper_id] for paper_id in interests.liked if paper_id in voted],
            disliked=[voted[paper_id] for paper_id in interests.disliked if paper_id in voted],
        )

    sizes = [min(profile.papers_per_issue, limit) for profile in profiles]
    picked = pick_sections(sizes, rank)
    sections = tuple(
        DigestSection(name=profile.name, profile_id=profile.id, papers=tuple(papers))
        for profile, papers in zip(profiles, picked, strict=True)
        if papers
    )
    return Digest(
        subscriber=subscriber,
        issue_date=issue_date,
        sections=sections,
        ranked_for=tuple(profile.name for profile in profiles),
    )
