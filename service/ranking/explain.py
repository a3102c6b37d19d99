"""The line saying why a paper was picked, naming the signal that picked it: a keyword in the
subscriber's own words ("Matches “diffusion models”"), a paper they liked ("Like '…' you
liked", in curly quotes), an author they follow ("By … you follow"), or trending
("Trending: 210 upvotes")."""

from collections.abc import Sequence

from service.models import Paper
from service.ranking.relevance import WeightedClause
from service.ranking.terms import Clause, PaperTerms

MAX_WHY_LENGTH = 120
MAX_LABEL_LENGTH = 60
MIN_LABEL_LENGTH = 20
MAX_WORDS_SHOWN = 3
MAX_VIA_LENGTH = 40


def find_matches(
    clause_scores: Sequence[tuple[WeightedClause, float]], terms: PaperTerms
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Keywords found intact (as typed, or as a thesaurus heading writes them: see `shown`),
    then other matched words (as typed), best first."""
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
    return tuple(shown(clause) for clause in intact), tuple(words.values())


def shown(clause: Clause) -> str:
    """A clause as the why-line quotes it: a thesaurus heading's term names the reader's
    phrase that led to it, so the reader sees why their words matched a paper's."""
    if not clause.via:
        return clause.label
    return f"{clause.label}” for your “{_shorten(clause.via, MAX_VIA_LENGTH)}"


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


def explain_liked(liked_title: str, paper: Paper) -> str:
    """'Like '<the liked paper's title, shortened>' you liked' (curly quotes), then trending
    figures."""
    return _explain_signal("Like \u2018{}\u2019 you liked", liked_title, paper)


def explain_author(author: str, paper: Paper) -> str:
    """'By <the author, as the paper names them> you follow', then trending figures."""
    return _explain_signal("By {} you follow", author, paper)


def _explain_signal(template: str, label: str, paper: Paper) -> str:
    signals = _describe_signals(paper)
    suffix = f" · trending: {signals}" if signals else ""
    label = " ".join(label.split())
    shown = _shorten(label, MAX_LABEL_LENGTH)
    excess = len(template.format(shown) + suffix) - MAX_WHY_LENGTH
    if excess > 0:
        # Shorten the label rather than cut the trending figures.
        shown = _shorten(label, max(MIN_LABEL_LENGTH, len(shown) - excess))
    return _shorten(template.format(shown) + suffix, MAX_WHY_LENGTH)


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
