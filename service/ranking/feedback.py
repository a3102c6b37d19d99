"""Liked and disliked papers as weighted query terms: Rocchio's relevance feedback in the
BM25F term space.

Each paper is reduced to its most distinctive stems (BM25F weight times idf, as Lucene's
MoreLikeThis picks a document's query terms), as a unit vector, so every paper counts alike
however long its abstract. The liked papers' vectors are averaged into one query (Rocchio's
centroid); so are the disliked ones. A candidate's similarity to a centroid is the share of
the centroid's weight it matches, each stem by its saturated BM25F weight in the candidate, as
a keyword clause is scored; divided by the liked papers' own share, so a paper matching the
centroid as well as the liked papers themselves do scores 1.
"""

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from service.models import Paper
from service.ranking.relevance import TermIndex, paper_stem_weights
from service.ranking.terms import CorpusStats

# Lucene MoreLikeThis's defaults: a paper is described by its 25 best terms, among words found
# in at least 5 stored papers. Rarer words are names, figures and typos that find no other
# paper, yet their idf would put them first.
TERMS_PER_PAPER = 25
MIN_DOCUMENT_FREQUENCY = 5
# A reader with many liked papers is described by the terms most of them share: the centroid
# keeps its heaviest terms, which keeps ranking cheap whatever the number of likes.
MAX_CENTROID_TERMS = 50

# Rocchio's weights in their usual proportions (Manning, Raghavan & Schütze, 2008, §9.1.1):
# the reader's own words 1, what they liked 0.75, what they disliked 0.15. A dislike is weak
# evidence (the paper may be off only in part), so it moves papers down and never out.
LIKED_WEIGHT = 0.75
DISLIKED_WEIGHT = 0.15


@dataclass(frozen=True)
class PaperVector:
    """A paper's most distinctive stems as a unit vector, and their saturated weights in it."""

    paper: Paper
    # (stem, weight in the unit vector, saturated BM25F weight in the paper), heaviest first.
    terms: tuple[tuple[str, float, float], ...]


VectorOf = Callable[[Paper], PaperVector]


def describe_paper(paper: Paper, stats: CorpusStats) -> PaperVector:
    """The paper's TERMS_PER_PAPER stems of highest BM25F weight times idf, as a unit vector."""
    saturated = paper_stem_weights(paper, stats)
    frequencies = stats.document_frequencies
    scored = sorted(
        (
            (weight * stats.idf(stem), stem)
            for stem, weight in saturated.items()
            if frequencies.get(stem, 0) >= MIN_DOCUMENT_FREQUENCY and not stem.isdigit()
        ),
        key=lambda pair: (-pair[0], pair[1]),
    )[:TERMS_PER_PAPER]
    norm = math.sqrt(sum(weight * weight for weight, _ in scored)) or 1.0
    return PaperVector(
        paper=paper,
        terms=tuple((stem, weight / norm, saturated[stem]) for weight, stem in scored),
    )


@dataclass(frozen=True)
class Centroid:
    """Rocchio's centroid of some papers' vectors, ready to score candidates against."""

    vectors: tuple[PaperVector, ...]
    weights: Mapping[str, float]
    # Multiplies a candidate's matched weight: 1 / the weight the papers themselves match on
    # average, so a paper as close as they are scores 1.
    scale: float
    # The papers' stems -> (paper's position in `vectors`, weight), built on first use.
    _by_stem: list[dict[str, list[tuple[int, float]]]] = field(default_factory=list, repr=False)

    def matched_weights(self, index: TermIndex) -> dict[int, float]:
        """The centroid weight each candidate holding one of its stems matches, by position:
        times `scale`, capped at 1, its similarity."""
        matched: dict[int, float] = {}
        get = matched.get
        # Term at a time: only the candidates holding a stem are visited.
        for stem, weight in self.weights.items():
            for paper, saturated in index.weighted_postings(stem):
                matched[paper] = get(paper, 0.0) + weight * saturated
        return matched

    def similarity(self, matched_weight: float) -> float:
        return min(1.0, matched_weight * self.scale)

    def nearest(self, saturated: Mapping[str, float]) -> Paper:
        """The paper of the centroid whose vector a candidate (its saturated weights) matches
        best on the centroid's stems; the first of equals."""
        if not self._by_stem:
            # Only the centroid's stems: what the papers have in common with the reader's
            # taste names the nearest better than their incidental words, and costs less.
            weights = self.weights
            by_stem: dict[str, list[tuple[int, float]]] = {}
            for number, vector in enumerate(self.vectors):
                for stem, weight, _ in vector.terms:
                    if stem in weights:
                        by_stem.setdefault(stem, []).append((number, weight))
            self._by_stem.append(by_stem)
        by_stem = self._by_stem[0]
        matches = [0.0] * len(self.vectors)
        # Sorted, so that sums are made in one order whatever the hash seed.
        for stem in sorted(by_stem.keys() & saturated.keys()):
            candidate_weight = saturated[stem]
            for number, weight in by_stem[stem]:
                matches[number] += weight * candidate_weight
        return self.vectors[matches.index(max(matches))].paper


def make_centroid(papers: Sequence[Paper], vector_of: VectorOf) -> Centroid | None:
    """The centroid of these papers; None when none has a term that could find another."""
    vectors = tuple(vector for vector in map(vector_of, papers) if vector.terms)
    if not vectors:
        return None
    summed: dict[str, float] = {}
    # Each stem's saturated weights in the papers it describes, summed, for their own share.
    saturated_sums: dict[str, float] = {}
    get_summed, get_saturated = summed.get, saturated_sums.get
    for vector in vectors:
        for stem, weight, saturated in vector.terms:
            summed[stem] = get_summed(stem, 0.0) + weight
            saturated_sums[stem] = get_saturated(stem, 0.0) + saturated
    # Heaviest first, ties by stem; (-weight, stem) pairs sort without a key function.
    kept = sorted(zip(map(operator.neg, summed.values()), summed, strict=True))
    weights = {stem: -negated / len(vectors) for negated, stem in kept[:MAX_CENTROID_TERMS]}
    # How much of the centroid the papers match on average with their own described stems
    # (their other words are left out: cheap, and it only makes the share smaller, so
    # candidates score a little higher).
    own = sum(weight * saturated_sums[stem] for stem, weight in weights.items()) / len(vectors)
    if own <= 0.0:
        return None
    return Centroid(vectors=vectors, weights=MappingProxyType(weights), scale=1.0 / own)
