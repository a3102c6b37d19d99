"""`paperwire demo`: a fresh store in ./var with the sample papers and five subscribers (one of
them with two interest profiles), and today's issues written to a file outbox."""

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import counted, open_store, out
from service.cli.digest import run_day_with_progress
from service.cli.papers import import_papers_file
from service.models import (
    Interests,
    ProfilePreferences,
    SubscriptionPreferences,
    SubscriptionStatus,
)

SAMPLE_PAPERS = Path(__file__).parent.parent / "sample_data" / "papers.jsonl"

DEMO_SUBSCRIBERS: tuple[tuple[str, SubscriptionPreferences], ...] = (
    (
        "ada@example.org",
        SubscriptionPreferences(
            interests=Interests(keywords=("diffusion models", "consistency models")),
            time_zone="Europe/London",
            trending_weight=0.2,
        ),
    ),
    (
        "grace@example.org",
        SubscriptionPreferences(
            interests=Interests(
                keywords=("reinforcement learning from human feedback", "preference optimization"),
                text="Aligning language models with what people want.",
            ),
            time_zone="America/New_York",
            trending_weight=0.4,
        ),
    ),
    (
        "alan@example.org",
        SubscriptionPreferences(
            interests=Interests(keywords=("graph neural networks", "recommender systems")),
            time_zone="Asia/Tokyo",
            trending_weight=0.0,
        ),
    ),
    (
        "katherine@example.org",
        SubscriptionPreferences(time_zone="America/Los_Angeles", trending_weight=1.0),
    ),
    (
        "edsger@example.org",
        SubscriptionPreferences(
            interests=Interests(
                keywords=("continual learning", "catastrophic forgetting", "robot learning")
            ),
            time_zone="Europe/Amsterdam",
            trending_weight=0.5,
        ),
    ),
)

# Second profiles: their readers' issues have a section each.
DEMO_PROFILES: tuple[tuple[str, ProfilePreferences], ...] = (
    (
        "grace@example.org",
        ProfilePreferences(
            name="Agents",
            interests=Interests(keywords=("language agents", "tool use")),
            papers_per_issue=5,
        ),
    ),
)


def demo(
    var_dir: Annotated[Path, typer.Option("--var", help="Folder for the demo's state.")] = Path(
        "var"
    ),
) -> None:
    """Fresh store in ./var, sample papers and subscribers, today's run into the outbox."""
    from service.settings import get_settings

    database = var_dir / "paperwire.db"
    outbox = var_dir / "outbox"
    for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(outbox, ignore_errors=True)
    settings = get_settings().model_copy(
        update={"database_url": f"sqlite:///{database}", "mail_url": f"file://{outbox}"}
    )
    with open_store(settings) as store:
        store.upgrade()
        now = datetime.now(UTC)
        import_papers_file(store, SAMPLE_PAPERS, now=now)
        for email, preferences in DEMO_SUBSCRIBERS:
            store.add_subscriber(email, preferences, status=SubscriptionStatus.CONFIRMED, now=now)
        for email, profile in DEMO_PROFILES:
            subscriber = store.find_subscriber(email)
            store.add_profile(subscriber.id, profile, max_profiles=settings.max_profiles, now=now)
        out.print(f"{counted(len(DEMO_SUBSCRIBERS), 'sample subscriber')} added")
        run_day_with_progress(store, settings, now.date(), dry_run=False)
    out.print(f"open {(outbox / 'index.html').resolve()}")
