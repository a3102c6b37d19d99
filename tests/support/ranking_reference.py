"""Ranking by the definitions, each paper scored on its own: what rank_papers did before
candidates were prepared in batches, kept so that tests and benches can check the pruned
ranking against it."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

from service.models import Interests, Paper, ScoredPaper
from service.ranking import CorpusStats
from service.ranking.explain import explain_match, shown
from service.ranking.relevance import (
    ABSTRACT_WEIGHT,
    K1,
    PROXIMITY_WEIGHT,
    SPECIFIC_CLAUSE_IDF,
    TITLE_WEIGHT,
    B,
)
from service.ranking.score import trending_score
from service.ranking.terms import Clause, FieldTerms, PaperTerms, analyse_interests, analyse_paper
from service.ranking.topk import MIN_RELEVANCE, blend


@dataclass(frozen=True)
class ReferenceClause:
    clause: Clause
    idfs: dict[str, float]
    total_idf: float
    weight: float


def reference_clauses(interests: Interests, stats: CorpusStats) -> list[ReferenceClause]:
    clauses = []
    for clause in analyse_interests(interests):
        idfs = {stem: stats.idf(stem) for stem in dict.fromkeys(clause.stems)}
        total_idf = sum(idfs.values())
        weight = min(1.0, total_idf / SPECIFIC_CLAUSE_IDF) * clause.strength
        clauses.append(ReferenceClause(clause, idfs, total_idf, weight))
    return clauses


def reference_count(field: FieldTerms, phrase: Sequence[str]) -> int:
    """Occurrences of the stems of `phrase` one right after another, in this order."""
    return sum(
        1
        for start in field.positions.get(phrase[0], ())
        if all(
            start + offset in field.positions.get(stem, ())
            for offset, stem in enumerate(phrase[1:], start=1)
        )
    )


def reference_weighted_count(terms: PaperTerms, stats: CorpusStats, *phrase: str) -> float:
    fields = (
        (terms.title, TITLE_WEIGHT, stats.avg_title_length),
        (terms.abstract, ABSTRACT_WEIGHT, stats.avg_abstract_length),
    )
    total = 0.0
    for field, weight, avg_length in fields:
        count = reference_count(field, phrase)
        if count:
            length_ratio = field.length / avg_length if avg_length > 0 else 1.0
            total += weight * count / (1.0 - B + B * length_ratio)
    return total


def reference_saturate(frequency: float) -> float:
    return frequency / (K1 + frequency)


def reference_clause_score(
    weighted: ReferenceClause, terms: PaperTerms, stats: CorpusStats
) -> float:
    clause = weighted.clause
    found_idf = matched = 0.0
    for stem, idf in weighted.idfs.items():
        if stem in terms.stems:
            found_idf += idf
            matched += idf * reference_saturate(reference_weighted_count(terms, stats, stem))
    word_score = matched / weighted.total_idf
    if not clause.is_keyword:
        return word_score
    word_score *= found_idf / weighted.total_idf
    if len(clause.stems) == 1 or word_score == 0.0:
        return word_score
    pairs = list(zip(clause.stems, clause.stems[1:], strict=False))
    proximity = sum(
        reference_saturate(reference_weighted_count(terms, stats, *pair))
        for pair in pairs
        if terms.stems.issuperset(pair)
    )
    # Pairs found count by the share of the keyword's idf found, as its words do.
    proximity *= found_idf / weighted.total_idf / len(pairs)
    return (word_score + PROXIMITY_WEIGHT * proximity) / (1.0 + PROXIMITY_WEIGHT)


def reference_relevance(
    clauses: Sequence[ReferenceClause], terms: PaperTerms, stats: CorpusStats
) -> float:
    missed = 1.0
    for clause in clauses:
        missed *= 1.0 - clause.weight * reference_clause_score(clause, terms, stats)
    return 1.0 - missed


def reference_labels(
    clauses: Sequence[ReferenceClause], terms: PaperTerms, stats: CorpusStats
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    by_score = sorted(
        clauses,
        key=lambda weighted: (
            not weighted.clause.is_keyword,
            -reference_clause_score(weighted, terms, stats),
        ),
    )
    intact = [
        weighted.clause
        for weighted in by_score
        if weighted.clause.is_keyword
        and any(
            reference_count(field, weighted.clause.stems) for field in (terms.title, terms.abstract)
        )
    ]
    covered = {stem for clause in intact for stem in clause.stems}
    words: dict[str, str] = {}
    for weighted in by_score:
        found = [stem for stem in weighted.idfs if stem in terms.stems and stem not in covered]
        for stem in sorted(found, key=lambda stem: (-weighted.idfs[stem], stem)):
            words.setdefault(stem, weighted.clause.written_words[stem])
    return tuple(shown(clause) for clause in intact), tuple(words.values())


def rank_by_reference(
    candidates: Sequence[Paper],
    interests: Interests,
    *,
    stats: CorpusStats,
    trending_weight: float,
    limit: int,
    today: date,
    exclude_ids: Collection[str] = frozenset(),
) -> list[ScoredPaper]:
    """Every candidate scored on its own; the batch API must agree with this."""
    clauses = reference_clauses(interests, stats)
    query_stems = frozenset(stem for clause in clauses for stem in clause.idfs)
    ranked: list[tuple[float, str, Paper, float, float]] = []
    seen_ids = set(exclude_ids)
    for paper in candidates:
        if paper.id in seen_ids:
            continue
        seen_ids.add(paper.id)
        trending = trending_score(paper, today=today)
        if not clauses:
            ranked.append((-trending, paper.id, paper, 0.0, trending))
            continue
        terms = analyse_paper(paper)
        if terms.stems.isdisjoint(query_stems):
            continue
        relevance = reference_relevance(clauses, terms, stats)
        if relevance >= MIN_RELEVANCE:
            score = blend(relevance, trending, trending_weight)
            ranked.append((-score, paper.id, paper, relevance, trending))
    ranked.sort(key=lambda entry: (entry[0], entry[1]))
    scored = []
    for negated_score, _, paper, relevance, trending in ranked[: max(0, limit)]:
        phrases, words = reference_labels(clauses, analyse_paper(paper), stats)
        scored.append(
            ScoredPaper(
                paper=paper,
                score=-negated_score,
                relevance=relevance,
                trending=trending,
                why=explain_match(phrases, words, paper),
                matched_terms=(*phrases, *words),
            )
        )
    return scored
