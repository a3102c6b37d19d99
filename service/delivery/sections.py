"""An issue's sections, one per interest profile: each profile ranked with its own interests,
mix and number of papers, and each paper shown once, in the section where it ranks best."""

from collections.abc import Callable, Sequence

from service.models import ScoredPaper

# rank(profile number, limit) -> that profile's best `limit` papers, best first; a longer limit
# gives the same list with more after it (rankings break ties by paper id).
Ranker = Callable[[int, int], list[ScoredPaper]]


def pick_sections(sizes: Sequence[int], rank: Ranker) -> list[list[ScoredPaper]]:
    """The papers of each section: section `i` holds at most `sizes[i]` papers.

    A paper two profiles want goes where its position in the profile's ranking is better;
    on equal positions, to the earlier profile. A section that gave papers away to others
    is ranked further down to fill its places, which can take papers from a later position
    of another: so the placing is done again until no ranking grows. Without overlaps (the
    common case) every profile is ranked once.
    """
    asked = list(sizes)
    rankings = [rank(number, size) if size > 0 else [] for number, size in enumerate(asked)]
    while True:
        sections = _place(sizes, rankings)
        grown = False
        for number, size in enumerate(sizes):
            missing = size - len(sections[number])
            # A ranking shorter than asked has no more papers to give.
            if missing > 0 and len(rankings[number]) == asked[number]:
                asked[number] += missing
                rankings[number] = rank(number, asked[number])
                grown = True
        if not grown:
            return sections


def _place(sizes: Sequence[int], rankings: Sequence[list[ScoredPaper]]) -> list[list[ScoredPaper]]:
    """Walk the rankings position by position, the profiles in order at each position: a
    paper goes to the first section with room that reaches it, and never twice."""
    sections: list[list[ScoredPaper]] = [[] for _ in sizes]
    placed: set[str] = set()
    longest = max((len(ranking) for ranking in rankings), default=0)
    for position in range(longest):
        for number, ranking in enumerate(rankings):
            if position >= len(ranking) or len(sections[number]) >= sizes[number]:
                continue
            scored = ranking[position]
            if scored.paper.id not in placed:
                placed.add(scored.paper.id)
                sections[number].append(scored)
    return sections
