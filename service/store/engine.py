"""The subscription store: the only module that knows how data is persisted."""

import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Date,
    Engine,
    Integer,
    Table,
    Text,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    false,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Update

from service.delivery.schedule import Schedule
from service.errors import AlreadySubscribed, UnknownSubscriber
from service.mail.wire import OutgoingMail
from service.models import (
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    Frequency,
    Interests,
    Paper,
    ReadingHistory,
    SignalObservation,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.store.tables import (
    DeliveryRow,
    NoticeRow,
    PaperRow,
    PaperSignalRow,
    SubscriberRow,
    SuppressionRow,
    UtcDateTime,
)

# Planning at least this many issues at once refreshes the ledger's statistics (PostgreSQL).
ANALYZE_AFTER_PLANNING = 1000

# Events a consent record keeps: the first and the newest others.
MAX_CONSENT_EVENTS = 20

# How far back, in issue dates, the sweep looks for issues left waiting.
SWEEP_LOOKBACK = timedelta(days=14)

# Trending signals a re-import refreshes; the rest of a paper is refreshed only when given.
TRENDING_FIELDS = ("upvotes", "comments", "github_stars")


@dataclass(frozen=True)
class UpsertCounts:
    new: int
    updated: int


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


class Store:
    """Papers, subscribers and the delivery ledger in one SQL database."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # Several processes (CLI, web, workers) share the file: wait for locks, don't fail.
            connect_args["timeout"] = 30
        self.url = url
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _configure_sqlite)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._statements = _DialectStatements(url.get_backend_name())

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with Alembic (the only way the schema changes)."""
        # Imported here: Alembic is a tenth of a second of start-up that only this call needs.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", "service.store:migrations")
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    # -- papers -------------------------------------------------------------------------------

    def upsert_papers(self, papers: Iterable[Paper], *, now: datetime) -> UpsertCounts:
        """Insert new papers; for known ids refresh trending signals and given metadata.

        All of it is one transaction, with the signals observed `now`: a failure leaves no
        paper half-written."""
        new = updated = 0
        observed: dict[str, Paper] = {}
        with self._session() as session:
            for chunk in _chunks(list(papers), 500):
                ids = [paper.id for paper in chunk]
                existing = {
                    row.id: row
                    for row in session.scalars(select(PaperRow).where(PaperRow.id.in_(ids)))
                }
                for paper in chunk:
                    row = existing.get(paper.id)
                    if row is None:
                        row = _paper_row(paper, now=now)
                        session.add(row)
                        existing[paper.id] = row
                        new += 1
                    else:
                        _refresh_paper_row(row, paper, now=now)
                        updated += 1
                    if any(getattr(paper, name) is not None for name in TRENDING_FIELDS):
                        observed[paper.id] = paper
            if observed:
                # The papers first, for the foreign key; an observation at the same time (the
                # same paper twice in one fetch) is replaced, the later one winning.
                session.flush()
                session.execute(
                    delete(PaperSignalRow).where(
                        PaperSignalRow.paper_id.in_(list(observed)),
                        PaperSignalRow.observed_at == now,
                    )
                )
                session.add_all(_signal_row(paper, now=now) for paper in observed.values())
        return UpsertCounts(new=new, updated=updated)

    def paper_signals(self, paper_id: str) -> list[SignalObservation]:
        """Every observation of a paper's trending signals, oldest first."""
        query = (
            select(PaperSignalRow)
            .where(PaperSignalRow.paper_id == paper_id)
            .order_by(PaperSignalRow.observed_at)
        )
        with self._session() as session:
            return [
                SignalObservation(
                    paper_id=row.paper_id,
                    observed_at=row.observed_at,
                    upvotes=row.upvotes,
                    comments=row.comments,
                    github_stars=row.github_stars,
                )
                for row in session.scalars(query)
            ]

    def get_paper(self, paper_id: str) -> Paper | None:
        with self._session() as session:
            row = session.get(PaperRow, paper_id)
            return None if row is None else _paper(row)

    def list_papers(
        self,
        *,
        seen_since: datetime | None = None,
        seen_before: datetime | None = None,
        limit: int | None = None,
    ) -> list[Paper]:
        """Papers newest-first by when Paperwire first saw them, optionally within a window."""
        query = select(PaperRow).order_by(PaperRow.first_seen_at.desc(), PaperRow.id)
        if seen_since is not None:
            query = query.where(PaperRow.first_seen_at >= seen_since)
        if seen_before is not None:
            query = query.where(PaperRow.first_seen_at < seen_before)
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [_paper(row) for row in session.scalars(query)]

    def papers_version(self) -> tuple[int, datetime | None]:
        """Changes whenever a paper is added or refreshed: how many there are and the latest
        refresh. Cheap enough to ask before every batch."""
        query = select(func.count(), func.max(PaperRow.updated_at))
        with self.engine.connect() as connection:
            count, latest = connection.execute(query).one()
        return int(count), latest

    def count_papers(self) -> int:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(PaperRow)) or 0

    # -- subscribers --------------------------------------------------------------------------

    def add_subscriber(
        self,
        email: str,
        preferences: SubscriptionPreferences,
        *,
        status: SubscriptionStatus,
        now: datetime,
        consent: Sequence[ConsentEvent] = (),
        confirm_nonce: str | None = None,
    ) -> Subscriber:
        """Store a new subscriber; `email` must already be normalised."""
        row = SubscriberRow(
            email=email,
            status=status,
            created_at=now,
            confirmed_at=now if status is SubscriptionStatus.CONFIRMED else None,
            hard_bounces=0,
            confirm_nonce=confirm_nonce,
            consent=[_consent_json(event) for event in consent],
            link_key=new_link_key(),
        )
        _apply_preferences(row, preferences)
        try:
            with self._session() as session:
                session.add(row)
        except IntegrityError as exc:
            raise AlreadySubscribed(f"{email} is already subscribed") from exc
        return _subscriber(row)

    def get_subscriber(self, subscriber_id: int) -> Subscriber:
        with self._session() as session:
            row = session.get(SubscriberRow, subscriber_id)
            if row is None:
                raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
            return _subscriber(row)

    def find_subscriber(self, email: str) -> Subscriber:
        with self._session() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
            if row is None:
                raise UnknownSubscriber(f"no subscriber with address {email}")
            return _subscriber(row)

    def list_subscribers(self, *, status: SubscriptionStatus | None = None) -> list[Subscriber]:
        query = select(SubscriberRow).order_by(SubscriberRow.id)
        if status is not None:
            query = query.where(SubscriberRow.status == status)
        with self._session() as session:
            return [_subscriber(row) for row in session.scalars(query)]

    def remove_subscriber(self, email: str) -> None:
        """Delete a subscriber with their ledger rows, which hold their reading history."""
        with self._session() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
            if row is None:
                raise UnknownSubscriber(f"no subscriber with address {email}")
            # Delete children explicitly: SQLite enforces ON DELETE CASCADE only with a pragma.
            session.execute(delete(DeliveryRow).where(DeliveryRow.subscriber_id == row.id))
            session.execute(delete(NoticeRow).where(NoticeRow.subscriber_id == row.id))
            session.delete(row)
        self._forget_deleted()

    def find_subscriber_by_email(self, email: str) -> Subscriber | None:
        with self._session() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
            return None if row is None else _subscriber(row)

    def renew_signup(
        self,
        subscriber_id: int,
        preferences: SubscriptionPreferences,
        *,
        consent: ConsentEvent,
        confirm_nonce: str,
    ) -> None:
        """A new signup, with a new confirmation link, for an address that has a row: the new
        `confirm_nonce` makes earlier links stale, and the preferences asked for now are what
        the new link confirms. A pending row takes them at once (it receives nothing yet)."""
        with self._session() as session:
            row = _locked_subscriber(session, subscriber_id)
            if row.status == SubscriptionStatus.PENDING:
                _apply_preferences(row, preferences)
                # A fresh link: the pending row lives as long as the link, not from the
                # first request (pending rows are pruned by age).
                row.created_at = consent.at
            row.requested_preferences = preferences.model_dump(mode="json")
            row.confirm_nonce = confirm_nonce
            _add_consent(row, consent)

    def confirm_subscriber(
        self, subscriber_id: int, confirm_nonce: str, *, consent: ConsentEvent
    ) -> bool:
        """Confirm with the nonce of the latest link; False if that link was used or
        superseded (or the subscriber is gone). The preferences asked for with that link
        apply now."""
        with self._session() as session:
            row = session.scalar(
                select(SubscriberRow).where(SubscriberRow.id == subscriber_id).with_for_update()
            )
            if row is None or row.confirm_nonce is None or row.confirm_nonce != confirm_nonce:
                return False
            if row.requested_preferences is not None:
                requested = SubscriptionPreferences.model_validate(row.requested_preferences)
                _apply_preferences(row, requested)
            row.status = SubscriptionStatus.CONFIRMED
            row.confirmed_at = consent.at
            row.unsubscribed_at = None
            row.hard_bounces = 0
            row.confirm_nonce = None
            row.requested_preferences = None
            _add_consent(row, consent)
            return True

    def preferences_to_confirm(
        self, subscriber_id: int, confirm_nonce: str
    ) -> SubscriptionPreferences | None:
        """What the confirmation link with `confirm_nonce` would confirm; None if that link
        was used or superseded."""
        with self._session() as session:
            row = session.get(SubscriberRow, subscriber_id)
            if row is None or row.confirm_nonce is None or row.confirm_nonce != confirm_nonce:
                return None
            if row.requested_preferences is not None:
                return SubscriptionPreferences.model_validate(row.requested_preferences)
            return _subscriber(row)

    def update_preferences(self, subscriber_id: int, preferences: SubscriptionPreferences) -> None:
        with self._session() as session:
            _apply_preferences(_locked_subscriber(session, subscriber_id), preferences)

    def change_status(
        self,
        subscriber_id: int,
        status: SubscriptionStatus,
        *,
        consent: ConsentEvent,
        allowed_from: Sequence[SubscriptionStatus],
    ) -> bool:
        """Move a subscriber to `status` if their status is one of `allowed_from`; False (and
        nothing written) otherwise. Unsubscribing also voids any confirmation link."""
        with self._session() as session:
            row = _locked_subscriber(session, subscriber_id)
            if row.status not in allowed_from:
                return False
            row.status = status
            if status is SubscriptionStatus.UNSUBSCRIBED:
                row.unsubscribed_at = consent.at
                row.confirm_nonce = None
                row.requested_preferences = None
            _add_consent(row, consent)
            return True

    def erase_subscriber(self, subscriber_id: int, *, address_hash: str, now: datetime) -> None:
        """Delete a subscriber and their ledger rows, leaving only a suppression entry, and no
        copy in the database's files (see `_forget_deleted`)."""
        with self._session() as session:
            session.execute(delete(DeliveryRow).where(DeliveryRow.subscriber_id == subscriber_id))
            session.execute(delete(NoticeRow).where(NoticeRow.subscriber_id == subscriber_id))
            session.execute(delete(SubscriberRow).where(SubscriberRow.id == subscriber_id))
            if session.get(SuppressionRow, address_hash) is None:
                session.add(SuppressionRow(address_hash=address_hash, created_at=now))
        self._forget_deleted()

    def _forget_deleted(self) -> None:
        """SQLite: deleted rows are zeroed where they lay (`secure_delete`, set on every
        connection), but the write-ahead log still holds the pages as they were until a
        checkpoint copies it back; TRUNCATE empties the log file too. PostgreSQL keeps dead
        rows until VACUUM (see README, "Erasure")."""
        if self.url.get_backend_name() != "sqlite":
            return
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def subscriber_record(self, subscriber_id: int) -> dict[str, Any]:
        """Every stored column of a subscriber's row, and the rows of every table that refers to
        it (the delivery ledger), as JSON-able data: what a data-access request is owed."""
        with self._session() as session:
            row = session.get(SubscriberRow, subscriber_id)
            if row is None:
                raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
            record: dict[str, Any] = {"subscriber": _row_data(row)}
            for table, column in _tables_referring_to_subscribers():
                rows = session.execute(
                    select(table).where(column == subscriber_id).order_by(*table.primary_key)
                ).mappings()
                record[table.name] = [_json_value_map(dict(mapping)) for mapping in rows]
        return record

    def is_suppressed(self, address_hashes: Sequence[str]) -> bool:
        query = select(SuppressionRow.address_hash).where(
            SuppressionRow.address_hash.in_(list(address_hashes))
        )
        with self._session() as session:
            return session.scalar(query.limit(1)) is not None

    def lift_suppression(self, address_hashes: Sequence[str]) -> None:
        """The owner of an erased address signed up and confirmed again."""
        with self._session() as session:
            session.execute(
                delete(SuppressionRow).where(SuppressionRow.address_hash.in_(list(address_hashes)))
            )

    # -- notices: one-off emails a visitor asked for -------------------------------------------

    def add_notice(
        self,
        mail: OutgoingMail,
        *,
        subscriber_id: int,
        kind: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Keep an email to send before it is sent: whoever sends it may die on the way."""
        row = NoticeRow(
            subscriber_id=subscriber_id,
            kind=kind,
            sender=mail.sender,
            recipients=list(mail.recipients),
            message_id=mail.message_id,
            data=mail.data,
            status=NoticeStatus.QUEUED,
            attempts=0,
            next_attempt_at=now,
            expires_at=expires_at,
            created_at=now,
        )
        with self._session() as session:
            session.add(row)

    def claim_notices(
        self,
        *,
        now: datetime,
        lease: timedelta,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list["ClaimedNotice"]:
        """Take due notices for sending (those queued and due, and those whose sender's lease
        ran out), or only the one with `message_id`. Each is held until `now + lease`; two
        senders never take the same one. Notices past their time are deleted unsent."""
        due = (NoticeRow.status == NoticeStatus.QUEUED) & (NoticeRow.next_attempt_at <= now)
        lost = (NoticeRow.status == NoticeStatus.SENDING) & (NoticeRow.lease_expires_at < now)
        with self._session() as session:
            session.execute(delete(NoticeRow).where(NoticeRow.expires_at <= now))
            candidates = select(NoticeRow.id).where(due | lost).order_by(NoticeRow.id).limit(limit)
            if message_id is not None:
                candidates = candidates.where(NoticeRow.message_id == message_id)
            ids = list(session.scalars(candidates))
            if not ids:
                return []
            claimed = session.execute(
                update(NoticeRow)
                .where(NoticeRow.id.in_(ids), due | lost)
                .values(
                    status=NoticeStatus.SENDING,
                    attempts=NoticeRow.attempts + 1,
                    lease_expires_at=now + lease,
                )
                .returning(
                    NoticeRow.id,
                    NoticeRow.sender,
                    NoticeRow.recipients,
                    NoticeRow.message_id,
                    NoticeRow.data,
                    NoticeRow.attempts,
                )
                .execution_options(synchronize_session=False)
            )
            return [
                ClaimedNotice(
                    id=row.id,
                    attempt=row.attempts,
                    mail=OutgoingMail(
                        sender=row.sender,
                        recipients=tuple(row.recipients),
                        message_id=row.message_id,
                        data=row.data,
                    ),
                )
                for row in claimed
            ]

    def finish_notice(
        self, notice_id: int, *, attempt: int, retry_at: datetime | None, error: str | None
    ) -> None:
        """Sent, or given up (`retry_at` None): the notice and its bytes are deleted. Otherwise
        it is due again at `retry_at`. Only the holder of the claim (`attempt`) may finish it."""
        held = (
            (NoticeRow.id == notice_id)
            & (NoticeRow.status == NoticeStatus.SENDING)
            & (NoticeRow.attempts == attempt)
        )
        with self._session() as session:
            if retry_at is None:
                session.execute(delete(NoticeRow).where(held))
            else:
                session.execute(
                    update(NoticeRow)
                    .where(held)
                    .values(
                        status=NoticeStatus.QUEUED,
                        next_attempt_at=retry_at,
                        lease_expires_at=None,
                        last_error=error,
                    )
                    .execution_options(synchronize_session=False)
                )

    def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        query = select(PaperRow).where(PaperRow.id.in_(list(paper_ids)))
        with self._session() as session:
            return {row.id: _paper(row) for row in session.scalars(query)}

    def ping(self) -> None:
        """Raise if the database cannot be reached (health checks)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def due_subscribers(self, issue_date: date) -> list[Subscriber]:
        """Confirmed subscribers whose frequency gives them an issue on `issue_date`."""
        weekly_today = (SubscriberRow.frequency == Frequency.WEEKLY) & (
            SubscriberRow.weekday == issue_date.weekday()
        )
        query = (
            select(SubscriberRow)
            .where(SubscriberRow.status == SubscriptionStatus.CONFIRMED)
            .where(or_(SubscriberRow.frequency == Frequency.DAILY, weekly_today))
            .order_by(SubscriberRow.id)
        )
        with self._session() as session:
            return [_subscriber(row) for row in session.scalars(query)]

    def get_subscribers(self, subscriber_ids: Sequence[int]) -> dict[int, Subscriber]:
        query = select(SubscriberRow).where(SubscriberRow.id.in_(list(subscriber_ids)))
        with self._session() as session:
            return {row.id: _subscriber(row) for row in session.scalars(query)}

    def prune_pending(self, *, created_before: datetime) -> int:
        """Delete signups never confirmed; their confirmation links have long expired."""
        with self._session() as session:
            result = session.execute(
                delete(SubscriberRow)
                .where(SubscriberRow.status == SubscriptionStatus.PENDING)
                .where(SubscriberRow.created_at < created_before)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def schedules(self) -> list[Schedule]:
        """The distinct schedules of confirmed subscribers: planning works per schedule."""
        query = (
            select(
                SubscriberRow.time_zone,
                SubscriberRow.delivery_hour,
                SubscriberRow.frequency,
                SubscriberRow.weekday,
            )
            .where(SubscriberRow.status == SubscriptionStatus.CONFIRMED)
            .distinct()
        )
        with self._session() as session:
            return [
                Schedule(
                    time_zone=time_zone,
                    delivery_hour=hour,
                    frequency=Frequency(frequency),
                    weekday=weekday,
                )
                for time_zone, hour, frequency, weekday in session.execute(query)
            ]

    # -- the delivery ledger ------------------------------------------------------------------

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
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = (
                insert(DeliveryRow)
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

    def issues_to_sweep(self, *, now: datetime, requeue_after: timedelta) -> list["SweepCandidate"]:
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

    @contextmanager
    def ledger(self) -> Iterator["Ledger"]:
        """The ledger on one connection for a run of claims and outcomes; what is still
        pending is written on the way out, also when the run ends in an exception."""
        with self.engine.connect() as connection:
            ledger = Ledger(connection, self._statements)
            try:
                yield ledger
            finally:
                ledger.flush()

    def claim_issue(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        now: datetime,
        lease: timedelta,
        max_attempts: int | None = None,
    ) -> int | None:
        """Take one issue for sending: the attempt number, or None (see `Ledger.claim`)."""
        with self.ledger() as ledger:
            claimed = ledger.claim(
                issue_date, [subscriber_id], now=now, lease=lease, max_attempts=max_attempts
            )
        return claimed.get(subscriber_id)

    def claim_issues(
        self,
        issue_date: date,
        subscriber_ids: Sequence[int],
        *,
        now: datetime,
        lease: timedelta,
        max_attempts: int | None = None,
    ) -> dict[int, int]:
        with self.ledger() as ledger:
            return ledger.claim(
                issue_date, subscriber_ids, now=now, lease=lease, max_attempts=max_attempts
            )

    def mark_data_started(self, subscriber_id: int, issue_date: date, *, now: datetime) -> None:
        with self.ledger() as ledger:
            ledger.mark_data_started(subscriber_id, issue_date, now=now)

    def record_sent(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        message_id: str,
        paper_ids: Sequence[str],
        now: datetime,
    ) -> None:
        with self.ledger() as ledger:
            ledger.record_sent(
                subscriber_id, issue_date, message_id=message_id, paper_ids=paper_ids, now=now
            )

    def record_skipped(self, subscriber_id: int, issue_date: date, *, now: datetime) -> None:
        with self.ledger() as ledger:
            ledger.record_skipped(subscriber_id, issue_date, now=now)

    def record_failure(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        error: str,
        now: datetime,
        retry_at: datetime | None = None,
        hard_bounce: bool = False,
        suppress_after_bounces: int | None = None,
    ) -> None:
        with self.ledger() as ledger:
            ledger.record_failure(
                subscriber_id,
                issue_date,
                error=error,
                now=now,
                retry_at=retry_at,
                hard_bounce=hard_bounce,
                suppress_after_bounces=suppress_after_bounces,
            )

    def record_in_doubt(
        self, subscriber_id: int, issue_date: date, *, message_id: str, error: str, now: datetime
    ) -> None:
        with self.ledger() as ledger:
            ledger.record_in_doubt(
                subscriber_id, issue_date, message_id=message_id, error=error, now=now
            )

    def get_delivery(self, subscriber_id: int, issue_date: date) -> Delivery | None:
        with self._session() as session:
            row = session.scalar(select(DeliveryRow).where(_issue_key(subscriber_id, issue_date)))
            return None if row is None else _delivery(row)

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
            return [_delivery(row) for row in session.scalars(query)]

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

    def subscriber_counts(self) -> tuple[dict[SubscriptionStatus, int], int]:
        """Subscribers per status, and hard bounces counted over all of them."""
        query = select(
            SubscriberRow.status,
            func.count(),
            func.coalesce(func.sum(SubscriberRow.hard_bounces), 0),
        ).group_by(SubscriberRow.status)
        with self._session() as session:
            rows = session.execute(query).all()
        counts = {SubscriptionStatus(status): count for status, count, _ in rows}
        return counts, sum(int(bounces) for _, _, bounces in rows)

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

    def reading_history(
        self, subscriber_ids: Sequence[int], *, before: date, since: date | None = None
    ) -> dict[int, ReadingHistory]:
        """Each subscriber's papers sent so far (in issues dated from `since` on, when given:
        older issues cannot hold today's candidates) and when their latest issue dated before
        `before` went out; two queries for a whole batch."""
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


_THESE_ISSUES = (DeliveryRow.issue_date == bindparam("day")) & DeliveryRow.subscriber_id.in_(
    bindparam("ids", expanding=True)
)
_LEASE_RAN_OUT = (DeliveryRow.status == DeliveryStatus.SENDING) & (
    DeliveryRow.lease_expires_at < bindparam("now")
)
_CLAIMABLE = _THESE_ISSUES & or_(
    DeliveryRow.status == DeliveryStatus.PLANNED,
    (DeliveryRow.status == DeliveryStatus.RETRY)
    & (DeliveryRow.next_attempt_at.is_(None) | (DeliveryRow.next_attempt_at <= bindparam("now"))),
    _LEASE_RAN_OUT & DeliveryRow.data_started_at.is_(None),
)
# An attempt whose outcome is unknown (the relay may have the message): resent later, while
# the issue has resends left, with the same Message-ID; otherwise it ends `in_doubt`.
_RESEND_LEFT = DeliveryRow.in_doubt_count < bindparam("resends", type_=Integer())
_IN_DOUBT_VALUES: dict[str, Any] = {
    "status": case(
        (_RESEND_LEFT, literal(DeliveryStatus.RETRY.value)),
        else_=literal(DeliveryStatus.IN_DOUBT.value),
    ),
    "next_attempt_at": case(
        (_RESEND_LEFT, bindparam("resend_at", type_=UtcDateTime())), else_=None
    ),
    "in_doubt_count": DeliveryRow.in_doubt_count + 1,
    "lease_expires_at": None,
    "updated_at": bindparam("now"),
}
_MARK_LOST_IN_DOUBT = (
    update(DeliveryRow)
    .where(_THESE_ISSUES, _LEASE_RAN_OUT, DeliveryRow.data_started_at.is_not(None))
    .values(
        last_error="the sender was lost after handing the message to the relay",
        **_IN_DOUBT_VALUES,
    )
)


def _unless_in_doubt(status: Any) -> ColumnElement[str]:
    """`status` for an issue that ends unsent, unless an earlier attempt may have delivered
    it: then it ends `in_doubt`, which no default retry sends again."""
    return case(
        (DeliveryRow.in_doubt_count > 0, literal(DeliveryStatus.IN_DOUBT.value)),
        else_=status,
    )


_EXPIRE_CLAIMABLE = (
    update(DeliveryRow)
    .where(_CLAIMABLE, DeliveryRow.expires_at <= bindparam("now"))
    .values(
        status=_unless_in_doubt(literal(DeliveryStatus.EXPIRED.value)),
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)
_FAIL_TRIED_TOO_OFTEN = (
    update(DeliveryRow)
    .where(_CLAIMABLE, DeliveryRow.attempts >= bindparam("max_attempts"))
    .values(
        status=_unless_in_doubt(literal(DeliveryStatus.FAILED.value)),
        last_error=bindparam("gave_up", type_=Text())
        + func.coalesce(DeliveryRow.last_error, "the worker was lost"),
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)
_CLAIM = (
    update(DeliveryRow)
    .where(_CLAIMABLE)
    .values(
        status=DeliveryStatus.SENDING,
        attempts=DeliveryRow.attempts + 1,
        lease_expires_at=bindparam("lease_until"),
        # Until told otherwise, a lost attempt reads as a lost worker.
        last_error="the worker was lost while sending",
        data_started_at=None,
        updated_at=bindparam("now"),
    )
    .returning(DeliveryRow.subscriber_id, DeliveryRow.attempts)
)
# The first try of an issue planned and never claimed; claimed for a whole batch at once.
_CLAIM_FIRST_TRIES = (
    update(DeliveryRow)
    .where(
        _THESE_ISSUES,
        DeliveryRow.status == DeliveryStatus.PLANNED,
        DeliveryRow.attempts == 0,
    )
    .values(
        status=DeliveryStatus.SENDING,
        attempts=1,
        lease_expires_at=bindparam("lease_until"),
        last_error="the worker was lost while sending",
        data_started_at=None,
        updated_at=bindparam("now"),
    )
    .returning(DeliveryRow.subscriber_id, DeliveryRow.attempts)
)
_STILL_CLAIMABLE = select(DeliveryRow.subscriber_id).where(_CLAIMABLE)
_MARK_ENQUEUED = update(DeliveryRow).where(_THESE_ISSUES).values(enqueued_at=bindparam("now"))
_ONE_ISSUE = (DeliveryRow.subscriber_id == bindparam("sid")) & (
    DeliveryRow.issue_date == bindparam("day")
)
# Only the holder of a claim may write to its issue: the claim's attempt number fences off a
# sender whose lease ran out and whose issue another sender has claimed since. (No attempt
# given: whoever holds it, for an operator's or a test's direct write.)
_HELD = (DeliveryRow.status == DeliveryStatus.SENDING) & (
    func.coalesce(bindparam("attempt", type_=Integer()), DeliveryRow.attempts)
    == DeliveryRow.attempts
)
# With the papers going out: if the sender is then lost, the issue is in doubt and its papers
# count as sent, so the next issue does not repeat them.
# The give-up time is checked here, message by message: a batch that runs long sends nothing
# after it.
_BEFORE_DEADLINE = DeliveryRow.expires_at.is_(None) | (DeliveryRow.expires_at > bindparam("now"))
_MARK_DATA_STARTED = (
    update(DeliveryRow)
    .where(_ONE_ISSUE, _HELD, _BEFORE_DEADLINE)
    .values(
        data_started_at=bindparam("now"),
        paper_ids=bindparam("paper_ids", type_=DeliveryRow.__table__.c.paper_ids.type),
    )
)
_EXPIRE_HELD = (
    update(DeliveryRow)
    .where(_ONE_ISSUE, _HELD, DeliveryRow.expires_at <= bindparam("now"))
    .values(
        status=_unless_in_doubt(literal(DeliveryStatus.EXPIRED.value)),
        last_error="not sent: its give-up time had passed",
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)
_IN_DOUBT_HELD = update(DeliveryRow).where(_ONE_ISSUE, _HELD)
# A long batch keeps its claims: the lease is renewed while the sender is alive.
_RENEW_LEASES = (
    update(DeliveryRow)
    .where(
        _THESE_ISSUES,
        DeliveryRow.status == DeliveryStatus.SENDING,
        DeliveryRow.lease_expires_at >= bindparam("now"),
    )
    .values(lease_expires_at=bindparam("lease_until"))
)


@lru_cache(maxsize=32)
def _finish_statement(columns: frozenset[str]) -> Update:
    """UPDATE of a claimed issue's outcome setting `columns`; built once per set of columns."""
    table_columns = DeliveryRow.__table__.c
    return (
        update(DeliveryRow)
        .where(_ONE_ISSUE, _HELD)
        .values(
            status=case(
                (
                    (bindparam("status") == DeliveryStatus.FAILED.value)
                    & (DeliveryRow.in_doubt_count > 0),
                    literal(DeliveryStatus.IN_DOUBT.value),
                ),
                else_=bindparam("status"),
            ),
            lease_expires_at=None,
            updated_at=bindparam("now"),
            **{
                name: bindparam(f"v_{name}", type_=table_columns[name].type)
                for name in sorted(columns)
            },
        )
    )


class NoticeStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"


@dataclass(frozen=True)
class ClaimedNotice:
    id: int
    attempt: int
    mail: OutgoingMail


class DataStart(StrEnum):
    """What `Ledger.mark_data_started` found: go ahead, or why the message must not go out."""

    STARTED = "started"
    CLAIM_LOST = "claim-lost"
    EXPIRED = "expired"


# One write of the ledger, run inside a transaction on the ledger's connection.
_Write = Callable[[Connection], object]


class Ledger:
    """Claims and outcomes of issues, as one sender records them on one connection.

    An outcome is not committed on its own: it waits for the next write, at the latest the
    mark that the next message is going out (`mark_data_started`), and goes in the same
    transaction, so a message costs one commit, not three. A sender lost in between leaves
    that issue `sending` with its data started, which the next claim turns into `in_doubt`:
    it is never sent twice.
    """

    def __init__(self, connection: Connection, statements: "_DialectStatements") -> None:
        self._connection = connection
        self._statements = statements
        self._pending: list[_Write] = []

    def claim_first_tries(
        self,
        issue_date: date,
        subscriber_ids: Sequence[int],
        *,
        now: datetime,
        lease: timedelta,
        max_attempts: int | None = None,
        in_doubt_resends: int = 0,
        in_doubt_resend_after: timedelta = timedelta(0),
    ) -> tuple[dict[int, int], set[int]]:
        """Claim at once these issues that were never tried; return their attempt numbers,
        and the ids of those tried before that may be claimed now, one by one with `claim`.

        Issues tried before are claimed just before each is sent, so that a lost try counts
        only against its own issue, never against the neighbours of one that kept killing
        its worker.
        """
        ids = list(subscriber_ids)
        params = _claim_params(
            issue_date,
            ids,
            now=now,
            lease=lease,
            max_attempts=max_attempts,
            in_doubt_resends=in_doubt_resends,
            in_doubt_resend_after=in_doubt_resend_after,
        )
        connection = self._connection
        with connection.begin():
            self._write_pending()
            self._settle_lost_and_late(issue_date, ids, params)
            claimed = {
                row.subscriber_id: row.attempts
                for row in connection.execute(_CLAIM_FIRST_TRIES, params)
            }
            later = set(connection.scalars(_STILL_CLAIMABLE, params))
        return claimed, later

    def claim(
        self,
        issue_date: date,
        subscriber_ids: Sequence[int],
        *,
        now: datetime,
        lease: timedelta,
        max_attempts: int | None = None,
        in_doubt_resends: int = 0,
        in_doubt_resend_after: timedelta = timedelta(0),
    ) -> dict[int, int]:
        """Take these subscribers' issues of `issue_date` for sending; return the attempt
        number of each one taken. Issues sent, finished or held by another sender are not.

        One conditional UPDATE decides, so two workers racing for the same issue cannot both
        win. The claim is committed before any mail is sent. An issue past its give-up time
        becomes `expired`, one already tried `max_attempts` times becomes `failed` (a task that
        kills its worker every time must end somewhere), and one whose sender was lost after
        the message started going out is in doubt: due again after `in_doubt_resend_after`
        while it has resends left (`in_doubt_resends`), `in_doubt` otherwise.
        """
        ids = list(subscriber_ids)
        params = _claim_params(
            issue_date,
            ids,
            now=now,
            lease=lease,
            max_attempts=max_attempts,
            in_doubt_resends=in_doubt_resends,
            in_doubt_resend_after=in_doubt_resend_after,
        )
        with self._connection.begin():
            self._write_pending()
            self._settle_lost_and_late(issue_date, ids, params)
            claimed = self._connection.execute(_CLAIM, params)
            return {row.subscriber_id: row.attempts for row in claimed}

    def mark_data_started(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        now: datetime,
        paper_ids: Sequence[str] = (),
        attempt: int | None = None,
    ) -> "DataStart":
        """Committed before the message with `paper_ids` goes out: from here a lost sender
        leaves it in doubt. Outcomes still pending are committed with it. Anything but
        `STARTED` means the message must not go out: this sender no longer holds the claim
        (see `_HELD`), or the issue's give-up time has passed (it is now `expired`)."""
        params = {
            "sid": subscriber_id,
            "day": issue_date,
            "now": now,
            "paper_ids": list(paper_ids),
            "attempt": attempt,
        }
        connection = self._connection
        with connection.begin():
            self._write_pending()
            if connection.execute(_MARK_DATA_STARTED, params).rowcount == 1:
                return DataStart.STARTED
            if connection.execute(_EXPIRE_HELD, params).rowcount == 1:
                return DataStart.EXPIRED
            return DataStart.CLAIM_LOST

    def renew_leases(
        self, issue_date: date, subscriber_ids: Sequence[int], *, now: datetime, lease: timedelta
    ) -> None:
        """Extend the leases of these issues still held, for a batch that runs long."""
        params = {
            "day": issue_date,
            "ids": list(subscriber_ids),
            "now": now,
            "lease_until": now + lease,
        }
        with self._connection.begin():
            self._write_pending()
            self._connection.execute(_RENEW_LEASES, params)

    def record_sent(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        message_id: str,
        paper_ids: Sequence[str],
        now: datetime,
        attempt: int | None = None,
    ) -> None:
        """Mark a claimed issue sent; its papers, kept on its row, are never sent again."""
        finish = _finish_write(
            subscriber_id,
            issue_date,
            attempt,
            status=DeliveryStatus.SENT,
            now=now,
            message_id=message_id,
            paper_ids=list(paper_ids),
            sent_at=now,
            last_error=None,
        )
        self._pending.append(finish)

    def record_skipped(
        self, subscriber_id: int, issue_date: date, *, now: datetime, attempt: int | None = None
    ) -> None:
        """Mark a claimed issue skipped: nothing relevant to send that day."""
        finish = _finish_write(
            subscriber_id, issue_date, attempt, status=DeliveryStatus.SKIPPED, now=now
        )
        self._pending.append(finish)

    def record_failure(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        error: str,
        now: datetime,
        retry_at: datetime | None = None,
        refused: bool = False,
        hard_bounce: bool = False,
        suppress_after_bounces: int | None = None,
        attempt: int | None = None,
    ) -> None:
        """Mark a claimed issue due again at `retry_at`; `refused` when sending it again is
        futile (a permanent refusal); failed otherwise, or in doubt if an earlier attempt may
        have delivered it.

        A hard bounce (the relay said the mailbox does not exist) counts against the
        subscriber, who is suppressed after `suppress_after_bounces` of them.
        """
        if refused:
            status = DeliveryStatus.REFUSED
        else:
            status = DeliveryStatus.FAILED if retry_at is None else DeliveryStatus.RETRY
        finish = _finish_write(
            subscriber_id,
            issue_date,
            attempt,
            status=status,
            now=now,
            last_error=error,
            next_attempt_at=retry_at,
        )

        def write(connection: Connection) -> None:
            if finish(connection) and hard_bounce:
                connection.execute(_count_hard_bounce(subscriber_id, suppress_after_bounces))

        self._pending.append(write)

    def record_in_doubt(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        message_id: str,
        error: str,
        now: datetime,
        paper_ids: Sequence[str] = (),
        attempt: int | None = None,
        resends: int = 0,
        resend_at: datetime | None = None,
    ) -> None:
        """The relay may have the message: the connection ended after the message went out
        and before the relay answered. Due again at `resend_at` (same Message-ID, so a
        receiver that has it can drop the copy) while the issue has had fewer than `resends`
        such attempts; `in_doubt` for good otherwise."""
        params = {
            "sid": subscriber_id,
            "day": issue_date,
            "attempt": attempt,
            "now": now,
            "resends": resends if resend_at is not None else 0,
            "resend_at": resend_at,
            "message_id": message_id,
            "paper_ids": list(paper_ids),
            "error": error,
        }
        statement = _IN_DOUBT_HELD.values(
            message_id=bindparam("message_id"),
            paper_ids=bindparam("paper_ids", type_=DeliveryRow.__table__.c.paper_ids.type),
            last_error=bindparam("error"),
            **_IN_DOUBT_VALUES,
        )
        self._pending.append(lambda connection: connection.execute(statement, params))

    def flush(self) -> None:
        """Commit the outcomes still pending."""
        if self._pending:
            with self._connection.begin():
                self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        for write in pending:
            write(self._connection)

    def _settle_lost_and_late(
        self, issue_date: date, ids: list[int], params: dict[str, Any]
    ) -> None:
        """Plan what is missing, then end the issues no claim may take any more."""
        connection = self._connection
        rows = [
            {"sid": subscriber_id, "day": issue_date, "now": params["now"]} for subscriber_id in ids
        ]
        connection.execute(self._statements.plan_if_missing, rows)
        connection.execute(_MARK_LOST_IN_DOUBT, params)
        connection.execute(_EXPIRE_CLAIMABLE, params)
        connection.execute(_FAIL_TRIED_TOO_OFTEN, params)


def _claim_params(
    issue_date: date,
    ids: list[int],
    *,
    now: datetime,
    lease: timedelta,
    max_attempts: int | None,
    in_doubt_resends: int,
    in_doubt_resend_after: timedelta,
) -> dict[str, Any]:
    return {
        "day": issue_date,
        "ids": ids,
        "now": now,
        "lease_until": now + lease,
        "resends": in_doubt_resends,
        "resend_at": now + in_doubt_resend_after,
        # No cap is a cap nobody reaches.
        "max_attempts": max_attempts if max_attempts is not None else 2**31 - 1,
        "gave_up": f"gave up after {max_attempts} attempts; last error: ",
    }


def _finish_write(
    subscriber_id: int,
    issue_date: date,
    attempt: int | None,
    *,
    status: DeliveryStatus,
    now: datetime,
    **values: Any,
) -> Callable[[Connection], bool]:
    """The outcome of a claimed issue; its write says False if the issue was not being sent
    (only the holder of the claim may record its outcome)."""
    statement = _finish_statement(frozenset(values))
    params = {f"v_{name}": value for name, value in values.items()}
    params.update(sid=subscriber_id, day=issue_date, status=status.value, now=now, attempt=attempt)

    def write(connection: Connection) -> bool:
        return bool(connection.execute(statement, params).rowcount == 1)

    return write


def _count_hard_bounce(subscriber_id: int, suppress_after: int | None) -> Update:
    bounces = SubscriberRow.hard_bounces + 1
    suppress = bounces >= suppress_after if suppress_after is not None else false()
    return (
        update(SubscriberRow)
        .where(SubscriberRow.id == subscriber_id)
        .values(
            hard_bounces=bounces,
            status=case(
                (suppress, SubscriptionStatus.SUPPRESSED.value),
                else_=SubscriberRow.status,
            ),
        )
    )


class _DialectStatements:
    """Statements whose SQL differs between SQLite and PostgreSQL, built once per store."""

    def __init__(self, dialect: str) -> None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.plan_if_missing = (
            insert(DeliveryRow)
            .values(
                subscriber_id=bindparam("sid"),
                issue_date=bindparam("day"),
                status=DeliveryStatus.PLANNED.value,
                paper_ids=[],
                attempts=0,
                created_at=bindparam("now"),
                updated_at=bindparam("now"),
            )
            .on_conflict_do_nothing(index_elements=["subscriber_id", "issue_date"])
        )


def _row_data(row: SubscriberRow) -> dict[str, Any]:
    return _json_value_map(
        {column.key: getattr(row, column.key) for column in SubscriberRow.__table__.columns}
    )


def _json_value_map(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _json_value(value) for name, value in values.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")  # a stored email, as its text
    return value


@lru_cache(maxsize=1)
def _tables_referring_to_subscribers() -> list[tuple[Table, Column[Any]]]:
    """(table, column) of each foreign key to `subscribers.id`: whatever is added later that
    holds data about a subscriber is exported with them."""
    subscribers = SubscriberRow.__table__
    return [
        (table, foreign_key.parent)
        for table in SubscriberRow.metadata.sorted_tables
        for foreign_key in table.foreign_keys
        if foreign_key.column.table is subscribers
    ]


def new_link_key() -> str:
    """128 random bits: a subscriber's links cannot be made without it and the secret key."""
    return secrets.token_urlsafe(16)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (web, CLI) work while a digest run writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Deleted rows are overwritten with zeros: an erased subscriber's address must not stay
    # readable in free pages of the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _lease_ran_out(now: datetime) -> ColumnElement[bool]:
    """A claim whose sender died: it never recorded an outcome and its lease is over."""
    return (DeliveryRow.status == DeliveryStatus.SENDING) & (DeliveryRow.lease_expires_at < now)


def _issue_key(subscriber_id: int, issue_date: date) -> ColumnElement[bool]:
    return (DeliveryRow.subscriber_id == subscriber_id) & (DeliveryRow.issue_date == issue_date)


def _chunks(items: Sequence[Paper], size: int) -> Iterator[Sequence[Paper]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _paper_row(paper: Paper, *, now: datetime) -> PaperRow:
    return PaperRow(
        id=paper.id,
        title=paper.title,
        abstract=paper.abstract,
        authors=list(paper.authors),
        authors_count=paper.authors_count,
        published_date=paper.published_date,
        source=paper.source,
        url=paper.url,
        upvotes=paper.upvotes,
        comments=paper.comments,
        github_stars=paper.github_stars,
        first_seen_at=paper.first_seen_at or now,
        updated_at=now,
        summary=paper.summary,
        keywords=list(paper.keywords),
        categories=list(paper.categories),
        hf_url=paper.hf_url,
    )


def _signal_row(paper: Paper, *, now: datetime) -> PaperSignalRow:
    return PaperSignalRow(
        paper_id=paper.id,
        observed_at=now,
        upvotes=paper.upvotes,
        comments=paper.comments,
        github_stars=paper.github_stars,
    )


def _refresh_paper_row(row: PaperRow, paper: Paper, *, now: datetime) -> None:
    row.title = paper.title
    if paper.abstract:
        row.abstract = paper.abstract
    if paper.authors:
        row.authors = list(paper.authors)
    for name in ("authors_count", "published_date", "url", "hf_url", *TRENDING_FIELDS):
        value = getattr(paper, name)
        if value is not None:
            setattr(row, name, value)
    # What one source knows and another does not (HF's summary, arXiv's categories) is kept
    # when the other source brings the same paper: a paper seen on both is one paper.
    if paper.summary:
        row.summary = paper.summary
    if paper.keywords:
        row.keywords = list(paper.keywords)
    if paper.categories:
        row.categories = list(paper.categories)
    row.updated_at = now


def _paper(row: PaperRow) -> Paper:
    return Paper(
        id=row.id,
        title=row.title,
        abstract=row.abstract,
        authors=tuple(row.authors),
        authors_count=row.authors_count,
        published_date=row.published_date,
        source=row.source,
        url=row.url,
        upvotes=row.upvotes,
        comments=row.comments,
        github_stars=row.github_stars,
        first_seen_at=row.first_seen_at,
        summary=row.summary,
        keywords=tuple(row.keywords),
        categories=tuple(row.categories),
        hf_url=row.hf_url,
    )


def _apply_preferences(row: SubscriberRow, preferences: SubscriptionPreferences) -> None:
    row.keywords = list(preferences.interests.keywords)
    row.interests_text = preferences.interests.text
    row.time_zone = preferences.time_zone
    row.delivery_hour = preferences.delivery_hour
    row.frequency = preferences.frequency
    row.weekday = preferences.weekday
    row.trending_weight = preferences.trending_weight


def _locked_subscriber(session: Session, subscriber_id: int) -> SubscriberRow:
    row = session.scalar(
        select(SubscriberRow).where(SubscriberRow.id == subscriber_id).with_for_update()
    )
    if row is None:
        raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
    return row


def _consent_json(event: ConsentEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def _add_consent(row: SubscriberRow, event: ConsentEvent) -> None:
    """Append to the consent record, which keeps the first event (how the subscription began)
    and the newest ones: repeated signups of one address must not grow a row without bound."""
    events = [*row.consent, _consent_json(event)]
    if len(events) > MAX_CONSENT_EVENTS:
        events = [events[0], *events[-(MAX_CONSENT_EVENTS - 1) :]]
    row.consent = events


def _subscriber(row: SubscriberRow) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        status=SubscriptionStatus(row.status),
        interests=Interests(
            keywords=tuple(_without_controls(keyword) for keyword in row.keywords),
            text=_without_controls(row.interests_text),
        ),
        time_zone=row.time_zone,
        delivery_hour=row.delivery_hour,
        frequency=Frequency(row.frequency),
        weekday=row.weekday,
        trending_weight=row.trending_weight,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        consent=tuple(ConsentEvent.model_validate(event) for event in row.consent or ()),
        link_key=row.link_key,
    )


# Input with control characters is refused (`models.refuse_control_characters`), but rows stored
# before that rule may hold some: they are dropped on reading, so such a row still gets issues.
_CONTROLS = dict.fromkeys([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)])


def _without_controls(text: str) -> str:
    return text.translate(_CONTROLS)


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        subscriber_id=row.subscriber_id,
        issue_date=row.issue_date,
        status=DeliveryStatus(row.status),
        message_id=row.message_id,
        paper_ids=tuple(row.paper_ids),
        attempts=row.attempts,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
        in_doubt_count=row.in_doubt_count,
    )
