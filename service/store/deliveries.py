"""The store's side of the delivery ledger: planning issues, noting what went to the broker,
finding what the sweep must enqueue again, reopening finished issues, and reading the ledger
back (its rows, counts per status, each subscriber's reading history and archive). Claims
and outcomes are the `Ledger`'s."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import (
    JSON,
    ColumnElement,
    Date,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)

from service.delivery.schedule import Schedule
from service.models import (
    ARCHIVED_STATUSES,
    Delivery,
    DeliveryStatus,
    ReadingHistory,
    SubscriptionStatus,
)
from service.store.database import Database, insert_with_conflicts
from service.store.rows import to_delivery
from service.store.tables import DeliveryRow, SubscriberRow, UtcDateTime

# Planning at least this many issues at once refreshes the ledger's statistics (PostgreSQL).
ANALYZE_AFTER_PLANNING = 1000

# How far back, in issue dates, the sweep looks for issues left waiting.
SWEEP_LOOKBACK = timedelta(days=14)

# One UPDATE per issue date, with the ids of that date as one parameter.
_MARK_ENQUEUED = (
    update(DeliveryRow)
    .where(
        DeliveryRow.issue_date == bindparam("day"),
        DeliveryRow.subscriber_id.in_(bindparam("ids", expanding=True)),
    )
    .values(enqueued_at=bindparam("now"))
)


@dataclass(frozen=True)
class LedgerOverview:
    """The ledger at a glance, for the metrics: today's issues by status, and over the recent
    issue dates asked for, the retries, the issues in doubt and since when the oldest claimable
    issue has waited (planned, or a retry whose time has come); None if none waits."""

    today: dict[DeliveryStatus, int]
    retry: int
    in_doubt: int
    oldest_due_at: datetime | None


@dataclass(frozen=True)
class SweepCandidate:
    """An issue the sweep may have to enqueue again. `maybe_queued`: it was enqueued for what
    it waits for now (its plan, or this retry), so its batch may still be in the broker."""

    subscriber_id: int
    issue_date: date
    enqueued_at: datetime | None
    maybe_queued: bool

    @property
    def key(self) -> tuple[int, date]:
        return (self.subscriber_id, self.issue_date)


class DeliveryStore(Database):
    """Issues in the delivery ledger, one row per (subscriber, issue date)."""

    def plan_issues(
        self,
        schedule: Schedule,
        issue_date: date,
        *,
        now: datetime,
        expires_at: datetime | None,
    ) -> list[int]:
        """Add a planned ledger row for every confirmed subscriber on `schedule` who has none
        for `issue_date`; return their ids. Rows that exist are left alone, so a second tick or
        a second beat plans nothing twice."""
        on_schedule = select(
            SubscriberRow.id,
            literal(issue_date, Date).label("issue_date"),
            literal(DeliveryStatus.PLANNED.value).label("status"),
            literal([], JSON).label("paper_ids"),
            literal(0).label("attempts"),
            literal(expires_at, UtcDateTime()).label("expires_at"),
            literal(now, UtcDateTime()).label("created_at"),
            literal(now, UtcDateTime()).label("updated_at"),
        ).where(
            SubscriberRow.status == SubscriptionStatus.CONFIRMED,
            SubscriberRow.time_zone == schedule.time_zone,
            SubscriberRow.delivery_hour == schedule.delivery_hour,
            SubscriberRow.frequency == schedule.frequency,
            SubscriberRow.weekday == schedule.weekday,
        )
        columns = [
            "subscriber_id",
            "issue_date",
            "status",
            "paper_ids",
            "attempts",
            "expires_at",
            "created_at",
            "updated_at",
        ]
        with self._session() as session:
            dialect = session.get_bind().dialect.name
            statement = (
                insert_with_conflicts(session, DeliveryRow)
                .from_select(columns, on_schedule)
                .on_conflict_do_nothing(index_elements=["subscriber_id", "issue_date"])
                .returning(DeliveryRow.subscriber_id)
            )
            planned = sorted(session.scalars(statement))
        if dialect == "postgresql" and len(planned) >= ANALYZE_AFTER_PLANNING:
            # Until statistics know the new day, PostgreSQL takes it for a handful of rows and
            # answers each batch's "these 100 issues of today" by reading the whole day.
            with self.engine.begin() as connection:
                connection.execute(text("ANALYZE deliveries"))
        return planned

    def mark_enqueued(self, keys: Sequence[tuple[int, date]], *, now: datetime) -> None:
        """Note that these issues were handed to the broker: one UPDATE per issue date."""
        by_date: dict[date, list[int]] = {}
        for subscriber_id, issue_date in keys:
            by_date.setdefault(issue_date, []).append(subscriber_id)
        with self.engine.begin() as connection:
            for issue_date, ids in by_date.items():
                connection.execute(_MARK_ENQUEUED, {"day": issue_date, "ids": ids, "now": now})

    def issues_to_sweep(self, *, now: datetime, requeue_after: timedelta) -> list[SweepCandidate]:
        """Issues that should be with a worker but may not be: never enqueued or enqueued long
        ago and still planned (a message lost with Redis, or still far back in a long queue),
        a retry whose time has come, or a claim whose worker died (lease ran out)."""
        stale = DeliveryRow.enqueued_at.is_(None) | (DeliveryRow.enqueued_at < now - requeue_after)
        retry_due = (DeliveryRow.status == DeliveryStatus.RETRY) & (
            DeliveryRow.next_attempt_at.is_(None) | (DeliveryRow.next_attempt_at <= now)
        )
        # A retry is enqueued once when its time comes, not again at every sweep.
        not_yet_enqueued_for_retry = DeliveryRow.enqueued_at.is_(None) | (
            DeliveryRow.enqueued_at < DeliveryRow.next_attempt_at
        )
        lease_ran_out = _lease_ran_out(now)
        # Older issues have expired or been dealt with by hand; the bound keeps the sweep on
        # the issue-date index instead of reading the whole ledger.
        recent = DeliveryRow.issue_date >= (now - SWEEP_LOOKBACK).date()
        query = (
            select(
                DeliveryRow.subscriber_id,
                DeliveryRow.issue_date,
                DeliveryRow.enqueued_at,
                (
                    (DeliveryRow.status == DeliveryStatus.PLANNED)
                    & DeliveryRow.enqueued_at.is_not(None)
                    | retry_due & ~not_yet_enqueued_for_retry
                ).label("maybe_queued"),
            )
            .where(
                recent,
                or_(
                    (DeliveryRow.status == DeliveryStatus.PLANNED) & stale,
                    retry_due & (not_yet_enqueued_for_retry | stale),
                    lease_ran_out & stale,
                ),
            )
            .order_by(DeliveryRow.issue_date, DeliveryRow.subscriber_id)
        )
        with self._session() as session:
            return [
                SweepCandidate(
                    subscriber_id=row.subscriber_id,
                    issue_date=row.issue_date,
                    enqueued_at=row.enqueued_at,
                    maybe_queued=bool(row.maybe_queued),
                )
                for row in session.execute(query)
            ]

    def get_delivery(self, subscriber_id: int, issue_date: date) -> Delivery | None:
        with self._session() as session:
            row = session.scalar(select(DeliveryRow).where(_issue_key(subscriber_id, issue_date)))
            return None if row is None else to_delivery(row)

    def list_deliveries(
        self,
        *,
        issue_date: date | None = None,
        subscriber_id: int | None = None,
        status: DeliveryStatus | None = None,
    ) -> list[Delivery]:
        query = select(DeliveryRow).order_by(DeliveryRow.issue_date, DeliveryRow.subscriber_id)
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        if issue_date is not None:
            query = query.where(DeliveryRow.issue_date == issue_date)
        if subscriber_id is not None:
            query = query.where(DeliveryRow.subscriber_id == subscriber_id)
        with self._session() as session:
            return [to_delivery(row) for row in session.scalars(query)]

    def archived_issues(self, subscriber_id: int, *, limit: int, offset: int = 0) -> list[Delivery]:
        """A subscriber's issues sent (or in doubt), newest issue date first: `limit` of them
        from the `offset`-th on, for a page of their archive or their feed."""
        query = (
            select(DeliveryRow)
            .where(
                DeliveryRow.subscriber_id == subscriber_id,
                DeliveryRow.status.in_(ARCHIVED_STATUSES),
            )
            .order_by(DeliveryRow.issue_date.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._session() as session:
            return [to_delivery(row) for row in session.scalars(query)]

    def count_archived_issues(self, subscriber_id: int) -> int:
        query = select(func.count()).where(
            DeliveryRow.subscriber_id == subscriber_id,
            DeliveryRow.status.in_(ARCHIVED_STATUSES),
        )
        with self._session() as session:
            return int(session.scalar(query) or 0)

    def delivery_counts(self, *, since: date) -> dict[date, dict[DeliveryStatus, int]]:
        """How many issues of each date from `since` on ended in each status."""
        query = (
            select(DeliveryRow.issue_date, DeliveryRow.status, func.count())
            .where(DeliveryRow.issue_date >= since)
            .group_by(DeliveryRow.issue_date, DeliveryRow.status)
        )
        counts: dict[date, dict[DeliveryStatus, int]] = {}
        with self._session() as session:
            for issue_date, status, count in session.execute(query):
                counts.setdefault(issue_date, {})[DeliveryStatus(status)] = count
        return counts

    def emailed_counts(self, *, since: date) -> dict[date, int]:
        """Issues of each date from `since` on that went out by email (sent, and not to the
        feed alone, which records no Message-ID)."""
        query = (
            select(DeliveryRow.issue_date, func.count())
            .where(DeliveryRow.issue_date >= since)
            .where(DeliveryRow.status == DeliveryStatus.SENT.value)
            .where(DeliveryRow.message_id.is_not(None))
            .group_by(DeliveryRow.issue_date)
        )
        with self._session() as session:
            return {issue_date: int(count) for issue_date, count in session.execute(query)}

    def ledger_overview(self, *, today: date, since: date, now: datetime) -> LedgerOverview:
        """One query over the issue dates from `since` on (a range of the issue-date index),
        grouped by date and status: a few dozen rows, whatever the size of the ledger's
        history."""
        # An issue is claimable from its planning on, and a retry from its next attempt time.
        due_at = case(
            (DeliveryRow.status == DeliveryStatus.PLANNED, DeliveryRow.created_at),
            (
                DeliveryRow.status == DeliveryStatus.RETRY,
                func.coalesce(DeliveryRow.next_attempt_at, DeliveryRow.updated_at),
            ),
        )
        query = (
            select(DeliveryRow.issue_date, DeliveryRow.status, func.count(), func.min(due_at))
            .where(DeliveryRow.issue_date >= min(since, today))
            .group_by(DeliveryRow.issue_date, DeliveryRow.status)
        )
        today_counts: dict[DeliveryStatus, int] = {}
        retry = in_doubt = 0
        oldest_due_at: datetime | None = None
        with self._session() as session:
            for issue_date, status_value, count, first_due_at in session.execute(query):
                status = DeliveryStatus(status_value)
                if issue_date == today:
                    today_counts[status] = int(count)
                if status is DeliveryStatus.RETRY:
                    retry += int(count)
                elif status is DeliveryStatus.IN_DOUBT:
                    in_doubt += int(count)
                # The earliest of a group is past due only if some issue of it is.
                if first_due_at is not None and first_due_at <= now:
                    oldest_due_at = min(oldest_due_at or first_due_at, first_due_at)
        return LedgerOverview(
            today=today_counts, retry=retry, in_doubt=in_doubt, oldest_due_at=oldest_due_at
        )

    def reopen_issues(
        self, *, issue_date: date, statuses: Sequence[DeliveryStatus], now: datetime
    ) -> list[tuple[int, date]]:
        """Make finished issues claimable again at once, with a fresh attempt budget; only
        those of subscribers still confirmed (never someone who left or was suppressed).

        For an operator who fixed what made them fail: an expired issue loses its deadline,
        an in-doubt one is sent again (the receiver drops it if it had it: same Message-ID).
        """
        reopenable = set(statuses) - {DeliveryStatus.SENT, DeliveryStatus.SENDING}
        confirmed = select(SubscriberRow.id).where(
            SubscriberRow.status == SubscriptionStatus.CONFIRMED
        )
        query = (
            update(DeliveryRow)
            .where(
                DeliveryRow.issue_date == issue_date,
                DeliveryRow.status.in_(reopenable),
                DeliveryRow.subscriber_id.in_(confirmed),
            )
            .values(
                status=DeliveryStatus.RETRY,
                next_attempt_at=now,
                attempts=0,
                expires_at=None,
                enqueued_at=None,
                updated_at=now,
            )
            .returning(DeliveryRow.subscriber_id, DeliveryRow.issue_date)
            .execution_options(synchronize_session=False)
        )
        with self._session() as session:
            return sorted((row.subscriber_id, row.issue_date) for row in session.execute(query))

    def count_deliveries_before(self, before: date) -> int:
        """Ledger rows of issues dated before `before` (what `prune_deliveries` would take)."""
        query = select(func.count()).where(DeliveryRow.issue_date < before, _not_being_sent())
        with self._session() as session:
            return session.scalar(query) or 0

    def prune_deliveries(self, *, before: date, limit: int) -> int:
        """Delete up to `limit` ledger rows of issues dated before `before`, oldest first, in
        one short transaction; return how many went. An issue being sent stays."""
        oldest = (
            select(DeliveryRow.id)
            .where(DeliveryRow.issue_date < before, _not_being_sent())
            .order_by(DeliveryRow.issue_date)
            .limit(limit)
        )
        with self._session() as session:
            ids = list(session.scalars(oldest))
            if ids:
                session.execute(delete(DeliveryRow).where(DeliveryRow.id.in_(ids)))
        return len(ids)

    def reading_history(
        self,
        subscriber_ids: Sequence[int],
        *,
        before: date,
        since: date | None = None,
        last_sent_since: date | None = None,
    ) -> dict[int, ReadingHistory]:
        """Each subscriber's papers sent so far (in issues dated from `since` on, when given:
        older issues cannot hold today's candidates) and when their latest issue dated before
        `before` (and from `last_sent_since` on, when given) went out; two queries for a whole
        batch, each reading only the given dates' rows of the ledger's (subscriber, date)
        index, however long the ledger."""
        ids = list(subscriber_ids)
        sent: dict[int, set[str]] = {subscriber_id: set() for subscriber_id in ids}
        last_sent: dict[int, datetime] = {}
        # An issue in doubt most likely arrived: its papers count as sent.
        papers_query = select(DeliveryRow.subscriber_id, DeliveryRow.paper_ids).where(
            DeliveryRow.subscriber_id.in_(ids),
            DeliveryRow.status.in_([DeliveryStatus.SENT, DeliveryStatus.IN_DOUBT]),
        )
        if since is not None:
            papers_query = papers_query.where(DeliveryRow.issue_date >= since)
        # The latest send, not the send of the latest issue date: a day re-run by hand later
        # still delivered those papers at that time.
        last_query = (
            select(DeliveryRow.subscriber_id, func.max(DeliveryRow.sent_at))
            .where(
                DeliveryRow.subscriber_id.in_(ids),
                DeliveryRow.status == DeliveryStatus.SENT,
                DeliveryRow.issue_date < before,
            )
            .group_by(DeliveryRow.subscriber_id)
        )
        if last_sent_since is not None:
            last_query = last_query.where(DeliveryRow.issue_date >= last_sent_since)
        with self._session() as session:
            for subscriber_id, paper_ids in session.execute(papers_query):
                sent[subscriber_id].update(paper_ids or ())
            for subscriber_id, sent_at in session.execute(last_query):
                if sent_at is not None:
                    last_sent[subscriber_id] = sent_at
        return {
            subscriber_id: ReadingHistory(
                last_sent_at=last_sent.get(subscriber_id),
                sent_paper_ids=frozenset(sent[subscriber_id]),
            )
            for subscriber_id in ids
        }


def _not_being_sent() -> ColumnElement[bool]:
    return DeliveryRow.status != DeliveryStatus.SENDING


def _lease_ran_out(now: datetime) -> ColumnElement[bool]:
    """A claim whose sender died: it never recorded an outcome and its lease is over."""
    return (DeliveryRow.status == DeliveryStatus.SENDING) & (DeliveryRow.lease_expires_at < now)


def _issue_key(subscriber_id: int, issue_date: date) -> ColumnElement[bool]:
    return (DeliveryRow.subscriber_id == subscriber_id) & (DeliveryRow.issue_date == issue_date)
