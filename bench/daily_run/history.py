"""Earlier days, as the scheduled path would have left them, written in bulk before the measured
day: a store on its thirty-first day, not its first.

For each of the N days before today, oldest first: that day's new papers (copies of the sample
papers under ids of their own, first seen an hour before that day's sending), and for every
daily subscriber a `sent` ledger row of 10 of those papers, with its items, message id and
timestamps as `Ledger.record_sent` leaves them. After them, some feedback and bounces: every
fifth subscriber has liked one paper it was sent every third day, every tenth has disliked one
every fifth day (within the store's cap on votes), and one in a hundred had a soft bounce (one
`mail_events` row and half a point of bounce score: still below the limit, still due).

All of it goes in with executemany in chunks, one transaction per day of ledger rows: tens of
thousands of rows a second, where N real runs would take N times the measured run. On
PostgreSQL a `VACUUM ANALYZE` ends it, as autovacuum would have over those days."""

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, text, update

from bench.daily_run.harness import INSERT_CHUNK, day_papers, log
from service.models import (
    DEFAULT_PAPERS_PER_ISSUE,
    MAX_PAPER_VOTES,
    DeliveryStatus,
    MailEventKind,
    Paper,
)
from service.store import Store
from service.store.tables import DeliveryRow, MailEventRow, ProfileRow, SubscriberRow

LIKE_EVERY_NTH_SUBSCRIBER, LIKE_EVERY_NTH_DAY = 5, 3
DISLIKE_EVERY_NTH_SUBSCRIBER, DISLIKE_EVERY_NTH_DAY = 10, 5
BOUNCE_EVERY_NTH_SUBSCRIBER = 100
SOFT_BOUNCE_SCORE = 0.5


@dataclass(frozen=True)
class HistoryCounts:
    days: int
    papers: int
    ledger_rows: int
    votes: int
    bounces: int
    seconds: float


def papers_of_day(
    papers: Sequence[Paper], days_ago: int, *, first_seen_at: datetime
) -> list[Paper]:
    """The day's papers under ids of that day, so every day brings new ones."""
    return [
        paper.model_copy(update={"id": f"{paper.id}-d{days_ago}", "first_seen_at": first_seen_at})
        for paper in papers
    ]


def sent_rows(
    subscriber_ids: Sequence[int],
    paper_ids: Sequence[str],
    issue_date: date,
    *,
    sent_at: datetime,
) -> list[dict[str, Any]]:
    """One `sent` row per subscriber: 10 of the day's papers, a different run of them for each
    subscriber, as record_sent writes them after claim and data_started."""
    count = min(DEFAULT_PAPERS_PER_ISSUE, len(paper_ids))
    rows = []
    for position, subscriber_id in enumerate(subscriber_ids):
        start = (position * 7) % len(paper_ids)
        picked = [paper_ids[(start + k) % len(paper_ids)] for k in range(count)]
        rows.append(
            {
                "subscriber_id": subscriber_id,
                "issue_date": issue_date,
                "status": DeliveryStatus.SENT.value,
                "message_id": f"<{issue_date.isoformat()}.{subscriber_id}@bench.paperwire.test>",
                "paper_ids": picked,
                "items": [{"paper_id": paper_id, "why": "", "section": ""} for paper_id in picked],
                "attempts": 1,
                "last_error": None,
                "lease_expires_at": None,
                "next_attempt_at": None,
                "expires_at": sent_at + timedelta(hours=6),
                "enqueued_at": sent_at - timedelta(seconds=1),
                "data_started_at": sent_at,
                "created_at": sent_at - timedelta(seconds=2),
                "updated_at": sent_at,
                "sent_at": sent_at,
                "in_doubt_count": 0,
            }
        )
    return rows


def seed_history(
    store: Store,
    subscriber_ids: Sequence[int],
    *,
    days: int,
    papers_per_day: int,
    now: datetime,
    seed: int,
) -> HistoryCounts:
    """`days` earlier days for these (daily) subscribers, the oldest first, ending yesterday."""
    started = time.perf_counter()
    sample = day_papers(papers_per_day)
    liked: dict[int, list[str]] = {}
    disliked: dict[int, list[str]] = {}
    ledger_rows = 0
    for days_ago in range(days, 0, -1):
        sent_at = now - timedelta(days=days_ago)
        papers = papers_of_day(sample, days_ago, first_seen_at=sent_at - timedelta(hours=1))
        store.upsert_papers(papers, now=sent_at - timedelta(hours=1))
        paper_ids = [paper.id for paper in papers]
        rows = sent_rows(subscriber_ids, paper_ids, sent_at.date(), sent_at=sent_at)
        with store.engine.begin() as connection:
            for start in range(0, len(rows), INSERT_CHUNK):
                connection.execute(insert(DeliveryRow), rows[start : start + INSERT_CHUNK])
        ledger_rows += len(rows)
        for position, subscriber_id in enumerate(subscriber_ids):
            first_sent = rows[position]["paper_ids"][0]
            if position % LIKE_EVERY_NTH_SUBSCRIBER == 0 and days_ago % LIKE_EVERY_NTH_DAY == 0:
                liked.setdefault(subscriber_id, []).append(first_sent)
            if (
                position % DISLIKE_EVERY_NTH_SUBSCRIBER == 1
                and days_ago % DISLIKE_EVERY_NTH_DAY == 0
            ):
                disliked.setdefault(subscriber_id, []).append(rows[position]["paper_ids"][-1])
    votes = _write_votes(store, liked, disliked)
    bounces = _write_bounces(store, subscriber_ids, days=days, now=now, seed=seed)
    _vacuum(store)
    counts = HistoryCounts(
        days=days,
        papers=days * len(sample),
        ledger_rows=ledger_rows,
        votes=votes,
        bounces=bounces,
        seconds=time.perf_counter() - started,
    )
    log(
        f"history: {counts.days} days, {counts.papers} papers, {counts.ledger_rows} ledger "
        f"rows, {counts.votes} votes, {counts.bounces} bounces in {counts.seconds:.1f} s"
    )
    return counts


def _vacuum(store: Store) -> None:
    """What autovacuum would have done in the days the history stands for: a store written in
    minutes would otherwise be vacuumed and analysed during the measured day."""
    if store.url.get_backend_name() != "postgresql":
        return
    with store.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def _write_votes(store: Store, liked: dict[int, list[str]], disliked: dict[int, list[str]]) -> int:
    """The votes on each subscriber's one profile, the newest kept under the store's cap."""
    updates: list[dict[str, Any]] = [
        {
            "subscriber": subscriber_id,
            "liked": liked.get(subscriber_id, [])[-MAX_PAPER_VOTES:],
            "disliked": disliked.get(subscriber_id, [])[-MAX_PAPER_VOTES:],
        }
        for subscriber_id in sorted(liked.keys() | disliked.keys())
    ]
    statement = (
        update(ProfileRow)
        .where(ProfileRow.subscriber_id == bindparam("subscriber"))
        .values(liked_papers=bindparam("liked"), disliked_papers=bindparam("disliked"))
    )
    with store.engine.begin() as connection:
        for start in range(0, len(updates), INSERT_CHUNK):
            connection.execute(statement, updates[start : start + INSERT_CHUNK])
    return sum(len(row["liked"]) + len(row["disliked"]) for row in updates)


def _write_bounces(
    store: Store, subscriber_ids: Sequence[int], *, days: int, now: datetime, seed: int
) -> int:
    """A soft bounce on a drawn earlier day for one subscriber in a hundred, and its score."""
    chooser = random.Random(seed)
    bounced = subscriber_ids[::BOUNCE_EVERY_NTH_SUBSCRIBER]
    events = [
        {
            "subscriber_id": subscriber_id,
            "at": (at := now - timedelta(days=chooser.randint(1, days), minutes=-5)),
            "kind": MailEventKind.SOFT_BOUNCE.value,
            "via": "dsn",
            "issue_date": at.date(),
            "status_code": "4.2.2",
            "detail": "mailbox full",
        }
        for subscriber_id in bounced
    ]
    scores = [{"subscriber": subscriber_id} for subscriber_id in bounced]
    with store.engine.begin() as connection:
        if events:
            connection.execute(insert(MailEventRow), events)
            connection.execute(
                update(SubscriberRow)
                .where(SubscriberRow.id == bindparam("subscriber"))
                .values(bounce_score=SOFT_BOUNCE_SCORE),
                scores,
            )
    return len(events)
