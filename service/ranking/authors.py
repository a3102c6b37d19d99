"""Author names compared the way readers write them: regardless of accents, case and given
names spelt out or as initials ("J. Müller", "Jürgen Müller" and "Jurgen Muller" are one name).

A name is reduced to its surname and the initial of its first given name. That merges two
people of one surname and initial (Julia and Jürgen Müller), the price of matching "J. Müller":
a followed name lifts papers, it never hides any.
"""

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# Letters and digits of any script: dots, hyphens and apostrophes separate parts of a name,
# so "J.-P. O'Neil" gives "j", "p", "o", "neil".
_NAME_PART = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class AuthorKey:
    """A name as compared: its surname, and its first given name's initial ("" when none)."""

    surname: str
    initial: str

    def matches(self, other: "AuthorKey") -> bool:
        """Whether a followed name (self) names this author; a surname alone names any."""
        return self.surname == other.surname and (
            not self.initial or not other.initial or self.initial == other.initial
        )


def _fold(text: str) -> str:
    """NFKD, combining marks dropped, case folded: "Müller" and "MULLER" become "muller"."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


@lru_cache(maxsize=16_384)
def author_key(name: str) -> AuthorKey | None:
    """The key of `name` ("Given Names Surname" or "Surname, Given Names"); None if no letters."""
    surname_part, comma, given_part = name.partition(",")
    if comma:
        surname_words = _NAME_PART.findall(_fold(surname_part))
        given_words = _NAME_PART.findall(_fold(given_part))
        if not surname_words:
            return None
        # "van der Berg, Anna": the last word of the surname, as for "Anna van der Berg".
        return AuthorKey(
            surname=surname_words[-1], initial=given_words[0][0] if given_words else ""
        )
    words = _NAME_PART.findall(_fold(name))
    if not words:
        return None
    return AuthorKey(surname=words[-1], initial=words[0][0] if len(words) > 1 else "")


@dataclass(frozen=True)
class FollowedAuthors:
    """The names a reader follows, ready to be looked for among a paper's authors."""

    keys: tuple[AuthorKey, ...]
    surnames: frozenset[str]

    def find(self, authors: Sequence[str]) -> str | None:
        """The first of `authors` (as the paper writes it) that a followed name names."""
        for name in authors:
            key = author_key(name)
            if key is None or key.surname not in self.surnames:
                continue
            if any(followed.matches(key) for followed in self.keys):
                return name
        return None


def follow_authors(names: Iterable[str]) -> FollowedAuthors:
    keys = tuple(dict.fromkeys(key for key in map(author_key, names) if key is not None))
    return FollowedAuthors(keys=keys, surnames=frozenset(key.surname for key in keys))
