"""BM25F relevance of a paper to a subscriber's interests, in [0, 1].

Each interest keyword is a query clause scored over title and abstract with BM25F (title words
weigh more), plus proximity: the clause's adjacent word pairs found next to each other, so a
phrase found intact beats its words scattered. The free-text sentence is one more clause, a bag
of words. Clause scores lie in [0, 1] and combine like independent chances ("noisy or"), so one
long phrase cannot dominate and a paper matching two interests beats one matching a single
interest equally well. Collection statistics come from `build_corpus_stats` over the whole
stored corpus, not only the papers being ranked.
"""

import itertools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from service.models import Interests, Paper
from service.ranking.terms import (
    Clause,
    CorpusStats,
    PaperTerms,
    analyse_interests,
    analyse_paper_text,
    paper_text,
)

# BM25 saturation and length normalisation: the usual defaults (Robertson & Zaragoza, 2009).
K1 = 1.2
B = 0.75

# BM25F field weight: a title names what the paper is about; an abstract also mentions
# baselines, related work and applications in passing.
TITLE_WEIGHT = 2.0
ABSTRACT_WEIGHT = 1.0

# Weight of "the keyword's words stand next to each other" against "its words appear":
# equal, so a phrase found intact scores up to twice its words found scattered.
PROXIMITY_WEIGHT = 1.0

# A clause whose words together are less specific than a word found in one paper in ten
# (BM25 idf of log 10) counts for proportionally less: an interest in "learning" alone says
# little about which papers to send.
SPECIFIC_CLAUSE_IDF = math.log(10.0)

# Each paper's term weights under the day's statistics: a few days of new papers.
WEIGHTS_CACHE_SIZE = 4096
# Indexes of whole candidate sets: the day's, and a few more for subscribers whose candidates
# differ (a longer wait since their last issue).
INDEX_CACHE_SIZE = 4


@dataclass(frozen=True)
class WeightedClause:
    """A clause with the idf of each distinct stem in this corpus."""

    clause: Clause
    idfs: Mapping[str, float]
    total_idf: float
    # In (0, 1]: how much a full match of this clause counts, by how specific its words are.
    weight: float
    # A keyword's adjacent stems, for proximity; none for one-word keywords and the sentence.
    pairs: tuple[tuple[str, str], ...]


def weigh_clauses(clauses: Sequence[Clause], stats: CorpusStats) -> list[WeightedClause]:
    weighted = []
    for clause in clauses:
        idfs = {stem: stats.idf(stem) for stem in dict.fromkeys(clause.stems)}
        total_idf = sum(idfs.values())
        weight = min(1.0, total_idf / SPECIFIC_CLAUSE_IDF) * clause.strength
        pairs = (
            tuple(zip(clause.stems, clause.stems[1:], strict=False)) if clause.is_keyword else ()
        )
        weighted.append(
            WeightedClause(
                clause=clause, idfs=idfs, total_idf=total_idf, weight=weight, pairs=pairs
            )
        )
    return weighted


class TermIndex:
    """Candidate papers by the stems they hold, and their saturated BM25F weights.

    Built up stem by stem as rankings need it, so ranking one subscriber costs little more
    than scoring the papers holding their words. An index serving a second ranking is serving
    a batch, so it then indexes every stem and weighs every paper at once, which costs about
    as much as indexing a few subscribers' words one by one. Threads may share an index: a
    racing first use computes the same entry twice, never a different one.
    """

    def __init__(
        self,
        texts: Iterable[tuple[str, str]],
        *,
        avg_title_length: float,
        avg_abstract_length: float,
    ) -> None:
        self._texts = tuple(texts)
        self.terms = tuple(analyse_paper_text(title, abstract) for title, abstract in self._texts)
        self._stems = tuple(terms.stems for terms in self.terms)
        self._avg_lengths = (avg_title_length, avg_abstract_length)
        self._rankings = 0
        self._complete = False
        self._papers_with: dict[str, tuple[int, ...]] = {}
        self._stem_weights: list[Mapping[str, float] | None] = [None] * len(self.terms)
        self._pair_weights: dict[tuple[str, str], dict[int, float]] = {}
        self._postings: dict[str, tuple[tuple[int, float], ...]] = {}

    def start_ranking(self) -> None:
        """Note a ranking about to use the index; the second completes the index."""
        self._rankings += 1
        if self._rankings == 2:
            papers_with: dict[str, list[int]] = {}
            for paper, stems in enumerate(self._stems):
                for stem in stems:
                    papers_with.setdefault(stem, []).append(paper)
            self._papers_with = {stem: tuple(found) for stem, found in papers_with.items()}
            self._complete = True
            for paper in range(len(self.terms)):
                self.stem_weights(paper)

    def papers_with(self, stem: str) -> tuple[int, ...]:
        """Positions of the papers whose title or abstract has `stem`, in increasing order."""
        found = self._papers_with.get(stem)
        if found is None:
            if self._complete:
                return ()
            # map and compress keep the test of every paper out of the interpreter's loop.
            holds = map(operator.contains, self._stems, itertools.repeat(stem))
            found = self._papers_with[stem] = tuple(itertools.compress(itertools.count(), holds))
        return found

    def stem_weights(self, paper: int) -> Mapping[str, float]:
        """Saturated BM25F weight of each stem of a paper."""
        weights = self._stem_weights[paper]
        if weights is None:
            weights = self._stem_weights[paper] = _stem_weights(
                *self._texts[paper], *self._avg_lengths
            )
        return weights

    def weighted_postings(self, stem: str) -> tuple[tuple[int, float], ...]:
        """(position, saturated weight of `stem`) of the papers holding it: what ranking by
        liked papers reads, term at a time, for the stems many readers' likes share."""
        postings = self._postings.get(stem)
        if postings is None:
            postings = self._postings[stem] = tuple(
                (paper, self.stem_weights(paper)[stem]) for paper in self.papers_with(stem)
            )
        return postings

    def pair_weight(self, paper: int, pair: tuple[str, str]) -> float:
        """Saturated BM25F weight of two stems standing next to each other, in this order."""
        weights = self._pair_weights.get(pair)
        if weights is None:
            weights = self._pair_weights[pair] = {}
        weight = weights.get(paper)
        if weight is None:
            terms = self.terms[paper]
            weight = weights[paper] = _weigh_counts(
                (terms.title.count_pair(*pair), terms.abstract.count_pair(*pair)),
                terms,
                *self._avg_lengths,
            )
        return weight


# A day's batches of subscribers share their candidates and statistics, so they can share an
# index and the weights it has computed.
@lru_cache(maxsize=INDEX_CACHE_SIZE)
def index_candidates(
    texts: tuple[tuple[str, str], ...], avg_title_length: float, avg_abstract_length: float
) -> TermIndex:
    """The index of papers with these titles and abstracts, in this order."""
    return TermIndex(
        texts, avg_title_length=avg_title_length, avg_abstract_length=avg_abstract_length
    )


# Keyed by the text, like the analysis: a paper keeps its weights from batch to batch, and from
# one subscriber's candidates to the next. Read-only: shared by everyone who ranks the paper.
@lru_cache(maxsize=WEIGHTS_CACHE_SIZE)
def _stem_weights(
    title: str, abstract: str, avg_title_length: float, avg_abstract_length: float
) -> Mapping[str, float]:
    terms = analyse_paper_text(title, abstract)
    title_positions, abstract_positions = terms.title.positions, terms.abstract.positions
    # Most stems of a paper occur once or twice: weigh each pair of counts once.
    by_counts: dict[tuple[int, int], float] = {}
    weights = {}
    for stem in terms.stems:
        counts = (len(title_positions.get(stem, ())), len(abstract_positions.get(stem, ())))
        weight = by_counts.get(counts)
        if weight is None:
            weight = by_counts[counts] = _weigh_counts(
                counts, terms, avg_title_length, avg_abstract_length
            )
        weights[stem] = weight
    return weights


def paper_stem_weights(paper: Paper, stats: CorpusStats) -> Mapping[str, float]:
    """Saturated BM25F weight of each stem of any paper, candidate or not."""
    return _stem_weights(*paper_text(paper), stats.avg_title_length, stats.avg_abstract_length)


def _weigh_counts(
    counts: tuple[int, int], terms: PaperTerms, avg_title_length: float, avg_abstract_length: float
) -> float:
    """Saturated BM25F weight of a stem or phrase found so many times in title and abstract."""
    # The BM25F pseudo frequency: length-normalised, field-weighted counts.
    fields = (
        (terms.title, TITLE_WEIGHT, avg_title_length),
        (terms.abstract, ABSTRACT_WEIGHT, avg_abstract_length),
    )
    frequency = 0.0
    for count, (field, weight, avg_length) in zip(counts, fields, strict=True):
        if count:
            length_ratio = field.length / avg_length if avg_length > 0 else 1.0
            frequency += weight * count / (1.0 - B + B * length_ratio)
    # BM25 term-frequency saturation, scaled to [0, 1).
    return frequency / (K1 + frequency)


def score_clauses(
    clauses: Sequence[WeightedClause], paper: int, index: TermIndex
) -> list[tuple[WeightedClause, float]]:
    weights = index.stem_weights(paper)
    return [(clause, _clause_score(clause, weights, paper, index)) for clause in clauses]


def combine_clause_scores(clause_scores: Iterable[tuple[WeightedClause, float]]) -> float:
    """Noisy or: the chance that at least one interest matches, clause scores as chances."""
    missed = 1.0
    for clause, score in clause_scores:
        missed *= 1.0 - clause.weight * score
    return 1.0 - missed


def _clause_score(
    weighted: WeightedClause, weights: Mapping[str, float], paper: int, index: TermIndex
) -> float:
    """Score in [0, 1]: the idf-weighted share of the clause's words found, then proximity."""
    found_idf = matched = 0.0
    for stem, idf in weighted.idfs.items():
        weight = weights.get(stem)
        if weight is not None:
            found_idf += idf
            matched += idf * weight
    word_score = matched / weighted.total_idf
    if not weighted.clause.is_keyword:
        return word_score
    # Coordination (as in Lucene's classic scoring): a keyword's common word alone, "models"
    # of "consistency models", is weak evidence, so scale by the share of its idf found; its
    # word pairs found intact too.
    word_score *= found_idf / weighted.total_idf
    if not weighted.pairs or word_score == 0.0:
        return word_score
    proximity = sum(
        index.pair_weight(paper, pair)
        for pair in weighted.pairs
        if pair[0] in weights and pair[1] in weights
    )
    # A pair found intact counts as much of the keyword as its words found do: "deep learning"
    # of "evidential deep learning" is the keyword's common part, next to itself in passing.
    proximity *= found_idf / weighted.total_idf / len(weighted.pairs)
    return (word_score + PROXIMITY_WEIGHT * proximity) / (1.0 + PROXIMITY_WEIGHT)


def relevance_scores(
    papers: Iterable[Paper], interests: Interests, *, stats: CorpusStats
) -> dict[str, float]:
    """Relevance in [0, 1] of each paper, by id, with no threshold (for evaluation)."""
    papers = list(papers)
    index = TermIndex(
        (paper_text(paper) for paper in papers),
        avg_title_length=stats.avg_title_length,
        avg_abstract_length=stats.avg_abstract_length,
    )
    clauses = weigh_clauses(analyse_interests(interests), stats)
    # A paper holding no query stem scores 0 on every clause, so has relevance 0.
    matching = {
        paper for clause in clauses for stem in clause.idfs for paper in index.papers_with(stem)
    }
    relevances = {
        paper: combine_clause_scores(score_clauses(clauses, paper, index)) for paper in matching
    }
    return {paper.id: relevances.get(number, 0.0) for number, paper in enumerate(papers)}
