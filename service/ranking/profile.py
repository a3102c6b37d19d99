"""One reader's profile as the ranker sees it, and what it makes of the candidates.

A profile holds the keyword and sentence clauses (relevance.py), the centroids of the papers
liked and disliked (feedback.py), the authors followed and the topics left out. Its signals
combine as the clauses do, like independent chances ("noisy or"): relevance = 1 - (1 - keyword
relevance) (1 - LIKED_WEIGHT x similarity to the liked papers) (1 - AUTHOR_RELEVANCE if by a
followed author), less DISLIKED_WEIGHT x similarity to the disliked papers. A paper about a
topic left out is never ranked.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from service.models import Interests, Paper
from service.ranking.authors import FollowedAuthors, follow_authors
from service.ranking.feedback import (
    DISLIKED_WEIGHT,
    LIKED_WEIGHT,
    Centroid,
    VectorOf,
    make_centroid,
)
from service.ranking.relevance import TermIndex, WeightedClause, weigh_clauses
from service.ranking.terms import CorpusStats, analyse_interests
from service.ranking.text import analyse_text

# A paper by an author the reader follows is as relevant as one naming a keyword of theirs in
# its abstract (about 0.45, see topk.MIN_RELEVANCE): enough to be sent on that alone, and less
# than a paper that is both.
AUTHOR_RELEVANCE = 0.5


@dataclass(frozen=True)
class Profile:
    """Everything a reader told Paperwire, analysed under the day's corpus statistics."""

    clauses: tuple[WeightedClause, ...]
    liked: Centroid | None
    disliked: Centroid | None
    authors: FollowedAuthors
    # The stems of each topic left out, in order: a paper holding them as a phrase is out.
    excluded_topics: tuple[tuple[str, ...], ...]
    # Papers the reader has given a verdict on are never recommended to them again.
    voted_ids: frozenset[str]

    @property
    def has_topic(self) -> bool:
        """Whether anything says what the reader wants to read about (else: trending)."""
        return bool(self.clauses) or self.liked is not None

    @property
    def has_signals(self) -> bool:
        """Whether anything beyond the clauses moves papers up or down."""
        return self.liked is not None or self.disliked is not None or bool(self.authors.keys)


def build_profile(
    interests: Interests,
    *,
    stats: CorpusStats,
    vector_of: VectorOf,
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
) -> Profile:
    """The profile of these interests; `liked` and `disliked` are the papers of their ids
    that are known (ids of papers not stored count as verdicts, with no text to learn from)."""
    topics = (analyse_text(topic) for topic in interests.excluded)
    return Profile(
        clauses=tuple(weigh_clauses(analyse_interests(interests), stats)),
        liked=make_centroid(liked, vector_of) if liked else None,
        disliked=make_centroid(disliked, vector_of) if disliked else None,
        authors=follow_authors(interests.authors),
        excluded_topics=tuple(dict.fromkeys(stems for stems in topics if stems)),
        voted_ids=frozenset(
            (*interests.liked, *interests.disliked, *(paper.id for paper in (*liked, *disliked)))
        ),
    )


@dataclass(frozen=True)
class Signals:
    """What a profile makes of the candidates beyond its clauses, by candidate position."""

    # The liked papers' centroid, and the weight of it each candidate holding one of its
    # stems matches (see Centroid.similarity).
    liked: Centroid | None
    liked_matches: Mapping[int, float]
    # The followed author of each candidate by one, as the paper spells the name.
    authors: Mapping[int, str]
    # How much the candidates near a disliked paper lose: DISLIKED_WEIGHT x similarity.
    penalty: Mapping[int, float]
    # The chance that no signal but the clauses picks the candidate (see the module doc);
    # candidates absent have 1.
    missed: Mapping[int, float]

    def liked_similarity(self, paper: int) -> float:
        """Similarity of a candidate to the liked papers, in [0, 1]."""
        matched = self.liked_matches.get(paper)
        return 0.0 if matched is None or self.liked is None else self.liked.similarity(matched)

    def relevance(self, paper: int, clause_relevance: float) -> float:
        """The relevance of a candidate given its clauses' relevance, in [0, 1]."""
        combined = 1.0 - (1.0 - clause_relevance) * self.missed.get(paper, 1.0)
        return max(0.0, combined - self.penalty.get(paper, 0.0))


NO_SIGNALS = Signals(liked=None, liked_matches={}, authors={}, penalty={}, missed={})


# Folded surname -> (position, authors) of each candidate with an author of that surname.
AuthorsBySurname = Mapping[str, Sequence[tuple[int, Sequence[str]]]]


def find_signals(
    profile: Profile, index: TermIndex, authors_by_surname: Callable[[], AuthorsBySurname]
) -> Signals:
    """The profile's signals on the candidates of `index`; `authors_by_surname` gives the
    candidates by their authors' surnames (built on first use: few readers follow authors)."""
    if not profile.has_signals:
        return NO_SIGNALS
    liked_matches: dict[int, float] = {}
    missed: dict[int, float] = {}
    if profile.liked is not None:
        liked_matches = profile.liked.matched_weights(index)
        # 1 - LIKED_WEIGHT x similarity (Centroid.similarity, inlined: most candidates pass).
        cap = 1.0 / profile.liked.scale
        weight = LIKED_WEIGHT * profile.liked.scale
        missed = {
            paper: 1.0 - (weight * matched if matched < cap else LIKED_WEIGHT)
            for paper, matched in liked_matches.items()
        }
    penalty: dict[int, float] = {}
    if profile.disliked is not None:
        disliked = profile.disliked
        penalty = {
            paper: DISLIKED_WEIGHT * disliked.similarity(matched)
            for paper, matched in disliked.matched_weights(index).items()
        }
    authors: dict[int, str] = {}
    by_surname = authors_by_surname() if profile.authors.keys else {}
    for surname in sorted(profile.authors.surnames):
        for paper, names in by_surname.get(surname, ()):
            if paper not in authors:
                name = profile.authors.find(names)
                if name is not None:
                    authors[paper] = name
                    missed[paper] = missed.get(paper, 1.0) * (1.0 - AUTHOR_RELEVANCE)
    return Signals(
        liked=profile.liked,
        liked_matches=liked_matches,
        authors=authors,
        penalty=penalty,
        missed=missed,
    )


def find_excluded(profile: Profile, index: TermIndex) -> set[int]:
    """Positions of the candidates holding a topic left out, as a phrase, in title or abstract."""
    excluded: set[int] = set()
    for stems in profile.excluded_topics:
        holding = set(index.papers_with(stems[0]))
        for stem in stems[1:]:
            holding.intersection_update(index.papers_with(stem))
        if len(stems) == 1:
            excluded |= holding
            continue
        for paper in holding:
            terms = index.terms[paper]
            if terms.title.count_phrase(stems) or terms.abstract.count_phrase(stems):
                excluded.add(paper)
    return excluded
