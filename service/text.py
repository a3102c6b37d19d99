"""Text analysis shared by indexing and queries: tokens, stop words, Snowball stems."""

import re
from functools import lru_cache

import snowballstemmer

# The Snowball project's English stop list, plus a few single letters that tokenising leaves
# behind ("s" from "model's", "e" from "e.g."). Research vocabulary ("model", "learning") stays
# in: inverse document frequency already discounts words that every paper uses.
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other ought our ours
    ourselves out over own same shall she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    e g s t via etc
    """.split()
)

# Letters and digits of any script; punctuation, hyphens and underscores split words, so
# "score-based" becomes "score", "based" in papers and queries alike.
_WORD = re.compile(r"[^\W_]+")

# "GNNs", "LLMs": Snowball keeps the "s" of a vowel-less word, so strip an acronym's plural
# while the original capitals still show it is one.
_ACRONYM_PLURAL = re.compile(r"[A-Z0-9]*[A-Z][A-Z0-9]*s")


def split_words(text: str) -> list[str]:
    """Lower-cased words of `text`, acronym plurals made singular, stop words kept."""
    words = []
    for match in _WORD.finditer(text):
        word = match.group()
        if len(word) > 2 and _ACRONYM_PLURAL.fullmatch(word):
            word = word[:-1]
        words.append(word.lower())
    return words


def content_words(text: str) -> list[str]:
    """Lower-cased words of `text` without stop words, in order."""
    return [word for word in split_words(text) if word not in STOP_WORDS]


# Pure-Python Snowball costs tens of microseconds a word; a corpus repeats a small vocabulary.
@lru_cache(maxsize=200_000)
def stem_word(word: str) -> str:
    # A fresh stemmer per miss: stemmer objects keep per-call state, so sharing one across
    # threads would be unsafe, and creating one costs about a microsecond.
    stem: str = snowballstemmer.stemmer("english").stemWord(word)
    return stem


def analyse_text(text: str) -> tuple[str, ...]:
    """Stems of the content words of `text`, in order (positions are used for phrases)."""
    return tuple(stem_word(word) for word in content_words(text))
