"""A thesaurus of machine-learning research with a reader's lay words as entry terms.

Readers describe interests in their own words ("software that spots things in photos"), papers
in the field's ("object detection"); no word-matching ranker bridges the two. PubMed answers the
same problem for medicine with automatic term mapping: a searcher's words are looked up among
the entry terms of a controlled vocabulary (MeSH) and the search also asks for the heading they
lead to. This is that, for this field: each heading names what papers call a topic and lists the
everyday phrasings that lead to it. It covers machine learning broadly, not any one reader's
topics, and it is data: a missing phrasing is a line to add.

An entry term leads to its heading when every content word of it (stemmed, so "photos" and
"photo" agree) occurs in one interest phrase or in the sentence, in any order: readers do not
repeat a fixed wording. Entry terms are therefore short, and a single word only when it can mean
nothing else ("chatbots", "x-rays"). The data is `thesaurus.txt`, beside this module.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from service.ranking.text import analyse_text

THESAURUS_FILE = Path(__file__).with_name("thesaurus.txt")


@dataclass(frozen=True)
class Heading:
    label: str  # as the why-line shows it
    terms: tuple[str, ...]  # what papers write: each a phrase searched for
    entries: tuple[str, ...]  # what readers write: each leads here when all its words occur


def read_thesaurus(text: str) -> tuple[Heading, ...]:
    """Headings from the thesaurus format: a heading line, then indented `papers:` and
    `readers:` lines of `;`-separated phrases; `#` lines are comments."""
    headings: list[Heading] = []
    label: str | None = None
    fields: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if line.startswith("#"):
            continue
        if not line.strip() or not line[0].isspace():
            if label is not None:
                if set(fields) != {"papers", "readers"}:
                    raise ValueError(f"thesaurus line {number}: {label!r} needs papers and readers")
                headings.append(Heading(label, fields["papers"], fields["readers"]))
            label, fields = (line.strip() or None), {}
            continue
        name, _, phrases = line.strip().partition(":")
        if label is None or name not in ("papers", "readers"):
            raise ValueError(
                f"thesaurus line {number}: expected papers: or readers: under a heading"
            )
        fields[name] = tuple(phrase.strip() for phrase in phrases.split(";") if phrase.strip())
    return tuple(headings)


# Words that say nothing of a topic on their own: an entry term needs one word besides them,
# or "learning by doing" would lead every reader who writes "learning" to reinforcement learning.
GENERIC_WORDS = frozenset(
    analyse_text(
        "learn learning model network neural data ai machine deep method new use make thing "
        "system computer program software work good better"
    )
)


def check_entries(found: tuple[Heading, ...]) -> tuple[Heading, ...]:
    for heading in found:
        for entry in heading.entries:
            if frozenset(analyse_text(entry)) <= GENERIC_WORDS:
                raise ValueError(f"thesaurus entry {entry!r} of {heading.label!r} is too generic")
    return found


@lru_cache(maxsize=1)
def headings() -> tuple[Heading, ...]:
    return check_entries(read_thesaurus(THESAURUS_FILE.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Mapped:
    """An interest phrase led to a heading through one entry term."""

    heading: Heading
    entry: str  # the entry term, as the thesaurus writes it
    phrase: str  # the reader's phrase it was found in


@lru_cache(maxsize=1)
def _entry_stems() -> tuple[tuple[frozenset[str], str, Heading], ...]:
    # Every entry has a word beside the generic ones (`check_entries`), so none is empty.
    return tuple(
        (frozenset(analyse_text(entry)), entry, heading)
        for heading in headings()
        for entry in heading.entries
    )


@lru_cache(maxsize=4096)
def map_phrase(phrase: str) -> tuple[Mapped, ...]:
    """The headings a reader's phrase leads to, each once, in thesaurus order."""
    stems = frozenset(analyse_text(phrase))
    found: dict[str, Mapped] = {}
    for entry_stems, entry, heading in _entry_stems():
        if entry_stems <= stems and heading.label not in found:
            found[heading.label] = Mapped(heading, entry, phrase)
    return tuple(found.values())
