"""Top-k retrieval: the best papers for a subscriber without scoring every candidate.

A paper's relevance is bounded from which of the query's stems it holds, cheaply, and papers are
taken best bound first; only those whose bound can still beat the papers found so far are
scored (see `find_best_papers`).
"""

import heapq
import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from service.models import Paper
from service.ranking.profile import NO_SIGNALS, Signals
from service.ranking.relevance import (
    PROXIMITY_WEIGHT,
    TermIndex,
    WeightedClause,
    combine_clause_scores,
    score_clauses,
)

# Below this a paper is not about any of the subscriber's interests, however much it trends.
# A keyword mentioned once in an abstract scores about 0.45; its distinctive word alone about
# 0.15; its common word alone ("models" of "consistency models") about 0.01. So 0.1 asks for
# the distinctive part of at least one interest, or much of the sentence's vocabulary.
MIN_RELEVANCE = 0.1
# Trending lifts a paper in proportion to how much on-topic it is, fully from this relevance
# on (a paper half as relevant as a perfect match): a paper that only just passes the floor
# cannot ride its upvotes past clearly relevant ones.
ON_TOPIC_RELEVANCE = 0.5


def blend(relevance: float, trending: float, trending_weight: float) -> float:
    """A paper's score from its relevance and trending, both in [0, 1]: (1 - w) * relevance +
    w * trending * on-topic share; trending alone at w = 1, the slider's "trending" end. It
    never falls as relevance grows, so a bound on relevance bounds it."""
    if trending_weight >= 1.0:
        return trending
    on_topic = min(1.0, relevance / ON_TOPIC_RELEVANCE)
    return (1.0 - trending_weight) * relevance + trending_weight * trending * on_topic


# Slack when ruling papers out by an upper bound on their score, far above rounding error, so
# a paper is never ruled out by a bound that rounding made a hair too low.
BOUND_SLACK = 1e-9


class _QueryBounds:
    """Upper bounds on a paper's relevance from which query stems it holds, and one weight.

    A paper's stems held are bits of their positions in `stems`. Saturated weights are below
    1; a word pair's weight is at most either word's (it cannot occur more often than its
    words); a clause's found idf is that of its stems held. So if x is the paper's weight of
    one stem held, the lead, a clause scores at most a + b x: b is 0 for clauses without the
    lead, and x = 1 bounds papers by their stems alone.
    """

    def __init__(self, clauses: Sequence[WeightedClause], stems: Sequence[str]) -> None:
        bits = {stem: 1 << number for number, stem in enumerate(stems)}
        self._shift = len(stems)
        self._clauses = [
            (
                weighted,
                sum(bits[stem] for stem in weighted.idfs),
                tuple((bits[stem], idf) for stem, idf in weighted.idfs.items()),
                tuple((bits[first], bits[second]) for first, second in weighted.pairs),
            )
            for weighted in clauses
        ]
        # Few clauses have more than a handful of distinct stem sets held, so each clause keeps
        # its lines by (its stems held, lead), shared by the papers' many sets held.
        self._lines: list[dict[int, tuple[float, float]]] = [{} for _ in clauses]
        self._bounds: dict[int, tuple[float, list[tuple[float, float, float]]]] = {}

    def most(self, held: int) -> float:
        """Most relevance of a paper holding the stems `held`."""
        missed = 1.0
        for number, (weighted, clause_bits, _, _) in enumerate(self._clauses):
            key = (held & clause_bits) << self._shift
            line = self._lines[number].get(key) or self._line(number, key)
            missed *= 1.0 - weighted.weight * min(1.0, line[0])
        return 1.0 - missed

    def most_with(self, held: int, lead: int, weight: float) -> float:
        """Most relevance of a paper holding the stems `held`, with this weight of `lead`."""
        key = held << self._shift | lead
        bound = self._bounds.get(key)
        if bound is None:
            bound = self._bounds[key] = self._bound(held, lead)
        missed, lines = bound
        for clause_weight, a, b in lines:
            missed *= 1.0 - clause_weight * min(1.0, a + b * weight)
        return 1.0 - missed

    def _bound(self, held: int, lead: int) -> tuple[float, list[tuple[float, float, float]]]:
        missed = 1.0  # by the clauses without the lead
        lines = []
        for number, (weighted, clause_bits, _, _) in enumerate(self._clauses):
            key = (held & clause_bits) << self._shift | lead & clause_bits
            a, b = self._lines[number].get(key) or self._line(number, key)
            if b:
                lines.append((weighted.weight, a, b))
            else:
                missed *= 1.0 - weighted.weight * min(1.0, a)
        return missed, lines

    def _line(self, number: int, key: int) -> tuple[float, float]:
        """The line (a, b) of a clause, by its stems held and lead packed into `key`."""
        held, lead = key >> self._shift, key & ((1 << self._shift) - 1)
        weighted, _, stem_bits, pair_bits = self._clauses[number]
        total = weighted.total_idf
        own = others = 0.0
        for bit, idf in stem_bits:
            if bit == lead:
                own = idf
            elif held & bit:
                others += idf
        # Word score: at most (others + own x) / total; for a keyword, times the share of its
        # idf found, (others + own) / total.
        a, b = others / total, own / total
        if weighted.clause.is_keyword:
            found = (others + own) / total
            a, b = a * found, b * found
            if pair_bits:
                held_pairs = [pair for pair in pair_bits if held & pair[0] and held & pair[1]]
                own_pairs = sum(lead in pair for pair in held_pairs)
                # Pairs count by the share of the keyword's idf found too (relevance.py).
                other_share = (len(held_pairs) - own_pairs) / len(pair_bits) * found
                own_share = own_pairs / len(pair_bits) * found
                a = (a + PROXIMITY_WEIGHT * other_share) / (1.0 + PROXIMITY_WEIGHT)
                b = (b + PROXIMITY_WEIGHT * own_share) / (1.0 + PROXIMITY_WEIGHT)
        line = self._lines[number][key] = (a, b)
        return line


# -score, paper id, the paper's position among the prepared papers, relevance, clause scores.
Ranked = tuple[float, str, int, float, list[tuple[WeightedClause, float]]]


def find_best_papers(
    clauses: Sequence[WeightedClause],
    papers: Sequence[Paper],
    *,
    trending: Sequence[float],
    index: TermIndex,
    trending_weight: float,
    limit: int,
    excluded: AbstractSet[str],
    signals: Signals = NO_SIGNALS,
) -> list[Ranked]:
    """The `limit` best papers relevant enough, best first.

    `papers` are the prepared candidates, with their `trending` scores: best trending first,
    ties by id. `signals` are the profile's other signals (liked papers, authors, dislikes),
    known exactly for every candidate before any is scored.

    Scoring a paper costs far more than bounding its score, so papers are bounded first, by
    the query stems they hold (_QueryBounds), their other signals and their trending score,
    and taken best bound first until the `limit`th best score so far is out of reach of the
    rest. A paper taken has its bound tightened by its weight of the rarest query stem it
    holds, and goes back in line if that puts it behind another: most papers cost a glance,
    some a second one, and only the likely best a score. A paper holding only the common half
    of a keyword ("networks" of "neural networks"), or a one-word keyword's word only in
    passing, or trending too little, is not scored.
    """
    stems = sorted(
        {stem for clause in clauses for stem in clause.idfs},
        key=lambda stem: (-len(index.papers_with(stem)), stem),
    )
    # The bounds need positive idfs, which statistics of any real corpus give.
    prune = all(idf > 0.0 for clause in clauses for idf in clause.idfs.values())
    bounds = _QueryBounds(clauses, stems)
    common, holds = _find_stems_held(index, stems, bounds, prune=prune, signals=signals)
    if excluded:
        # Out before the line-up: a week's papers are mostly ones the reader was sent or
        # passed over, and each would otherwise be bounded, queued and tightened for nothing.
        holds = {paper: held for paper, held in holds.items() if papers[paper].id not in excluded}
    if not holds:
        return []
    line = _line_up(
        holds, bounds, signals, trending=trending, trending_weight=trending_weight, prune=prune
    )
    # The rarest stem a paper holds is the one whose weight tightens its bound most; only the
    # stems looked up are known to be held.
    idfs = {stem: idf for clause in clauses for stem, idf in clause.idfs.items()}
    rarest_first = sorted(
        range(common, len(stems)), key=lambda number: (-idfs[stems[number]], stems[number])
    )
    leads: dict[int, int | None] = {}  # by the stems held: the rarest's position in `stems`
    best_scores: list[float] = []  # a min-heap of the `limit` best scores so far
    bar = -math.inf  # what a paper must reach to count: the `limit`th best score, less slack
    ranked: list[Ranked] = []
    while line:
        negated_reach, paper, tightened = heapq.heappop(line)
        if -negated_reach < bar:
            break  # nor can any paper after it
        if len(best_scores) == limit and trending_weight == 1.0:
            # The score is then trending alone, exactly the bound, and papers of equal bound
            # come in id order (prepared papers are in trending order, then id order), so
            # every paper after this one ranks below the `limit` found.
            break
        if not tightened:
            held = holds[paper]
            if held not in leads:
                leads[held] = next((n for n in rarest_first if held >> n & 1), None)
            lead = leads[held]
            # A paper found by its other signals alone has no stem to tighten by.
            if lead is not None:
                weight = index.stem_weights(paper)[stems[lead]]
                most_relevance = signals.relevance(paper, bounds.most_with(held, 1 << lead, weight))
                if most_relevance < MIN_RELEVANCE - BOUND_SLACK:
                    continue
                reach = blend(most_relevance, trending[paper], trending_weight)
                if line and reach < -line[0][0]:
                    heapq.heappush(line, (-reach, paper, True))
                    continue
        if papers[paper].id in excluded:
            continue
        clause_scores = score_clauses(clauses, paper, index)
        relevance = signals.relevance(paper, combine_clause_scores(clause_scores))
        if relevance < MIN_RELEVANCE:
            continue
        score = blend(relevance, trending[paper], trending_weight)
        ranked.append((-score, papers[paper].id, paper, relevance, clause_scores))
        if len(best_scores) < limit:
            heapq.heappush(best_scores, score)
        elif score > best_scores[0]:
            heapq.heapreplace(best_scores, score)
        if prune and len(best_scores) == limit:
            bar = best_scores[0] - BOUND_SLACK
    # Ids are unique among prepared papers, so ties never compare further.
    ranked.sort(key=lambda entry: (entry[0], entry[1]))
    return ranked[:limit]


def _line_up(
    holds: dict[int, int],
    bounds: _QueryBounds,
    signals: Signals,
    *,
    trending: Sequence[float],
    trending_weight: float,
    prune: bool,
) -> list[tuple[float, int, bool]]:
    """The papers that may be relevant enough, as a heap of (-bound on the score, paper,
    whether the bound is tightened), best bound first."""
    most_by_held = {held: bounds.most(held) if prune else 1.0 for held in set(holds.values())}
    line = []
    if signals is NO_SIGNALS:
        floor = MIN_RELEVANCE - BOUND_SLACK
        line = [
            (-blend(most_by_held[held], trending[paper], trending_weight), paper, not prune)
            for paper, held in holds.items()
            if most_by_held[held] >= floor
        ]
    else:
        # Signals.relevance, inlined: every candidate near a liked paper passes here.
        missed, penalty = signals.missed.get, signals.penalty.get
        floor = MIN_RELEVANCE - BOUND_SLACK
        for paper, held in holds.items():
            most = 1.0 - (1.0 - most_by_held[held]) * missed(paper, 1.0) - penalty(paper, 0.0)
            if most >= floor:
                reach = blend(most, trending[paper], trending_weight)
                line.append((-reach, paper, not prune))
    heapq.heapify(line)
    return line


def _find_stems_held(
    index: TermIndex, stems: Sequence[str], bounds: _QueryBounds, *, prune: bool, signals: Signals
) -> tuple[int, dict[int, int]]:
    """Which query stems each paper holds, as bits of their positions in `stems` (commonest
    first), and how many of the commonest stems every paper is taken to hold.

    Papers holding none of the other stems are left out, unless their other signals may make
    them relevant.
    """
    # MaxScore (Turtle & Flood, 1995): while a paper holding the commonest stems and no rarer
    # one cannot be relevant enough, those stems' papers need not be looked up. Every paper is
    # taken to hold them, which only loosens its bound.
    assumed = common = 0
    while prune and common < len(stems):
        if bounds.most(assumed | 1 << common) >= MIN_RELEVANCE - BOUND_SLACK:
            break
        assumed |= 1 << common
        common += 1
    holds: dict[int, int] = {}
    if common < len(stems):
        # The commonest stem not taken as held looked up in one go, the rarer ones paper by
        # paper.
        holds = dict.fromkeys(index.papers_with(stems[common]), assumed | 1 << common)
        for bit in range(common + 1, len(stems)):
            get = holds.get
            holds.update(
                {paper: get(paper, assumed) | 1 << bit for paper in index.papers_with(stems[bit])}
            )
    # Papers that other signals may lift, holding at most the stems every paper is taken to:
    # those whose bound, with those stems, reaches the floor.
    if signals.missed:
        floor = MIN_RELEVANCE - BOUND_SLACK
        missed_by_clauses = 1.0 - bounds.most(assumed) if prune else 0.0
        penalty = signals.penalty.get
        for paper, missed in signals.missed.items():
            if (
                paper not in holds
                and 1.0 - missed_by_clauses * missed - penalty(paper, 0.0) >= floor
            ):
                holds[paper] = assumed
    return common, holds
