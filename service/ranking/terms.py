"""Papers and interests analysed into terms: the stem positions of a paper's title and
abstract, an interest's query clauses, and the statistics of the stored corpus.

Analysis is cached by text, so a batch of subscribers ranking the same candidates tokenises and
stems each paper once.
"""

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from service.models import Interests, Paper
from service.ranking.text import analyse_text, normalise_word, stem_word, words_as_written
from service.ranking.thesaurus import map_phrase

if TYPE_CHECKING:
    from service.ranking.feedback import PaperVector

# A batch of subscribers ranks the same candidates, so each paper is tokenised and stemmed
# once, not once per subscriber. Sized for a week of new papers with room to spare.
PAPER_CACHE_SIZE = 8192

# The version of what `analyse_paper_text` makes of a text. Corpus statistics kept in the store
# were counted by some version of it: bump this whenever stemming, tokenising or stop words
# change, and the store counts them again.
ANALYSIS_VERSION = 1

# A heading's term reached through the thesaurus counts half as much as a phrase the reader
# wrote: the reader said something near it, not it, and their own words should win a tie.
THESAURUS_STRENGTH = 0.5


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


def analyse_paper(paper: Paper) -> PaperTerms:
    return analyse_paper_text(*paper_text(paper))


def paper_text(paper: Paper) -> tuple[str, str]:
    return ranked_text(paper.title, paper.abstract, paper.keywords)


def ranked_text(title: str, abstract: str, keywords: Sequence[str]) -> tuple[str, str]:
    """The two fields a paper is ranked on: its title, and its abstract followed by any
    keywords a source gave (Hugging Face's `ai_keywords`), which weigh like abstract words."""
    if not keywords:
        return title, abstract
    return title, f"{abstract}\n" + ";\n".join(keywords)


# Keyed by the text itself, so an edited title or abstract is never served stale.
@lru_cache(maxsize=PAPER_CACHE_SIZE)
def analyse_paper_text(title: str, abstract: str) -> PaperTerms:
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


@dataclass(frozen=True)
class CorpusStats:
    """Document frequencies and average field lengths of the stored corpus."""

    doc_count: int
    document_frequencies: Mapping[str, int]
    avg_title_length: float
    avg_abstract_length: float
    # Liked and disliked papers described under these statistics (feedback.describe_paper),
    # by id, title and abstract: a day's batches share the statistics and many votes.
    descriptions: "dict[tuple[str, str, str], PaperVector]" = field(
        default_factory=dict, compare=False, repr=False
    )

    # Each stem's idf once: describing a year of liked papers asks for the same stems often.
    _idfs: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    def idf(self, stem: str) -> float:
        """BM25 inverse document frequency, in the form that never goes negative."""
        idf = self._idfs.get(stem)
        if idf is None:
            frequency = self.document_frequencies.get(stem, 0)
            idf = math.log(1.0 + (self.doc_count - frequency + 0.5) / (frequency + 0.5))
            self._idfs[stem] = idf
        return idf


@dataclass
class CorpusCounts:
    """What corpus statistics are made of, counted paper by paper: the store keeps these
    counts, and a paper added or edited changes them by its own terms alone."""

    papers: int = 0
    title_terms: int = 0
    abstract_terms: int = 0
    frequencies: Counter[str] = field(default_factory=Counter)

    def count(self, title: str, abstract: str, *, times: int = 1) -> None:
        """Count the paper with these ranked fields in (`times=1`) or out (`times=-1`)."""
        terms = analyse_paper_text(title, abstract)
        self.papers += times
        self.title_terms += times * terms.title.length
        self.abstract_terms += times * terms.abstract.length
        for stem in terms.stems:
            self.frequencies[stem] += times

    def stats(self) -> CorpusStats:
        return CorpusStats(
            doc_count=self.papers,
            document_frequencies=MappingProxyType(
                {stem: papers for stem, papers in self.frequencies.items() if papers > 0}
            ),
            avg_title_length=self.title_terms / self.papers if self.papers else 0.0,
            avg_abstract_length=self.abstract_terms / self.papers if self.papers else 0.0,
        )


def build_corpus_stats(papers: Iterable[Paper]) -> CorpusStats:
    """Collection statistics over every paper given (the whole stored corpus)."""
    counts = CorpusCounts()
    for paper in papers:
        counts.count(*paper_text(paper))
    return counts.stats()


@dataclass(frozen=True)
class Clause:
    """One interest as a query: a keyword phrase, or the free-text sentence."""

    label: str
    stems: tuple[str, ...]
    # Stem -> the word as the subscriber wrote it, to explain matches in their own words.
    written_words: Mapping[str, str]
    # The sentence is a bag of words: its word order is grammar, not a phrase to look for.
    is_keyword: bool
    # A heading's term reached through the thesaurus: the reader's phrase that led to it, and
    # how much it counts against the reader's own words (`THESAURUS_STRENGTH`).
    via: str = ""
    strength: float = 1.0


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
    clauses.extend(_thesaurus_clauses(interests, seen))
    return tuple(clauses)


def _thesaurus_clauses(interests: Interests, seen: set[tuple[str, ...]]) -> list[Clause]:
    """The terms of every heading the reader's phrases lead to (see `thesaurus`), each once,
    as keyword clauses that count for less than the reader's own words."""
    clauses: list[Clause] = []
    headings: set[str] = set()
    for phrase in (*interests.keywords, interests.text):
        for mapped in map_phrase(phrase.strip()):
            if mapped.heading.label in headings:
                continue
            headings.add(mapped.heading.label)
            for term in mapped.heading.terms:
                clause = _make_clause(term, is_keyword=True)
                if clause.stems and clause.stems not in seen:
                    seen.add(clause.stems)
                    clauses.append(replace(clause, via=mapped.phrase, strength=THESAURUS_STRENGTH))
    return clauses


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
