"""Rank papers for subscribers: BM25F relevance to their interests, blended with trending.

Each interest keyword is a query clause scored over title and abstract with BM25F (title words
weigh more), plus proximity: the clause's adjacent word pairs found next to each other, so a
phrase found intact beats its words scattered. The free-text sentence is one more clause, a bag
of words. Clause scores lie in [0, 1] and combine like independent chances ("noisy or"), so one
long phrase cannot dominate and a paper matching two interests beats one matching a single
interest equally well. Collection statistics come from `build_corpus_stats` over the whole
stored corpus, not only the papers being ranked.

Subscribers ranked from the same candidates (a batch of a day's digests) share the work on the
papers: `prepare_candidates` once, then `rank_prepared` per subscriber, which scores only the
papers that can make the subscriber's list. `rank_papers` does both for a single subscriber.
"""

import heapq
import itertools
import math
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from types import MappingProxyType

from service.models import Interests, Paper, ScoredPaper
from service.ranking.text import analyse_text, normalise_word, stem_word, words_as_written

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

# Below this a paper is not about any of the subscriber's interests, however much it trends.
# A keyword mentioned once in an abstract scores about 0.45; its distinctive word alone about
# 0.15; its common word alone ("models" of "consistency models") about 0.01. So 0.1 asks for
# the distinctive part of at least one interest, or much of the sentence's vocabulary.
MIN_RELEVANCE = 0.1

# Log-scaled popularity reaches 1.0 at these counts: about what the day's top paper gets on
# Hugging Face daily papers, a busy discussion, a widely used code release.
UPVOTES_AT_FULL_SCALE = 100
COMMENTS_AT_FULL_SCALE = 30
GITHUB_STARS_AT_FULL_SCALE = 1000

# Trending = popularity plus some freshness, so papers nobody voted on still order by date.
POPULARITY_SHARE = 0.75
# A digest covers about a week of papers; a paper loses half its freshness every 3 days.
RECENCY_HALF_LIFE_DAYS = 3.0

MAX_WHY_LENGTH = 120
MAX_LABEL_LENGTH = 60
MIN_LABEL_LENGTH = 20
MAX_WORDS_SHOWN = 3

# A batch of subscribers ranks the same candidates, so each paper is tokenised and stemmed
# once, not once per subscriber. Sized for a week of new papers with room to spare.
PAPER_CACHE_SIZE = 8192
# Each paper's term weights under the day's statistics: a few days of new papers.
WEIGHTS_CACHE_SIZE = 4096
# Indexes of whole candidate sets: the day's, and a few more for subscribers whose candidates
# differ (a longer wait since their last issue).
INDEX_CACHE_SIZE = 4

# Slack when ruling papers out by an upper bound on their score, far above rounding error, so
# a paper is never ruled out by a bound that rounding made a hair too low.
BOUND_SLACK = 1e-9


@dataclass(frozen=True)
class FieldTerms:
    """Stem positions of one field (title or abstract) of one paper."""

    positions: Mapping[str, tuple[int, ...]]
    length: int

    def count(self, stem: str) -> int:
        return len(self.positions.get(stem, ()))

    def count_phrase(self, stems: Sequence[str]) -> int:
        """How often `stems` occur contiguously, in this order."""
        starts = self.positions.get(stems[0], ())
        following = []
        for stem in stems[1:]:
            positions = self.positions.get(stem)
            if positions is None:
                return 0
            following.append(positions)
        return sum(
            1
            for start in starts
            if all(
                start + offset in positions for offset, positions in enumerate(following, start=1)
            )
        )

    def count_pair(self, first: str, second: str) -> int:
        """How often `second` directly follows `first`."""
        following = self.positions.get(second)
        if following is None:
            return 0
        return sum(start + 1 in following for start in self.positions.get(first, ()))


@dataclass(frozen=True)
class PaperTerms:
    title: FieldTerms
    abstract: FieldTerms
    stems: frozenset[str]


@dataclass(frozen=True)
class CorpusStats:
    """Document frequencies and average field lengths of the stored corpus."""

    doc_count: int
    document_frequencies: Mapping[str, int]
    avg_title_length: float
    avg_abstract_length: float

    def idf(self, stem: str) -> float:
        """BM25 inverse document frequency, in the form that never goes negative."""
        frequency = self.document_frequencies.get(stem, 0)
        return math.log(1.0 + (self.doc_count - frequency + 0.5) / (frequency + 0.5))


@dataclass(frozen=True)
class Clause:
    """One interest as a query: a keyword phrase, or the free-text sentence."""

    label: str
    stems: tuple[str, ...]
    # Stem -> the word as the subscriber wrote it, to explain matches in their own words.
    written_words: Mapping[str, str]
    # The sentence is a bag of words: its word order is grammar, not a phrase to look for.
    is_keyword: bool


@dataclass(frozen=True)
class _WeightedClause:
    """A clause with the idf of each distinct stem in this corpus."""

    clause: Clause
    idfs: Mapping[str, float]
    total_idf: float
    # In (0, 1]: how much a full match of this clause counts, by how specific its words are.
    weight: float
    # A keyword's adjacent stems, for proximity; none for one-word keywords and the sentence.
    pairs: tuple[tuple[str, str], ...]


def build_corpus_stats(papers: Iterable[Paper]) -> CorpusStats:
    """Collection statistics over every paper given (the whole stored corpus)."""
    frequencies: dict[str, int] = {}
    doc_count = title_total = abstract_total = 0
    for paper in papers:
        terms = analyse_paper(paper)
        doc_count += 1
        title_total += terms.title.length
        abstract_total += terms.abstract.length
        for stem in terms.stems:
            frequencies[stem] = frequencies.get(stem, 0) + 1
    return CorpusStats(
        doc_count=doc_count,
        document_frequencies=MappingProxyType(frequencies),
        avg_title_length=title_total / doc_count if doc_count else 0.0,
        avg_abstract_length=abstract_total / doc_count if doc_count else 0.0,
    )


def analyse_paper(paper: Paper) -> PaperTerms:
    return _analyse_paper_text(*paper_text(paper))


def paper_text(paper: Paper) -> tuple[str, str]:
    """The two fields a paper is ranked on: its title, and its abstract followed by any
    keywords a source gave (Hugging Face's `ai_keywords`), which weigh like abstract words."""
    if not paper.keywords:
        return paper.title, paper.abstract
    return paper.title, f"{paper.abstract}\n" + ";\n".join(paper.keywords)


# Keyed by the text itself, so an edited title or abstract is never served stale.
@lru_cache(maxsize=PAPER_CACHE_SIZE)
def _analyse_paper_text(title: str, abstract: str) -> PaperTerms:
    title_terms = _analyse_field(title)
    abstract_terms = _analyse_field(abstract)
    return PaperTerms(
        title=title_terms,
        abstract=abstract_terms,
        stems=frozenset(title_terms.positions) | frozenset(abstract_terms.positions),
    )


def _analyse_field(text: str) -> FieldTerms:
    positions: dict[str, list[int]] = {}
    stems = analyse_text(text)
    for position, stem in enumerate(stems):
        positions.setdefault(stem, []).append(position)
    return FieldTerms(
        positions=MappingProxyType({stem: tuple(found) for stem, found in positions.items()}),
        length=len(stems),
    )


@lru_cache(maxsize=1024)
def analyse_interests(interests: Interests) -> tuple[Clause, ...]:
    """Query clauses: one per distinct keyword, then the sentence. Stop words alone give none."""
    clauses: list[Clause] = []
    seen: set[tuple[str, ...]] = set()
    for keyword in interests.keywords:
        clause = _make_clause(keyword.strip(), is_keyword=True)
        if clause.stems and clause.stems not in seen:
            seen.add(clause.stems)
            clauses.append(clause)
    sentence = _make_clause(interests.text.strip(), is_keyword=False)
    if sentence.stems:
        clauses.append(sentence)
    return tuple(clauses)


def _make_clause(text: str, *, is_keyword: bool) -> Clause:
    written = words_as_written(text)
    stems = tuple(stem_word(normalise_word(word)) for word in written)
    written_words: dict[str, str] = {}
    for stem, word in zip(stems, written, strict=True):
        written_words.setdefault(stem, word)
    return Clause(
        label=text,
        stems=stems,
        written_words=MappingProxyType(written_words),
        is_keyword=is_keyword,
    )


def _weigh_clauses(clauses: Sequence[Clause], stats: CorpusStats) -> list[_WeightedClause]:
    weighted = []
    for clause in clauses:
        idfs = {stem: stats.idf(stem) for stem in dict.fromkeys(clause.stems)}
        total_idf = sum(idfs.values())
        weight = min(1.0, total_idf / SPECIFIC_CLAUSE_IDF)
        pairs = (
            tuple(zip(clause.stems, clause.stems[1:], strict=False)) if clause.is_keyword else ()
        )
        weighted.append(
            _WeightedClause(
                clause=clause, idfs=idfs, total_idf=total_idf, weight=weight, pairs=pairs
            )
        )
    return weighted


class _TermIndex:
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
        self.terms = tuple(_analyse_paper_text(title, abstract) for title, abstract in self._texts)
        self._stems = tuple(terms.stems for terms in self.terms)
        self._avg_lengths = (avg_title_length, avg_abstract_length)
        self._rankings = 0
        self._complete = False
        self._papers_with: dict[str, tuple[int, ...]] = {}
        self._stem_weights: list[Mapping[str, float] | None] = [None] * len(self.terms)
        self._pair_weights: dict[tuple[str, str], dict[int, float]] = {}

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
def _index_candidates(
    texts: tuple[tuple[str, str], ...], avg_title_length: float, avg_abstract_length: float
) -> _TermIndex:
    """The index of papers with these titles and abstracts, in this order."""
    return _TermIndex(
        texts, avg_title_length=avg_title_length, avg_abstract_length=avg_abstract_length
    )


# Keyed by the text, like the analysis: a paper keeps its weights from batch to batch, and from
# one subscriber's candidates to the next. Read-only: shared by everyone who ranks the paper.
@lru_cache(maxsize=WEIGHTS_CACHE_SIZE)
def _stem_weights(
    title: str, abstract: str, avg_title_length: float, avg_abstract_length: float
) -> Mapping[str, float]:
    terms = _analyse_paper_text(title, abstract)
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


def _clause_scores(
    clauses: Sequence[_WeightedClause], paper: int, index: _TermIndex
) -> list[tuple[_WeightedClause, float]]:
    weights = index.stem_weights(paper)
    return [(clause, _clause_score(clause, weights, paper, index)) for clause in clauses]


def _relevance(clause_scores: Iterable[tuple[_WeightedClause, float]]) -> float:
    """Noisy or: the chance that at least one interest matches, clause scores as chances."""
    missed = 1.0
    for clause, score in clause_scores:
        missed *= 1.0 - clause.weight * score
    return 1.0 - missed


def _clause_score(
    weighted: _WeightedClause, weights: Mapping[str, float], paper: int, index: _TermIndex
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
    # of "consistency models", is weak evidence, so scale by the share of its idf found.
    word_score *= found_idf / weighted.total_idf
    if not weighted.pairs or word_score == 0.0:
        return word_score
    proximity = sum(
        index.pair_weight(paper, pair)
        for pair in weighted.pairs
        if pair[0] in weights and pair[1] in weights
    )
    proximity /= len(weighted.pairs)
    return (word_score + PROXIMITY_WEIGHT * proximity) / (1.0 + PROXIMITY_WEIGHT)


class _QueryBounds:
    """Upper bounds on a paper's relevance from which query stems it holds, and one weight.

    A paper's stems held are bits of their positions in `stems`. Saturated weights are below
    1; a word pair's weight is at most either word's (it cannot occur more often than its
    words); a clause's found idf is that of its stems held. So if x is the paper's weight of
    one stem held, the lead, a clause scores at most a + b x: b is 0 for clauses without the
    lead, and x = 1 bounds papers by their stems alone.
    """

    def __init__(self, clauses: Sequence[_WeightedClause], stems: Sequence[str]) -> None:
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
                other_share = (len(held_pairs) - own_pairs) / len(pair_bits)
                own_share = own_pairs / len(pair_bits)
                a = (a + PROXIMITY_WEIGHT * other_share) / (1.0 + PROXIMITY_WEIGHT)
                b = (b + PROXIMITY_WEIGHT * own_share) / (1.0 + PROXIMITY_WEIGHT)
        line = self._lines[number][key] = (a, b)
        return line


# -score, paper id, the paper's position among the prepared papers, relevance, clause scores.
_Ranked = tuple[float, str, int, float, list[tuple[_WeightedClause, float]]]


def _best_papers(
    clauses: Sequence[_WeightedClause],
    prepared: "PreparedCandidates",
    *,
    trending_weight: float,
    limit: int,
    excluded: AbstractSet[str],
) -> list[_Ranked]:
    """The `limit` best papers relevant enough, best first.

    Scoring a paper costs far more than bounding its score, so papers are bounded first, by
    the query stems they hold (_QueryBounds) and their trending score, and taken best bound
    first until the `limit`th best score so far is out of reach of the rest. A paper taken
    has its bound tightened by its weight of the rarest query stem it holds, and goes back in
    line if that puts it behind another: most papers cost a glance, some a second one, and
    only the likely best a score. A paper holding only the common half of a keyword
    ("networks" of "neural networks"), or a one-word keyword's word only in passing, or
    trending too little, is not scored.
    """
    index = prepared.index
    papers = prepared.papers
    trending = prepared.trending
    relevance_share = 1.0 - trending_weight
    stems = sorted(
        {stem for clause in clauses for stem in clause.idfs},
        key=lambda stem: (-len(index.papers_with(stem)), stem),
    )
    # The bounds need positive idfs, which statistics of any real corpus give.
    prune = all(idf > 0.0 for clause in clauses for idf in clause.idfs.values())
    bounds = _QueryBounds(clauses, stems)
    # MaxScore (Turtle & Flood, 1995): while a paper holding the commonest stems and no rarer
    # one cannot be relevant enough, those stems' papers need not be looked up. Every paper is
    # taken to hold them, which only loosens its bound.
    assumed = common = 0
    while prune and common < len(stems):
        if bounds.most(assumed | 1 << common) >= MIN_RELEVANCE - BOUND_SLACK:
            break
        assumed |= 1 << common
        common += 1
    if common == len(stems):
        return []  # no paper is relevant enough
    # Which query stems each paper holds, as bits of their positions in `stems`: the commonest
    # looked up in one go, the rarer ones paper by paper.
    holds = dict.fromkeys(index.papers_with(stems[common]), assumed | 1 << common)
    for bit in range(common + 1, len(stems)):
        get = holds.get
        holds.update(
            {paper: get(paper, assumed) | 1 << bit for paper in index.papers_with(stems[bit])}
        )
    relevance_parts = {}
    for held in set(holds.values()):
        most_relevance = bounds.most(held) if prune else 1.0
        if most_relevance >= MIN_RELEVANCE - BOUND_SLACK:
            relevance_parts[held] = relevance_share * most_relevance
    # (-bound on the score, paper, whether the bound is tightened), best bound first.
    line = [
        (-(relevance_parts[held] + trending_weight * trending[paper]), paper, not prune)
        for paper, held in holds.items()
        if held in relevance_parts
    ]
    heapq.heapify(line)
    # The rarest stem a paper holds is the one whose weight tightens its bound most; only the
    # stems looked up are known to be held.
    idfs = {stem: idf for clause in clauses for stem, idf in clause.idfs.items()}
    rarest_first = sorted(
        range(common, len(stems)), key=lambda number: (-idfs[stems[number]], stems[number])
    )
    leads: dict[int, int] = {}  # by the stems held: the position of the rarest in `stems`
    best_scores: list[float] = []  # a min-heap of the `limit` best scores so far
    bar = -math.inf  # what a paper must reach to count: the `limit`th best score, less slack
    ranked: list[_Ranked] = []
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
            lead = leads.get(held)
            if lead is None:
                lead = leads[held] = next(n for n in rarest_first if held >> n & 1)
            weight = index.stem_weights(paper)[stems[lead]]
            most_relevance = bounds.most_with(held, 1 << lead, weight)
            if most_relevance < MIN_RELEVANCE - BOUND_SLACK:
                continue
            reach = relevance_share * most_relevance + trending_weight * trending[paper]
            if line and reach < -line[0][0]:
                heapq.heappush(line, (-reach, paper, True))
                continue
        if papers[paper].id in excluded:
            continue
        clause_scores = _clause_scores(clauses, paper, index)
        relevance = _relevance(clause_scores)
        if relevance < MIN_RELEVANCE:
            continue
        score = relevance_share * relevance + trending_weight * trending[paper]
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


def relevance_scores(
    papers: Iterable[Paper], interests: Interests, *, stats: CorpusStats
) -> dict[str, float]:
    """Relevance in [0, 1] of each paper, by id, with no threshold (for evaluation)."""
    papers = list(papers)
    index = _TermIndex(
        (paper_text(paper) for paper in papers),
        avg_title_length=stats.avg_title_length,
        avg_abstract_length=stats.avg_abstract_length,
    )
    clauses = _weigh_clauses(analyse_interests(interests), stats)
    # A paper holding no query stem scores 0 on every clause, so has relevance 0.
    matching = {
        paper for clause in clauses for stem in clause.idfs for paper in index.papers_with(stem)
    }
    relevances = {paper: _relevance(_clause_scores(clauses, paper, index)) for paper in matching}
    return {paper.id: relevances.get(number, 0.0) for number, paper in enumerate(papers)}


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
    index: _TermIndex


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
        index=_index_candidates(
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
    clauses = _weigh_clauses(analyse_interests(interests), prepared.stats)
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
    ranked = _best_papers(
        clauses, prepared, trending_weight=trending_weight, limit=limit, excluded=excluded
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
    clause_scores: Sequence[tuple[_WeightedClause, float]],
    terms: PaperTerms,
) -> ScoredPaper:
    phrases, words = _matched_labels(clause_scores, terms)
    return ScoredPaper(
        paper=paper,
        score=score,
        relevance=relevance,
        trending=trending,
        why=explain_match(phrases, words, paper),
        matched_terms=(*phrases, *words),
    )


def _matched_labels(
    clause_scores: Sequence[tuple[_WeightedClause, float]], terms: PaperTerms
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Keywords found intact (as typed), then other matched words (as typed), best first."""
    stems = terms.stems
    # The subscriber's own keywords explain a match better than words of their sentence. An
    # interest none of whose words the paper holds has nothing to show.
    by_score = [
        weighted
        for weighted, _ in sorted(
            (
                (weighted, score)
                for weighted, score in clause_scores
                if not stems.isdisjoint(weighted.idfs)
            ),
            key=lambda pair: (not pair[0].clause.is_keyword, -pair[1]),
        )
    ]
    intact = [weighted.clause for weighted in by_score if _phrase_found(weighted.clause, terms)]
    covered = {stem for clause in intact for stem in clause.stems}
    # The words of the best-matching interests first, each interest's rarest words first.
    words: dict[str, str] = {}
    for weighted in by_score:
        found = [stem for stem in weighted.idfs if stem in stems and stem not in covered]
        if len(found) > 1:
            found.sort(key=lambda stem: (-weighted.idfs[stem], stem))
        for stem in found:
            words.setdefault(stem, weighted.clause.written_words[stem])
    return tuple(clause.label for clause in intact), tuple(words.values())


def _phrase_found(clause: Clause, terms: PaperTerms) -> bool:
    if not clause.is_keyword or not terms.stems.issuperset(clause.stems):
        return False
    # A one-word keyword is found wherever its word is.
    return len(clause.stems) == 1 or any(
        field.count_phrase(clause.stems) for field in (terms.title, terms.abstract)
    )


def explain_match(phrases: Sequence[str], words: Sequence[str], paper: Paper) -> str:
    """A short line saying why the paper was picked, e.g. 'Matches “x” · trending: 5 upvotes'."""
    signals = _describe_signals(paper)
    if not phrases and not words:
        if signals:
            return f"Trending: {signals}"
        if paper.published_date is not None:
            return f"New: published {paper.published_date.isoformat()}"
        return "New paper"
    suffix = f" · trending: {signals}" if signals else ""
    shown_phrases = [_shorten(phrase, MAX_LABEL_LENGTH) for phrase in phrases]
    shown_words = list(words[:MAX_WORDS_SHOWN])
    line = _describe_matches(shown_phrases, shown_words) + suffix
    # Drop the weakest matches (words first, then keywords) until the line is short enough.
    while len(line) > MAX_WHY_LENGTH and len(shown_phrases) + len(shown_words) > 1:
        if shown_words:
            shown_words.pop()
        else:
            shown_phrases.pop()
        line = _describe_matches(shown_phrases, shown_words) + suffix
    excess = len(line) - MAX_WHY_LENGTH
    if excess > 0 and shown_phrases:
        # One long keyword left: shorten it rather than cut the trending figures.
        phrase = shown_phrases[0]
        shown_phrases[0] = _shorten(phrase, max(MIN_LABEL_LENGTH, len(phrase) - excess))
        line = _describe_matches(shown_phrases, shown_words) + suffix
    return _shorten(line, MAX_WHY_LENGTH)


def _describe_matches(phrases: Sequence[str], words: Sequence[str]) -> str:
    parts = []
    if phrases:
        parts.append(", ".join(f"“{phrase}”" for phrase in phrases))
    if words:
        parts.append("words: " + ", ".join(words))
    return "Matches " + "; ".join(parts)


def _shorten(text: str, length: int) -> str:
    if len(text) <= length:
        return text
    return text[: length - 1].rstrip() + "…"


def _describe_signals(paper: Paper) -> str:
    signals = (
        (paper.upvotes, "upvote"),
        (paper.comments, "comment"),
        (paper.github_stars, "GitHub star"),
    )
    return ", ".join(
        f"{count:,} {noun}{'' if count == 1 else 's'}" for count, noun in signals if count
    )
