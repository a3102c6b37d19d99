"""Rank papers for one subscriber: BM25F relevance to their interests, blended with trending.

Each interest keyword is a query clause scored over title and abstract with BM25F (title words
weigh more), plus proximity: the clause's adjacent word pairs found next to each other, so a
phrase found intact beats its words scattered. The free-text sentence is one more clause, a bag
of words. Clause scores lie in [0, 1] and combine like independent chances ("noisy or"), so one
long phrase cannot dominate and a paper matching two interests beats one matching a single
interest equally well. Collection statistics come from `build_corpus_stats` over the whole
stored corpus, not only the papers being ranked.
"""

import heapq
import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from types import MappingProxyType

from service.models import Interests, Paper, ScoredPaper
from service.text import analyse_text, normalise_word, stem_word, words_as_written

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


@dataclass(frozen=True)
class FieldTerms:
    """Stem positions of one field (title or abstract) of one paper."""

    positions: Mapping[str, tuple[int, ...]]
    length: int

    def count(self, stem: str) -> int:
        return len(self.positions.get(stem, ()))

    def count_phrase(self, stems: Sequence[str]) -> int:
        """How often `stems` occur contiguously, in this order."""
        return sum(
            1
            for start in self.positions.get(stems[0], ())
            if all(
                start + offset in self.positions.get(stem, ())
                for offset, stem in enumerate(stems[1:], start=1)
            )
        )


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
    return _analyse_paper_text(paper.title, paper.abstract)


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


# Slack when ruling papers out by an upper bound on their score, far above rounding error, so
# a paper is never ruled out by a bound that rounding made a hair too low.
BOUND_SLACK = 1e-9

# A term of the index: a stem, or two stems standing next to each other (for proximity).
Term = str | tuple[str, str]


class _TermIndex:
    """Which candidate papers hold each stem, and the papers' saturated BM25F weights.

    Everything is computed on first use and kept: a batch's interests use a few hundred of the
    tens of thousands of words and word pairs in a week's abstracts, and one subscriber ranked
    on their own then pays no more than scoring every paper would. Threads may share an index:
    a racing first use computes the same entry twice, never a different one.
    """

    def __init__(self, papers: Sequence[Paper], stats: CorpusStats) -> None:
        self.terms = tuple(analyse_paper(paper) for paper in papers)
        self._norms = tuple(
            (
                _length_norm(terms.title.length, stats.avg_title_length),
                _length_norm(terms.abstract.length, stats.avg_abstract_length),
            )
            for terms in self.terms
        )
        self._papers_with: dict[str, tuple[int, ...]] = {}
        self._weights: dict[Term, dict[int, float]] = {}

    def papers_with(self, stem: str) -> tuple[int, ...]:
        """Positions of the papers whose title or abstract has `stem`, in increasing order."""
        found = self._papers_with.get(stem)
        if found is None:
            found = self._papers_with[stem] = tuple(
                paper for paper, terms in enumerate(self.terms) if stem in terms.stems
            )
        return found

    def weights(self, term: Term) -> dict[int, float]:
        """Weights of `term` by paper, as far as computed: fill it with weight()."""
        weights = self._weights.get(term)
        if weights is None:
            weights = self._weights[term] = {}
        return weights

    def weight(self, paper: int, term: Term) -> float:
        """Saturated BM25F weight of a term in a paper that has all of its stems."""
        terms = self.terms[paper]
        if isinstance(term, str):
            title_count, abstract_count = terms.title.count(term), terms.abstract.count(term)
        else:
            title_count = terms.title.count_phrase(term)
            abstract_count = terms.abstract.count_phrase(term)
        # The BM25F pseudo frequency: length-normalised, field-weighted counts.
        title_norm, abstract_norm = self._norms[paper]
        frequency = 0.0
        if title_count:
            frequency += TITLE_WEIGHT * title_count / title_norm
        if abstract_count:
            frequency += ABSTRACT_WEIGHT * abstract_count / abstract_norm
        return _saturate(frequency)


def _length_norm(length: int, avg_length: float) -> float:
    """BM25 length normalisation of one field: above 1 for fields longer than average."""
    length_ratio = length / avg_length if avg_length > 0 else 1.0
    return 1.0 - B + B * length_ratio


def _saturate(frequency: float) -> float:
    """BM25 term-frequency saturation, scaled to [0, 1)."""
    return frequency / (K1 + frequency)


@dataclass(frozen=True)
class _ClauseQuery:
    """A weighted clause with its terms' weight tables from one index, looked up per paper."""

    weighted: _WeightedClause
    words: tuple[tuple[str, float, dict[int, float]], ...]
    pairs: tuple[tuple[tuple[str, str], dict[int, float]], ...]


def _query_index(clauses: Sequence[_WeightedClause], index: _TermIndex) -> list[_ClauseQuery]:
    return [
        _ClauseQuery(
            weighted=weighted,
            words=tuple((stem, idf, index.weights(stem)) for stem, idf in weighted.idfs.items()),
            pairs=tuple((pair, index.weights(pair)) for pair in weighted.pairs),
        )
        for weighted in clauses
    ]


def _relevance(clauses: Sequence[_ClauseQuery], paper: int, index: _TermIndex) -> float:
    """Noisy or: the chance that at least one interest matches, clause scores as chances."""
    missed = 1.0
    for clause in clauses:
        missed *= 1.0 - clause.weighted.weight * _clause_score(clause, paper, index)
    return 1.0 - missed


def _clause_score(query: _ClauseQuery, paper: int, index: _TermIndex) -> float:
    """Score in [0, 1]: the idf-weighted share of the clause's words found, then proximity."""
    weighted = query.weighted
    stems = index.terms[paper].stems
    found_idf = matched = 0.0
    for stem, idf, weights in query.words:
        if stem in stems:
            weight = weights.get(paper)
            if weight is None:
                weight = weights[paper] = index.weight(paper, stem)
            found_idf += idf
            matched += idf * weight
    word_score = matched / weighted.total_idf
    if not weighted.clause.is_keyword:
        return word_score
    # Coordination (as in Lucene's classic scoring): a keyword's common word alone, "models"
    # of "consistency models", is weak evidence, so scale by the share of its idf found.
    word_score *= found_idf / weighted.total_idf
    if not query.pairs or word_score == 0.0:
        return word_score
    found_pairs = []
    for pair, weights in query.pairs:
        if pair[0] in stems and pair[1] in stems:
            weight = weights.get(paper)
            if weight is None:
                weight = weights[paper] = index.weight(paper, pair)
            found_pairs.append(weight)
    proximity = sum(found_pairs) / len(query.pairs)
    return (word_score + PROXIMITY_WEIGHT * proximity) / (1.0 + PROXIMITY_WEIGHT)


def _relevance_bound(clauses: Sequence[_WeightedClause], stems: AbstractSet[str]) -> float:
    """The most relevance a paper can have when the query words it holds are among `stems`.

    Saturated weights are below 1, so a clause's word score is at most the share of its idf
    found (squared, for a keyword), and its proximity the share of its word pairs found.
    """
    missed = 1.0
    for weighted in clauses:
        share = sum(idf for stem, idf in weighted.idfs.items() if stem in stems)
        share /= weighted.total_idf
        if weighted.clause.is_keyword:
            share *= share
            if weighted.pairs:
                pairs = sum(1 for first, second in weighted.pairs if {first, second} <= stems)
                proximity = pairs / len(weighted.pairs)
                share = (share + PROXIMITY_WEIGHT * proximity) / (1.0 + PROXIMITY_WEIGHT)
        missed *= 1.0 - weighted.weight * min(1.0, share)
    return 1.0 - missed


def _best_papers(
    clauses: Sequence[_WeightedClause],
    prepared: "PreparedCandidates",
    *,
    trending_weight: float,
    limit: int,
    excluded: AbstractSet[str],
) -> list[tuple[float, str, int, float]]:
    """The `limit` best (-score, id, paper, relevance) of papers relevant enough, best first.

    MaxScore (Turtle & Flood, 1995): visit the papers holding each query word, rarest word
    first. A paper first met at a word holds none of the rarer ones, which bounds its
    relevance; with its trending score, that bounds its score. A paper whose bound is below
    the `limit`th best score so far cannot make the list, so it is not scored: a query's common
    words ("models", "learning") then cost a glance per paper, not a score. Prepared papers
    are in falling trending order, so along one word's papers the bound only falls.
    """
    index = prepared.index
    papers = prepared.papers
    trending = prepared.trending
    queries = _query_index(clauses, index)
    stems = sorted(
        {stem for clause in clauses for stem in clause.idfs},
        key=lambda stem: (len(index.papers_with(stem)), stem),
    )
    # The bound assumes positive idfs, as statistics of any real corpus give.
    can_bound = all(idf > 0.0 for clause in clauses for idf in clause.idfs.values())
    best_scores: list[float] = []  # a min-heap of the `limit` best scores so far
    ranked: list[tuple[float, str, int, float]] = []
    seen: set[int] = set()
    for position, stem in enumerate(stems):
        bound = _relevance_bound(clauses, set(stems[position:])) if can_bound else 1.0
        if bound < MIN_RELEVANCE - BOUND_SLACK:
            break  # papers holding only commoner words cannot be relevant enough
        holders = index.papers_with(stem)
        for rank, paper in enumerate(holders):
            if paper in seen:
                continue
            if len(best_scores) == limit:
                reach = (1.0 - trending_weight) * bound + trending_weight * trending[paper]
                if reach < best_scores[0] - BOUND_SLACK:
                    # The rest trend no more, so reach no further; they hold this word, so
                    # the bounds of commoner words' papers would not hold for them.
                    seen.update(holders[rank:])
                    break
            seen.add(paper)
            if papers[paper].id in excluded:
                continue
            relevance = _relevance(queries, paper, index)
            if relevance < MIN_RELEVANCE:
                continue
            score = (1.0 - trending_weight) * relevance + trending_weight * trending[paper]
            ranked.append((-score, papers[paper].id, paper, relevance))
            if len(best_scores) < limit:
                heapq.heappush(best_scores, score)
            elif score > best_scores[0]:
                heapq.heapreplace(best_scores, score)
    # Ids are unique among prepared papers, so ties never compare further.
    ranked.sort()
    return ranked[:limit]


def relevance_scores(
    papers: Iterable[Paper], interests: Interests, *, stats: CorpusStats
) -> dict[str, float]:
    """Relevance in [0, 1] of each paper, by id, with no threshold (for evaluation)."""
    papers = list(papers)
    index = _TermIndex(papers, stats)
    clauses = _weigh_clauses(analyse_interests(interests), stats)
    queries = _query_index(clauses, index)
    # A paper holding no query word scores 0 on every clause, so has relevance 0.
    matching = {
        paper for clause in clauses for stem in clause.idfs for paper in index.papers_with(stem)
    }
    relevances = {paper: _relevance(queries, paper, index) for paper in matching}
    return {paper.id: relevances.get(number, 0.0) for number, paper in enumerate(papers)}


def trending_score(paper: Paper, *, today: date) -> float:
    """Trending in [0, 1]: log-scaled popularity plus freshness."""
    freshness = _recency(paper, today=today)
    return POPULARITY_SHARE * _popularity(paper) + (1.0 - POPULARITY_SHARE) * freshness


def _popularity(paper: Paper) -> float:
    """The strongest known signal, log-scaled; papers nobody has voted on yet score 0."""
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

    Built once by prepare_candidates for a batch (or a day) of subscribers who share the same
    candidates, statistics and issue date; rank each with rank_prepared.
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
    """Analyse the candidates once; a paper listed twice counts once, as its first listing."""
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
        index=_TermIndex(papers, stats),
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

    One subscriber's ranking; see rank_prepared for what it returns. A batch of subscribers
    sharing candidates should prepare them once and call rank_prepared for each.
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
    queries = _query_index(clauses, prepared.index)
    return [
        _to_scored_paper(
            papers[number],
            score=-negated_score,
            relevance=relevance,
            trending=prepared.trending[number],
            clause_scores=[
                (query, _clause_score(query, number, prepared.index)) for query in queries
            ],
            terms=prepared.index.terms[number],
        )
        for negated_score, _, number, relevance in ranked
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
    clause_scores: Sequence[tuple[_ClauseQuery, float]],
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
    clause_scores: Sequence[tuple[_ClauseQuery, float]], terms: PaperTerms
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Keywords found intact (as typed), then other matched words (as typed), best first."""
    # The subscriber's own keywords explain a match better than words of their sentence.
    by_score = [
        query.weighted
        for query, _ in sorted(
            clause_scores, key=lambda pair: (not pair[0].weighted.clause.is_keyword, -pair[1])
        )
    ]
    intact = [weighted.clause for weighted in by_score if _phrase_found(weighted.clause, terms)]
    covered = {stem for clause in intact for stem in clause.stems}
    # The words of the best-matching interests first, each interest's rarest words first.
    words: dict[str, str] = {}
    for weighted in by_score:
        found = [stem for stem in weighted.idfs if stem in terms.stems and stem not in covered]
        for stem in sorted(found, key=lambda stem: (-weighted.idfs[stem], stem)):
            words.setdefault(stem, weighted.clause.written_words[stem])
    return tuple(clause.label for clause in intact), tuple(words.values())


def _phrase_found(clause: Clause, terms: PaperTerms) -> bool:
    if not clause.is_keyword:
        return False
    return any(field.count_phrase(clause.stems) for field in (terms.title, terms.abstract))


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
