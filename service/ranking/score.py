"""Rank papers for subscribers: relevance to their profile (profile.py: keywords and sentence
by BM25F, papers liked and disliked, authors followed) blended with trending, by each
subscriber's trending weight.

Score = (1 - trending_weight) * relevance + trending_weight * trending * on-topic share, all in
[0, 1], where the on-topic share grows with relevance up to 1 at half a perfect match
(`topk.blend`): trending reorders papers about the reader's topics and cannot carry one that
only just passes the relevance floor past clearly relevant ones. The best papers are found
without scoring every candidate (topk.py).

Subscribers ranked from the same candidates (a batch of a day's digests) share the work on the
papers: `prepare_candidates` once, then `rank_prepared` per subscriber, which scores only the
papers that can make the subscriber's list. `rank_papers` does both for a single subscriber.
"""

import itertools
import math
from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date

from service.models import Interests, Paper, ScoredPaper
from service.ranking.authors import author_key
from service.ranking.explain import explain_author, explain_liked, explain_match, find_matches
from service.ranking.feedback import LIKED_WEIGHT, PaperVector, describe_paper
from service.ranking.profile import (
    AUTHOR_RELEVANCE,
    NO_SIGNALS,
    AuthorsBySurname,
    Profile,
    Signals,
    build_profile,
    find_excluded,
    find_signals,
)
from service.ranking.relevance import (
    TermIndex,
    WeightedClause,
    combine_clause_scores,
    index_candidates,
)
from service.ranking.terms import CorpusStats, PaperTerms, paper_text
from service.ranking.topk import find_best_papers

# Log-scaled popularity reaches 1.0 at these counts: about what the day's top paper gets on
# Hugging Face daily papers, a busy discussion, a widely used code release.
UPVOTES_AT_FULL_SCALE = 100
COMMENTS_AT_FULL_SCALE = 30
GITHUB_STARS_AT_FULL_SCALE = 1000

# Trending = popularity plus some freshness, so papers nobody voted on still order by date.
POPULARITY_SHARE = 0.75
# A digest covers about a week of papers; a paper loses half its freshness every 3 days.
RECENCY_HALF_LIFE_DAYS = 3.0


def trending_score(paper: Paper, *, today: date) -> float:
    """Trending in [0, 1]: log-scaled popularity plus freshness."""
    freshness = _recency(paper, today=today)
    return POPULARITY_SHARE * _popularity(paper) + (1.0 - POPULARITY_SHARE) * freshness


def _popularity(paper: Paper) -> float:
    """The strongest known signal, log-scaled; papers nobody has voted on yet score 0."""
    if not (paper.upvotes or paper.comments or paper.github_stars):
        return 0.0  # most papers of a day: spare them the logarithms
    signals = (
        (paper.upvotes, UPVOTES_AT_FULL_SCALE),
        (paper.comments, COMMENTS_AT_FULL_SCALE),
        (paper.github_stars, GITHUB_STARS_AT_FULL_SCALE),
    )
    return max(
        (min(1.0, math.log1p(count) / math.log1p(full)) for count, full in signals if count),
        default=0.0,
    )


def _recency(paper: Paper, *, today: date) -> float:
    published = paper.published_date
    if published is None and paper.first_seen_at is not None:
        published = paper.first_seen_at.date()
    if published is None:
        return 0.0
    age_days = max(0, (today - published).days)
    return float(0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS))


@dataclass(frozen=True, eq=False)
class PreparedCandidates:
    """Candidate papers analysed against corpus statistics, for ranking many subscribers.

    Built by prepare_candidates for a batch (or a day) of subscribers who share candidates,
    statistics and issue date; rank each subscriber with rank_prepared. Read-only for its users,
    so threads may share one (its caches may compute an entry twice, never differently).
    """

    # Best trending first, ties by id: the digest of empty interests, and the order in which
    # ranking visits papers.
    papers: tuple[Paper, ...]
    trending: tuple[float, ...]
    stats: CorpusStats
    today: date
    index: TermIndex
    _authors: list[AuthorsBySurname] = field(default_factory=list, repr=False)

    def describe(self, paper: Paper) -> PaperVector:
        """A liked or disliked paper's vector under these statistics (feedback.py), described
        once for every subscriber who voted on it."""
        key = (paper.id, paper.title, paper.abstract)
        descriptions = self.stats.descriptions
        vector = descriptions.get(key)
        if vector is None:
            vector = descriptions[key] = describe_paper(paper, self.stats)
        return vector

    def authors_by_surname(self) -> AuthorsBySurname:
        """The candidates by their authors' folded surnames, built on first use."""
        if not self._authors:
            found: dict[str, list[tuple[int, Sequence[str]]]] = {}
            for number, paper in enumerate(self.papers):
                surnames = {key.surname for key in map(author_key, paper.authors) if key}
                for surname in sorted(surnames):
                    found.setdefault(surname, []).append((number, paper.authors))
            self._authors.append(found)
        return self._authors[0]


def prepare_candidates(
    candidates: Sequence[Paper], *, stats: CorpusStats, today: date
) -> PreparedCandidates:
    """Analyse and weigh the candidates once for every subscriber ranked from them.

    A paper listed twice counts once, as its first listing. Preparing the same candidates
    again (the next batch of the day) reuses the index already built for them.
    """
    unique: dict[str, Paper] = {}
    for paper in candidates:
        unique.setdefault(paper.id, paper)
    scored = sorted(
        ((trending_score(paper, today=today), paper) for paper in unique.values()),
        key=lambda pair: (-pair[0], pair[1].id),
    )
    papers = tuple(paper for _, paper in scored)
    return PreparedCandidates(
        papers=papers,
        trending=tuple(trending for trending, _ in scored),
        stats=stats,
        today=today,
        index=index_candidates(
            tuple(paper_text(paper) for paper in papers),
            stats.avg_title_length,
            stats.avg_abstract_length,
        ),
    )


def rank_papers(
    candidates: Sequence[Paper],
    interests: Interests,
    *,
    stats: CorpusStats,
    trending_weight: float,
    limit: int,
    today: date,
    exclude_ids: Collection[str] = frozenset(),
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
) -> list[ScoredPaper]:
    """The best `limit` papers for these interests, best first, ties broken by paper id.

    One subscriber's ranking, as rank_prepared gives it. Subscribers sharing candidates are
    better ranked by preparing the candidates once and calling rank_prepared for each.
    """
    _check_trending_weight(trending_weight)
    prepared = prepare_candidates(candidates, stats=stats, today=today)
    return rank_prepared(
        prepared,
        interests,
        trending_weight=trending_weight,
        limit=limit,
        exclude_ids=exclude_ids,
        liked=liked,
        disliked=disliked,
    )


def rank_prepared(
    prepared: PreparedCandidates,
    interests: Interests,
    *,
    trending_weight: float,
    limit: int,
    exclude_ids: Collection[str] = frozenset(),
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
) -> list[ScoredPaper]:
    """The best `limit` prepared papers for these interests, best first, ties broken by id.

    `liked` and `disliked` are the papers of `interests.liked` and `interests.disliked` that
    are known. Score = `topk.blend(relevance, trending, trending_weight)`, all in
    [0, 1]. With a topic (keywords, sentence or liked papers), papers below MIN_RELEVANCE are
    left out whatever the weight. Without one, the digest is the trending one (trending alone,
    then id), lifted by followed authors and lowered near disliked papers. Papers voted on and
    papers about a topic left out are never ranked.
    """
    _check_trending_weight(trending_weight)
    if limit <= 0:
        return []
    papers = prepared.papers
    index = prepared.index
    profile = build_profile(
        interests,
        stats=prepared.stats,
        vector_of=prepared.describe,
        liked=liked,
        disliked=disliked,
    )
    index.start_ranking()
    excluded = exclude_ids if isinstance(exclude_ids, AbstractSet) else frozenset(exclude_ids)
    if profile.voted_ids or profile.excluded_topics:
        off_topic = {papers[number].id for number in find_excluded(profile, index)}
        excluded = excluded | profile.voted_ids | off_topic
    signals = find_signals(profile, index, prepared.authors_by_surname)
    if not profile.has_topic:
        return _rank_by_trending(prepared, profile, signals, limit=limit, excluded=excluded)
    ranked = find_best_papers(
        profile.clauses,
        papers,
        trending=prepared.trending,
        index=index,
        trending_weight=trending_weight,
        limit=limit,
        excluded=excluded,
        signals=signals,
    )
    # Why-lines only for the papers sent: explaining a match costs more than scoring it.
    return [
        _to_scored_paper(
            prepared,
            number,
            score=-negated_score,
            relevance=relevance,
            clause_scores=clause_scores,
            profile=profile,
            signals=signals,
        )
        for negated_score, _, number, relevance, clause_scores in ranked
    ]


def _rank_by_trending(
    prepared: PreparedCandidates,
    profile: Profile,
    signals: Signals,
    *,
    limit: int,
    excluded: AbstractSet[str],
) -> list[ScoredPaper]:
    """The trending digest; followed authors and disliked papers move papers in it, trending
    standing in for the relevance the clauses would give (see Signals.relevance)."""
    papers = prepared.papers
    if signals is NO_SIGNALS:
        # Prepared papers are in trending order, then id order: the first `limit` not excluded.
        best = itertools.islice(
            (number for number, paper in enumerate(papers) if paper.id not in excluded), limit
        )
        scored = [(prepared.trending[number], number) for number in best]
    else:
        everyone = (
            (signals.relevance(number, prepared.trending[number]), number)
            for number, paper in enumerate(papers)
            if paper.id not in excluded
        )
        scored = sorted(everyone, key=lambda pair: (-pair[0], papers[pair[1]].id))[:limit]
    return [
        _to_scored_paper(
            prepared,
            number,
            score=score,
            relevance=signals.relevance(number, 0.0),
            clause_scores=[],
            profile=profile,
            signals=signals,
        )
        for score, number in scored
    ]


def _check_trending_weight(trending_weight: float) -> None:
    if not 0.0 <= trending_weight <= 1.0:
        raise ValueError(f"trending_weight must be within [0, 1], got {trending_weight}")


def _to_scored_paper(
    prepared: PreparedCandidates,
    number: int,
    *,
    score: float,
    relevance: float,
    clause_scores: Sequence[tuple[WeightedClause, float]],
    profile: Profile,
    signals: Signals,
) -> ScoredPaper:
    paper = prepared.papers[number]
    terms: PaperTerms = prepared.index.terms[number]
    phrases, words = find_matches(clause_scores, terms)
    return ScoredPaper(
        paper=paper,
        score=score,
        relevance=relevance,
        trending=prepared.trending[number],
        why=_explain(prepared, number, clause_scores, phrases, words, profile, signals),
        matched_terms=(*phrases, *words),
    )


def _explain(
    prepared: PreparedCandidates,
    number: int,
    clause_scores: Sequence[tuple[WeightedClause, float]],
    phrases: Sequence[str],
    words: Sequence[str],
    profile: Profile,
    signals: Signals,
) -> str:
    """The why-line of the signal that counts most for the paper: the author followed, the
    keywords (or, with none of them, trending), or the papers liked."""
    paper = prepared.papers[number]
    clause_relevance = combine_clause_scores(clause_scores)
    liked = LIKED_WEIGHT * signals.liked_similarity(number)
    author = signals.authors.get(number)
    if author is not None and max(clause_relevance, liked) <= AUTHOR_RELEVANCE:
        return explain_author(author, paper)
    if profile.liked is not None and liked > clause_relevance:
        nearest = profile.liked.nearest(prepared.index.stem_weights(number))
        return explain_liked(nearest.title, paper)
    return explain_match(phrases, words, paper)
