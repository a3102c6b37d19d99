"""Readable defaults for test data: override only what a test is about."""

from datetime import UTC, date, datetime
from typing import Any

from service.models import (
    Interests,
    Paper,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.store import Store

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)


def make_paper(**overrides: Any) -> Paper:
    fields: dict[str, Any] = {
        "id": "2511.00001",
        "title": "Consistency models for fast diffusion sampling",
        "abstract": (
            "We distil diffusion models into consistency models that sample in one step. "
            "Quality matches multi-step samplers on ImageNet. Code is released."
        ),
        "authors": ("Ada Lovelace", "Grace Hopper"),
        "published_date": date(2026, 11, 24),
        "url": "https://arxiv.org/abs/2511.00001",
        "upvotes": 12,
    }
    fields.update(overrides)
    return Paper(**fields)


def make_preferences(**overrides: Any) -> SubscriptionPreferences:
    fields: dict[str, Any] = {
        "interests": Interests(keywords=("diffusion models",)),
        "time_zone": "Europe/London",
        "delivery_hour": 8,
        "trending_weight": 0.3,
    }
    fields.update(overrides)
    return SubscriptionPreferences(**fields)


def add_subscriber(
    store: Store,
    email: str = "alice@example.org",
    *,
    status: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
    now: datetime = NOW,
    **overrides: Any,
) -> Subscriber:
    return store.add_subscriber(email, make_preferences(**overrides), status=status, now=now)
