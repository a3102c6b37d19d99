"""Text analysis shared by indexing and queries: tokens, stop words, Snowball stems."""

import re
from functools import lru_cache

import snowballstemmer

# The Snowball project's English stop list, plus the fragments that splitting on apostrophes
# and dots leaves behind ("s" from "model's", "don" from "don't", "e", "g" from "e.g.").
# Research vocabulary ("model", "learning") stays in: inverse document frequency already
# discounts words that every paper uses.
_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other ought our ours
    ourselves out over own same shall she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    e g s t d ll m re ve via etc don doesn didn isn aren wasn weren won wouldn shouldn couldn
    hasn haven hadn
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

# Letters and digits of any script; punctuation, hyphens and underscores split words, so
# "score-based" becomes "score", "based" in papers and queries alike.
_WORD = re.compile(r"[^\W_]+")

# "GNNs", "LLMs": Snowball keeps the "s" of a vowel-less word, so strip an acronym's plural
# while the original capitals still show it is one.
_ACRONYM_PLURAL = re.compile(r"[A-Z0-9]*[A-Z][A-Z0-9]*s")


def words_as_written(text: str) -> list[str]:
    """Words of `text` as written, without stop words, in order (for showing to people)."""
    return [word for word in _WORD.findall(text) if word.lower() not in STOP_WORDS]


def normalise_word(word: str) -> str:
    """Lower-case `word`, making an acronym's plural ("GNNs") singular."""
    if len(word) > 2 and _ACRONYM_PLURAL.fullmatch(word):
        word = word[:-1]
    return word.lower()


def content_words(text: str) -> list[str]:
    """Normalised words of `text` without stop words, in order: `normalise_word` of each of
    `words_as_written`, in one pass. Every paper of a day is analysed in every worker process,
    and a voted paper of any day too, so this runs for each word of them."""
    words = []
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower in STOP_WORDS:
            continue
        # Only a word ending in "s" with a capital can be an acronym's plural.
        if lower != word and word[-1] == "s" and len(word) > 2 and _ACRONYM_PLURAL.fullmatch(word):
            lower = lower[:-1]
        words.append(lower)
    return words


# Words Snowball stems alike that this field keeps apart: "continual learning" is not
# "continuous control", an "experiment" is not "experience". Snowball's stem -> (start of
# the word, the stem it keeps instead); every inflection of such a word has that start.
_KEPT_APART: dict[str, tuple[tuple[str, str], ...]] = {
    "continu": (("continual", "continual"),),
    "experi": (("experiment", "experiment"),),
}


# Pure-Python Snowball costs tens of microseconds a word; a corpus repeats a small vocabulary.
@lru_cache(maxsize=200_000)
def stem_word(word: str) -> str:
    # A fresh stemmer per miss: stemmer objects keep per-call state, so sharing one across
    # threads would be unsafe, and creating one costs about a microsecond.
    stem: str = snowballstemmer.stemmer("english").stemWord(word)
    for prefix, own_stem in _KEPT_APART.get(stem, ()):
        if word.startswith(prefix):
            return own_stem
    return stem


def analyse_text(text: str) -> tuple[str, ...]:
    """Stems of the content words of `text`, in order (positions are used for phrases)."""
    return tuple(map(stem_word, content_words(text)))
