"""Rank papers for one subscriber: BM25F relevance to their interests, blended with trending.

Each interest keyword is a query clause scored over title and abstract with BM25F (title words
weigh more), plus proximity: the clause's adjacent word pairs found next to each other, so a
phrase found intact beats its words scattered. The free-text sentence is one more clause, a bag
of words. Clause scores lie in [0, 1] and combine like independent chances ("noisy or"), so one
long phrase cannot dominate and a paper matching two interests beats one matching a single
interest equally well. Collection statistics come from `build_corpus_stats` over the whole
stored corpus, not only the papers being ranked.
"""

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class _Candidate:
    paper: Paper
    score: float
    relevance: float
    trending: float


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
        weighted.append(
            _WeightedClause(clause=clause, idfs=idfs, total_idf=total_idf, weight=weight)
        )
    return weighted


def relevance_scores(
    papers: Iterable[Paper], interests: Interests, *, stats: CorpusStats
) -> dict[str, float]:
    """Relevance in [0, 1] of each paper, by id, with no threshold (for evaluation)."""
    clauses = _weigh_clauses(analyse_interests(interests), stats)
    return {paper.id: _relevance(clauses, analyse_paper(paper), stats) for paper in papers}


def _relevance(clauses: Sequence[_WeightedClause], terms: PaperTerms, stats: CorpusStats) -> float:
    """Noisy or: the chance that at least one interest matches, clause scores as chances."""
    missed = 1.0
    for clause in clauses:
        missed *= 1.0 - clause.weight * _clause_score(clause, terms, stats)
    return 1.0 - missed


def _clause_score(weighted: _WeightedClause, terms: PaperTerms, stats: CorpusStats) -> float:
    """Score in [0, 1]: the idf-weighted share of the clause's words found, then proximity."""
    clause = weighted.clause
    found_idf = matched = 0.0
    for stem, idf in weighted.idfs.items():
        if stem in terms.stems:
            found_idf += idf
            matched += idf * _saturate(_field_weighted_count(terms, stats, stem))
    word_score = matched / weighted.total_idf
    if not clause.is_keyword:
        return word_score
    # Coordination (as in Lucene's classic scoring): a keyword's common word alone, "models"
    # of "consistency models", is weak evidence, so scale by the share of its idf found.
    word_score *= found_idf / weighted.total_idf
    if len(clause.stems) == 1 or word_score == 0.0:
        return word_score
    pairs = list(zip(clause.stems, clause.stems[1:], strict=False))
    proximity = sum(
        _saturate(_field_weighted_count(terms, stats, *pair))
        for pair in pairs
        if terms.stems.issuperset(pair)
    )
    proximity /= len(pairs)
    return (word_score + PROXIMITY_WEIGHT * proximity) / (1.0 + PROXIMITY_WEIGHT)


def _field_weighted_count(terms: PaperTerms, stats: CorpusStats, *phrase: str) -> float:
    """BM25F pseudo frequency of a stem or phrase: length-normalised, field-weighted counts."""
    fields = (
        (terms.title, TITLE_WEIGHT, stats.avg_title_length),
        (terms.abstract, 1.0, stats.avg_abstract_length),
    )
    total = 0.0
    for field, weight, avg_length in fields:
        count = field.count(phrase[0]) if len(phrase) == 1 else field.count_phrase(phrase)
        if count:
            length_ratio = field.length / avg_length if avg_length > 0 else 1.0
            total += weight * count / (1.0 - B + B * length_ratio)
    return total


def _saturate(frequency: float) -> float:
    """BM25 term-frequency saturation, scaled to [0, 1)."""
    return frequency / (K1 + frequency)


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

    Score = (1 - trending_weight) * relevance + trending_weight * trending, both in [0, 1].
    With interests set, papers below MIN_RELEVANCE are left out whatever the weight. Empty
    interests (or only stop words) give the trending digest: trending alone, then id.
    """
    if not 0.0 <= trending_weight <= 1.0:
        raise ValueError(f"trending_weight must be within [0, 1], got {trending_weight}")
    clauses = _weigh_clauses(analyse_interests(interests), stats)
    query_stems = frozenset(stem for clause in clauses for stem in clause.idfs)
    ranked: list[_Candidate] = []
    seen_ids = set(exclude_ids)
    for paper in candidates:
        if paper.id in seen_ids:
            continue
        seen_ids.add(paper.id)
        trending = trending_score(paper, today=today)
        if not clauses:
            ranked.append(_Candidate(paper, score=trending, relevance=0.0, trending=trending))
            continue
        terms = analyse_paper(paper)
        if terms.stems.isdisjoint(query_stems):
            continue
        relevance = _relevance(clauses, terms, stats)
        if relevance >= MIN_RELEVANCE:
            score = (1.0 - trending_weight) * relevance + trending_weight * trending
            ranked.append(_Candidate(paper, score=score, relevance=relevance, trending=trending))
    ranked.sort(key=lambda candidate: (-candidate.score, candidate.paper.id))
    return [_to_scored_paper(candidate, clauses, stats) for candidate in ranked[: max(0, limit)]]


def _to_scored_paper(
    candidate: _Candidate, clauses: Sequence[_WeightedClause], stats: CorpusStats
) -> ScoredPaper:
    phrases, words = _matched_labels(clauses, analyse_paper(candidate.paper), stats)
    return ScoredPaper(
        paper=candidate.paper,
        score=candidate.score,
        relevance=candidate.relevance,
        trending=candidate.trending,
        why=explain_match(phrases, words, candidate.paper),
        matched_terms=(*phrases, *words),
    )


def _matched_labels(
    clauses: Sequence[_WeightedClause], terms: PaperTerms, stats: CorpusStats
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Keywords found intact (as typed), then other matched words (as typed), best first."""
    # The subscriber's own keywords explain a match better than words of their sentence.
    by_score = sorted(
        clauses,
        key=lambda weighted: (
            not weighted.clause.is_keyword,
            -_clause_score(weighted, terms, stats),
        ),
    )
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
