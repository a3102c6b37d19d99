"""The one path a digest takes: plan → claim → rank → render → send → record."""

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from enum import StrEnum

from service.emails import compose_digest, render_digest
from service.models import Digest, Paper, ReadingHistory, Subscriber, SubscriptionStatus
from service.ranking import (
    PreparedCandidates,
    build_corpus_stats,
    prepare_candidates,
    rank_prepared,
)
from service.ratelimit import SendRateLimiter
from service.settings import Settings
from service.store import Store
from service.transport import DeliveryError, MailTransport, open_transport

# A digest brings news: papers first seen more than a week before the issue are never candidates,
# however long a subscriber has gone without an issue.
LOOKBACK = timedelta(days=7)


# Replies that say the mailbox does not exist or cannot be used: a hard bounce.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})


def retry_delay(
    subscriber_id: int, issue_date: date, attempt: int, *, settings: Settings
) -> timedelta:
    """Exponential backoff with jitter, so a relay's bad minute is not retried in one burst.

    The jitter is derived from the issue, not drawn at random: the same attempt of the same
    issue always waits the same time, which keeps runs and tests repeatable.
    """
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1))
    digest = hashlib.blake2b(f"{subscriber_id}:{issue_date}:{attempt}".encode(), digest_size=4)
    spread = int.from_bytes(digest.digest(), "big") / 2**32
    return timedelta(seconds=ceiling * (0.5 + 0.5 * spread))


class Outcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped-empty"
    RETRY = "retry"
    FAILED = "failed"
    IN_DOUBT = "in-doubt"
    ALREADY_HANDLED = "already-handled"
    WOULD_SEND = "would-send"


@dataclass(frozen=True)
class DayPapers:
    """What a day's issues are ranked from: the recent papers, analysed once for everyone."""

    recent: Sequence[Paper]
    prepared: PreparedCandidates

    def seen_by(self, history: ReadingHistory) -> frozenset[str]:
        """Papers this subscriber has, or had the chance to get: sent, or older than their
        last issue (a paper passed over then is not news now)."""
        since = history.last_sent_at
        if since is None:
            return history.sent_paper_ids
        older = {
            p.id for p in self.recent if p.first_seen_at is not None and p.first_seen_at <= since
        }
        return history.sent_paper_ids | older


@dataclass
class RunSummary:
    issue_date: date
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def issue_window_end(issue_date: date) -> datetime:
    """Papers first seen after the end of the issue date (UTC) belong to later issues."""
    return datetime.combine(issue_date + timedelta(days=1), time(), tzinfo=UTC)


def load_day_papers(store: Store, issue_date: date) -> DayPapers:
    end = issue_window_end(issue_date)
    recent = store.list_papers(seen_since=end - LOOKBACK, seen_before=end)
    # Term statistics come from everything stored, so a rare term stays rare on a busy day.
    stats = build_corpus_stats(store.list_papers())
    prepared = prepare_candidates(recent, stats=stats, today=issue_date)
    return DayPapers(recent=recent, prepared=prepared)


def build_digest(
    subscriber: Subscriber,
    day: DayPapers,
    *,
    issue_date: date,
    history: ReadingHistory,
    limit: int,
) -> Digest:
    """Rank the subscriber's candidate papers; pure apart from the data passed in."""
    ranked = rank_prepared(
        day.prepared,
        subscriber.interests,
        trending_weight=subscriber.trending_weight,
        limit=limit,
        exclude_ids=day.seen_by(history),
    )
    return Digest(subscriber=subscriber, issue_date=issue_date, papers=tuple(ranked))


def preview_digest(
    store: Store, subscriber: Subscriber, issue_date: date, *, settings: Settings
) -> tuple[Digest, EmailMessage]:
    """Build and render an issue without sending it or touching the ledger."""
    day = load_day_papers(store, issue_date)
    digest = _digest_for(store, subscriber, day, issue_date=issue_date, settings=settings)
    return digest, render_digest(digest, settings=settings)


async def deliver_digest(
    store: Store,
    transport: MailTransport,
    subscriber: Subscriber,
    day: DayPapers,
    *,
    issue_date: date,
    settings: Settings,
    now: Callable[[], datetime],
    limiter: SendRateLimiter | None = None,
    history: ReadingHistory | None = None,
) -> tuple[Outcome, str | None]:
    """Send one issue at most once; the ledger, not the caller, decides whether to send."""
    attempt = store.claim_issue(
        subscriber.id,
        issue_date,
        now=now(),
        lease=claim_lease(settings),
        max_attempts=settings.max_attempts,
    )
    if attempt is None:
        return Outcome.ALREADY_HANDLED, None
    if history is None:
        history = store.reading_history([subscriber.id], before=issue_date)[subscriber.id]
    digest = build_digest(
        subscriber, day, issue_date=issue_date, history=history, limit=settings.digest_size
    )
    if not digest.papers:
        store.record_skipped(subscriber.id, issue_date, now=now())
        return Outcome.SKIPPED, None
    try:
        mail = compose_digest(digest, settings=settings)
    except ValueError as exc:
        # An address that cannot be put in a header safely will not become sendable later.
        store.record_failure(subscriber.id, issue_date, error=str(exc), now=now())
        return Outcome.FAILED, str(exc)

    def before_data() -> None:
        store.mark_data_started(subscriber.id, issue_date, now=now())

    if limiter is not None:
        await limiter.acquire()
    try:
        await transport.send(mail, before_data=before_data)
    except DeliveryError as exc:
        if exc.in_doubt and not settings.resend_in_doubt:
            store.record_in_doubt(
                subscriber.id,
                issue_date,
                message_id=mail.message_id,
                error=str(exc),
                now=now(),
            )
            return Outcome.IN_DOUBT, str(exc)
        if exc.permanent:
            store.record_failure(
                subscriber.id,
                issue_date,
                error=str(exc),
                now=now(),
                hard_bounce=exc.smtp_code in HARD_BOUNCE_CODES,
                suppress_after_bounces=settings.hard_bounce_limit,
            )
            return Outcome.FAILED, str(exc)
        retry_at = now() + retry_delay(subscriber.id, issue_date, attempt, settings=settings)
        store.record_failure(
            subscriber.id, issue_date, error=str(exc), now=now(), retry_at=retry_at
        )
        return Outcome.RETRY, str(exc)
    store.record_sent(
        subscriber.id,
        issue_date,
        message_id=mail.message_id,
        paper_ids=[scored.paper.id for scored in digest.papers],
        now=now(),
    )
    return Outcome.SENT, None


async def run_day(
    store: Store,
    *,
    issue_date: date,
    settings: Settings,
    dry_run: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Deliver the issue of `issue_date` to every confirmed subscriber due that day."""
    subscribers = store.due_subscribers(issue_date)
    if not dry_run:
        keys = [(subscriber.id, issue_date) for subscriber in subscribers]
        return await deliver_batch(store, keys, settings=settings, now=now, on_progress=on_progress)
    day = load_day_papers(store, issue_date)
    summary = RunSummary(issue_date=issue_date)
    histories = store.reading_history([s.id for s in subscribers], before=issue_date)
    for done, subscriber in enumerate(subscribers, start=1):
        digest = build_digest(
            subscriber,
            day,
            issue_date=issue_date,
            history=histories[subscriber.id],
            limit=settings.digest_size,
        )
        summary.outcomes[Outcome.WOULD_SEND if digest.papers else Outcome.SKIPPED] += 1
        if on_progress is not None:
            on_progress(done, len(subscribers))
    return summary


async def deliver_batch(
    store: Store,
    keys: Sequence[tuple[int, date]],
    *,
    settings: Settings,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Deliver planned issues over one mail connection; safe to run twice."""
    summary = RunSummary(issue_date=min((day for _, day in keys), default=now().date()))
    subscribers = store.get_subscribers([subscriber_id for subscriber_id, _ in keys])
    done = 0
    if on_progress is not None:
        on_progress(done, len(keys))
    async with open_transport(settings) as transport, rate_limiter(settings) as limiter:
        for issue_date, subscriber_ids in _by_issue_date(keys).items():
            day = load_day_papers(store, issue_date)
            # One query for all of the day's subscribers, not one per subscriber.
            histories = store.reading_history(subscriber_ids, before=issue_date)
            # Claimed one by one, just before each is sent: an issue's attempts then count
            # only its own tries, never those of a neighbour that kept killing the worker.
            for subscriber_id in subscriber_ids:
                subscriber = subscribers.get(subscriber_id)
                outcome, error = await _deliver_planned(
                    store,
                    transport,
                    subscriber,
                    day,
                    issue_date=issue_date,
                    history=histories[subscriber_id],
                    settings=settings,
                    now=now,
                    limiter=limiter,
                )
                summary.outcomes[outcome] += 1
                if error is not None and subscriber is not None:
                    summary.errors[subscriber.email] = error
                done += 1
                if on_progress is not None:
                    on_progress(done, len(keys))
    return summary


async def _deliver_planned(
    store: Store,
    transport: MailTransport,
    subscriber: Subscriber | None,
    day: DayPapers,
    *,
    issue_date: date,
    history: ReadingHistory,
    settings: Settings,
    now: Callable[[], datetime],
    limiter: SendRateLimiter | None,
) -> tuple[Outcome, str | None]:
    if subscriber is None:
        return Outcome.ALREADY_HANDLED, None  # erased since planning, ledger rows with them
    if subscriber.status is not SubscriptionStatus.CONFIRMED:
        # Left or suppressed since the issue was planned: nothing goes out.
        if store.claim_issue(subscriber.id, issue_date, now=now(), lease=claim_lease(settings)):
            store.record_skipped(subscriber.id, issue_date, now=now())
        return Outcome.SKIPPED, None
    return await deliver_digest(
        store,
        transport,
        subscriber,
        day,
        issue_date=issue_date,
        settings=settings,
        now=now,
        limiter=limiter,
        history=history,
    )


def claim_lease(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.claim_lease_seconds)


def _by_issue_date(keys: Sequence[tuple[int, date]]) -> dict[date, list[int]]:
    grouped: dict[date, list[int]] = {}
    for subscriber_id, issue_date in keys:
        grouped.setdefault(issue_date, []).append(subscriber_id)
    return grouped


@asynccontextmanager
async def rate_limiter(settings: Settings) -> AsyncIterator[SendRateLimiter | None]:
    """The shared send-rate limit when one is configured; none otherwise (no Redis needed)."""
    if settings.mail_rate_per_second <= 0:
        yield None
        return
    limiter = SendRateLimiter(
        settings.redis_url,
        rate_per_second=settings.mail_rate_per_second,
        burst=settings.mail_rate_burst,
    )
    try:
        yield limiter
    finally:
        await limiter.close()


def _digest_for(
    store: Store, subscriber: Subscriber, day: DayPapers, *, issue_date: date, settings: Settings
) -> Digest:
    history = store.reading_history([subscriber.id], before=issue_date)[subscriber.id]
    return build_digest(
        subscriber, day, issue_date=issue_date, history=history, limit=settings.digest_size
    )
