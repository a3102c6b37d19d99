"""Rank papers for subscribers: BM25F relevance to their interests (relevance.py) blended
with trending, by each subscriber's trending weight.

Score = (1 - trending_weight) * relevance + trending_weight * trending, both in [0, 1]. The
best papers are found without scoring every candidate (topk.py).

Subscribers ranked from the same candidates (a batch of a day's digests) share the work on the
papers: `prepare_candidates` once, then `rank_prepared` per subscriber, which scores only the
papers that can make the subscriber's list. `rank_papers` does both for a single subscriber.
"""

import itertools
import math
from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date

from service.models import Interests, Paper, ScoredPaper
from service.ranking.explain import explain_match, find_matches
from service.ranking.relevance import TermIndex, WeightedClause, index_candidates, weigh_clauses
from service.ranking.terms import CorpusStats, PaperTerms, analyse_interests, paper_text
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
    so threads may share one.
    """

    # Best trending first, ties by id: the digest of empty interests, and the order in which
    # ranking visits papers.
    papers: tuple[Paper, ...]
    trending: tuple[float, ...]
    stats: CorpusStats
    today: date
    index: TermIndex


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
    )


def rank_prepared(
    prepared: PreparedCandidates,
    interests: Interests,
    *,
    trending_weight: float,
    limit: int,
    exclude_ids: Collection[str] = frozenset(),
) -> list[ScoredPaper]:
    """The best `limit` prepared papers for these interests, best first, ties broken by id.

    Score = (1 - trending_weight) * relevance + trending_weight * trending, both in [0, 1].
    With interests set, papers below MIN_RELEVANCE are left out whatever the weight. Empty
    interests (or only stop words) give the trending digest: trending alone, then id.
    """
    _check_trending_weight(trending_weight)
    if limit <= 0:
        return []
    excluded = exclude_ids if isinstance(exclude_ids, AbstractSet) else frozenset(exclude_ids)
    papers = prepared.papers
    clauses = weigh_clauses(analyse_interests(interests), prepared.stats)
    prepared.index.start_ranking()
    if not clauses:
        best = itertools.islice(
            (number for number, paper in enumerate(papers) if paper.id not in excluded), limit
        )
        return [
            _to_scored_paper(
                papers[number],
                score=prepared.trending[number],
                relevance=0.0,
                trending=prepared.trending[number],
                clause_scores=[],
                terms=prepared.index.terms[number],
            )
            for number in best
        ]
    ranked = find_best_papers(
        clauses,
        papers,
        trending=prepared.trending,
        index=prepared.index,
        trending_weight=trending_weight,
        limit=limit,
        excluded=excluded,
    )
    # Why-lines only for the papers sent: explaining a match costs more than scoring it.
    return [
        _to_scored_paper(
            papers[number],
            score=-negated_score,
            relevance=relevance,
            trending=prepared.trending[number],
            clause_scores=clause_scores,
            terms=prepared.index.terms[number],
        )
        for negated_score, _, number, relevance, clause_scores in ranked
    ]


def _check_trending_weight(trending_weight: float) -> None:
    if not 0.0 <= trending_weight <= 1.0:
        raise ValueError(f"trending_weight must be within [0, 1], got {trending_weight}")


def _to_scored_paper(
    paper: Paper,
    *,
    score: float,
    relevance: float,
    trending: float,
    clause_scores: Sequence[tuple[WeightedClause, float]],
    terms: PaperTerms,
) -> ScoredPaper:
    phrases, words = find_matches(clause_scores, terms)
    return ScoredPaper(
        paper=paper,
        score=score,
        relevance=relevance,
        trending=trending,
        why=explain_match(phrases, words, paper),
        matched_terms=(*phrases, *words),
    )
