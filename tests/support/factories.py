"""Readable defaults for test data: override only what a test is about."""

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.delivery.schedule import Schedule
from service.mail.sending import DeliveryError
from service.mail.transport import open_transport
from service.mail.wire import OutgoingMail
from service.models import (
    Digest,
    InterestProfile,
    Interests,
    IssueItem,
    Paper,
    ScoredPaper,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.ranking.text import words_as_written
from service.settings import Settings
from service.store import Store

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)  # a Wednesday
WHY = "Matches “diffusion models”; trending this week."
SIGNUP_FORM = {
    "interests": "diffusion models, graph networks",
    "about": "Fast sampling.",
    "frequency": "weekly",
    "weekday": "2",
    "delivery_hour": "7",
    "time_zone": "Europe/Paris",
    "mix": "40",
}
HOSTILE_TITLES = [
    "Title\r\nBcc: evil@x.test",
    "<script>alert(1)</script> & friends",
    "Quotes \"double\" and 'single' and “curly”",
    "Emoji 🚀 and non-ASCII: Über Čeština 日本語",
    "Long " + "word " * 400,
]


def make_settings(**overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "public_base_url": "https://paperwire.test",
        "secret_key": "test-secret-key",
        "mail_from_name": "Paperwire",
        "mail_from_address": "digest@paperwire.test",
        # No test reaches a public paper source; tests of the sources point them at 127.0.0.1.
        "paper_sources": "none",
        "hf_base_url": "http://127.0.0.1:9",
        "arxiv_base_url": "http://127.0.0.1:9",
    }
    fields.update(overrides)
    return Settings.model_validate(fields)


def make_paper(**overrides: Any) -> Paper:
    fields: dict[str, Any] = {
        "id": "2511.00001",
        "title": "Consistency models for fast diffusion sampling",
        "abstract": (
            "We distil diffusion models into consistency models that sample in one step. "
            "Quality matches multi-step samplers on ImageNet. Code is released. "
            "A fourth sentence never shows."
        ),
        "authors": ("Ada Lovelace", "Grace Hopper"),
        "published_date": date(2026, 11, 24),
        "url": "https://arxiv.org/abs/2511.00001",
        "upvotes": 12,
    }
    fields.update(overrides)
    return Paper.model_validate(fields)


def make_preferences(**overrides: Any) -> SubscriptionPreferences:
    fields: dict[str, Any] = {
        "interests": Interests(keywords=("diffusion models",)),
        "time_zone": "Europe/London",
        "delivery_hour": 8,
        "trending_weight": 0.3,
    }
    fields.update(overrides)
    return SubscriptionPreferences.model_validate(fields)


def make_digest(
    papers: Sequence[Paper] = (),
    *,
    why: str = WHY,
    email: str = "alice@example.org",
    subscriber_id: int = 42,
    issue_date: date = TODAY,
) -> Digest:
    subscriber = Subscriber(
        id=subscriber_id,
        email=email,
        status=SubscriptionStatus.CONFIRMED,
        profiles=(InterestProfile(id=1, interests=Interests(keywords=("diffusion models",))),),
        created_at=NOW - timedelta(days=30),
        link_key="alice-link-key",
    )
    scored = tuple(
        ScoredPaper(paper=paper, score=1.0, relevance=0.8, trending=0.2, why=why)
        for paper in (papers or [make_paper()])
    )
    return Digest(subscriber=subscriber, issue_date=issue_date, papers=scored)


def add_subscriber(
    store: Store,
    email: str = "alice@example.org",
    *,
    status: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
    now: datetime = NOW,
    **overrides: Any,
) -> Subscriber:
    return store.add_subscriber(email, make_preferences(**overrides), status=status, now=now)


def send_issue(
    store: Store,
    subscriber: Subscriber,
    issue_date: date = TODAY,
    *,
    paper_ids: Sequence[str],
    message_id: str = "<m@x>",
    now: datetime = NOW,
    items: Sequence[IssueItem] = (),
) -> None:
    """Plan a confirmed subscriber's issue (with everyone on their schedule), claim it and
    record it sent with `paper_ids` (and their `items`), as a digest run does."""
    store.plan_issues(Schedule.of(subscriber), issue_date, now=now, expires_at=None)
    with store.ledger() as ledger:
        (attempt,) = ledger.claim(
            issue_date, [subscriber.id], now=now, lease=timedelta(minutes=5)
        ).values()
        ledger.record_sent(
            subscriber.id,
            issue_date,
            message_id=message_id,
            paper_ids=paper_ids,
            items=items,
            now=now,
            attempt=attempt,
        )


# Older papers give the corpus statistics a realistic spread: in a store where every paper is
# about diffusion, "diffusion" would carry no information at all.
BACKGROUND_PAPERS = [
    make_paper(id=f"2401.{n:05d}", title=title, abstract=title + ".", upvotes=None)
    for n, title in enumerate(
        [
            "Protein folding with language models",
            "Speech recognition for low-resource languages",
            "Robust control of quadruped robots",
            "Sparse attention for long documents",
            "Federated learning under label shift",
            "Graph neural networks for molecules",
            "Neural radiance fields from a single image",
            "Retrieval augmented question answering",
        ]
    )
]


def title_phrases(papers: Sequence[Paper]) -> list[list[str]]:
    """The words of each paper's title, as written: what `draw_title_phrases` draws from."""
    return [words for paper in papers if (words := words_as_written(paper.title))]


def draw_title_phrases(chooser: random.Random, titles: Sequence[list[str]]) -> tuple[str, ...]:
    """1-3 phrases of 1-3 consecutive title words: interests like real readers type, many of
    them common words ("learning", "neural networks")."""
    phrases = []
    for _ in range(chooser.randint(1, 3)):
        words = chooser.choice(titles)
        length = min(len(words), chooser.randint(1, 3))
        start = chooser.randrange(len(words) - length + 1)
        phrases.append(" ".join(words[start : start + length]))
    return tuple(phrases)


def deliver(settings: Settings, *messages: OutgoingMail) -> list[DeliveryError | None]:
    """Send each message over one transport; the outcome of each, in order."""

    async def run() -> list[DeliveryError | None]:
        outcomes: list[DeliveryError | None] = []
        async with open_transport(settings) as transport:
            for message in messages:
                try:
                    await transport.send(message)
                    outcomes.append(None)
                except DeliveryError as exc:
                    outcomes.append(exc)
        return outcomes

    return asyncio.run(run())
