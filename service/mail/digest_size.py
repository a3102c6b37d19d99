"""A digest email kept under a size: Gmail clips messages past about 102 KB, hiding the rest of
the issue and its unsubscribe link, so a long issue goes out with fewer papers instead.

Most issues fit at once, and cost one rendering and a length check. One that does not is
measured once more with only its first paper, which tells what a paper costs on average and
what the rest of the message costs; each paper's share is weighed by the length of what it
shows. The lowest-ranked papers, from the end of the longest sections, are left out until the
estimate fits; the result is rendered and checked, and the estimate made again from it while
it is still too large.
"""

from datetime import datetime

from service.mail.compose import compose_digest, paper_view
from service.mail.wire import OutgoingMail
from service.models import Digest, DigestSection, ScoredPaper
from service.settings import Settings

# Bytes a DKIM-Signature header adds to a message on its way out (an RSA-2048 signature with
# its tags is about 500).
DKIM_HEADER_BYTES = 1_000
# What a paper's card costs besides its text (markup with inlined styles, its feedback links):
# about what a card with a short title and no snippet takes in the two parts.
CARD_BYTES = 1_500


def compose_digest_within(
    digest: Digest, *, settings: Settings, now: datetime | None = None
) -> tuple[Digest, OutgoingMail]:
    """The issue's email within `settings.digest_max_bytes` as sent, and the digest it holds:
    `digest` itself, or one with its lowest-ranked papers left out (the ledger records what
    was sent). A single paper always goes."""
    budget = settings.digest_max_bytes - (DKIM_HEADER_BYTES if settings.dkim_selector else 0)
    mail = compose_digest(digest, settings=settings, now=now)
    if len(mail.data) <= budget or len(digest.papers) == 1:
        return digest, mail
    # The first paper is never left out: this stays what one paper and the rest cost.
    single = len(compose_digest(_first_paper_only(digest), settings=settings, now=now).data)
    while len(mail.data) > budget and len(digest.papers) > 1:
        total = len(mail.data)
        digest = _without_papers(digest, over=total - budget, total=total, single=single)
        mail = compose_digest(digest, settings=settings, now=now)
    return digest, mail


def _without_papers(digest: Digest, *, over: int, total: int, single: int) -> Digest:
    """`digest` less the lowest-ranked papers whose estimated bytes make up `over` (one at
    least): from the end of the longest section, the later one of equally long sections."""
    papers = digest.papers
    weights = {scored.paper.id: _weight(scored) for scored in papers}
    # What the papers after the first add: spread over them by weight.
    per_weight = max(total - single, 1) / max(
        sum(weights.values()) - weights[papers[0].paper.id], 1
    )
    sections = [list(section.papers) for section in digest.sections]
    freed = 0.0
    while freed < over and sum(map(len, sections)) > 1:
        longest = max(range(len(sections)), key=lambda number: (len(sections[number]), number))
        dropped = sections[longest].pop()
        freed += weights[dropped.paper.id] * per_weight
    return digest.model_copy(
        update={
            "sections": tuple(
                DigestSection(name=section.name, profile_id=section.profile_id, papers=tuple(kept))
                for section, kept in zip(digest.sections, sections, strict=True)
                if kept
            )
        }
    )


def _first_paper_only(digest: Digest) -> Digest:
    first = digest.sections[0]
    return digest.model_copy(
        update={"sections": (first.model_copy(update={"papers": first.papers[:1]}),)}
    )


def _weight(scored: ScoredPaper) -> float:
    """What a paper shows, in bytes, with its card: each text appears in both parts."""
    view = paper_view(scored.paper)
    shown = (
        view.title,
        view.snippet,
        view.meta,
        view.counts,
        scored.why,
        view.url or "",
        *(link.url for link in view.links),
    )
    return CARD_BYTES + 2 * sum(len(text.encode()) for text in shown)
