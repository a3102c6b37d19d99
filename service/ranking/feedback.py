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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
MAX_CENTROID_TERMS = 100

# Rocchio's weights in their usual proportions (Manning, Raghavan & Schütze, 2008, §9.1.1):
# the reader's own words 1, what they liked 0.75, what they disliked 0.15. A dislike is weak
# evidence (the paper may be off only in part), so it moves papers down and never out.
LIKED_WEIGHT = 0.75
DISLIKED_WEIGHT = 0.15


@dataclass(frozen=True)
class PaperVector:
    """A paper's most distinctive stems as a unit vector, and their saturated weights in it."""

    paper: Paper
    weights: Mapping[str, float]
    saturated: Mapping[str, float]


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
        weights=MappingProxyType({stem: weight / norm for weight, stem in scored}),
        saturated=saturated,
    )


@dataclass(frozen=True)
class Centroid:
    """Rocchio's centroid of some papers' vectors, ready to score candidates against."""

    vectors: tuple[PaperVector, ...]
    weights: Mapping[str, float]
    # Divides a candidate's matched weight: the centroid's total weight times the share the
    # papers themselves match, so a paper as close as they are scores 1.
    scale: float

    def similarities(self, index: TermIndex) -> dict[int, float]:
        """Similarity in (0, 1] of each candidate holding a centroid stem, by position."""
        matched: dict[int, float] = {}
        get = matched.get
        stem_weights = index.stem_weights
        # Term at a time: only the candidates holding a stem are visited.
        for stem, weight in self.weights.items():
            for paper in index.papers_with(stem):
                matched[paper] = get(paper, 0.0) + weight * stem_weights(paper)[stem]
        scale = self.scale
        return {paper: min(1.0, total * scale) for paper, total in matched.items()}

    def nearest(self, saturated: Mapping[str, float]) -> Paper:
        """The paper of the centroid whose vector a candidate (its saturated weights) matches
        best; the first of equals."""
        best, best_match = self.vectors[0], -1.0
        for vector in self.vectors:
            match = sum(
                weight * saturated[stem]
                for stem, weight in vector.weights.items()
                if stem in saturated
            )
            if match > best_match:
                best, best_match = vector, match
        return best.paper


def make_centroid(papers: Sequence[Paper], vector_of: VectorOf) -> Centroid | None:
    """The centroid of these papers; None when none has a term that could find another."""
    vectors = tuple(vector for vector in map(vector_of, papers) if vector.weights)
    if not vectors:
        return None
    summed: dict[str, float] = {}
    for vector in vectors:
        for stem, weight in vector.weights.items():
            summed[stem] = summed.get(stem, 0.0) + weight
    kept = sorted(summed.items(), key=lambda pair: (-pair[1], pair[0]))[:MAX_CENTROID_TERMS]
    weights = {stem: weight / len(vectors) for stem, weight in kept}
    # How much of the centroid each paper matches with its own terms (the rest of its words
    # are left out: cheap, and it only makes the share smaller, so candidates score higher).
    own = sum(
        weights[stem] * vector.saturated[stem]
        for vector in vectors
        for stem in vector.weights
        if stem in weights
    ) / len(vectors)
    if own <= 0.0:
        return None
    return Centroid(vectors=vectors, weights=MappingProxyType(weights), scale=1.0 / own)
