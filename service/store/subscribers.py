"""The store's subscribers: signup, confirmation, preferences (the schedule and the first
interest profile; `profiles` keeps the others) and status, their schedules, votes,
erasure with its suppression list, and the record a data-access request is owed."""

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Table, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.delivery.schedule import Schedule
from service.errors import AlreadySubscribed, InvalidInput, UnknownSubscriber
from service.models import (
    PAPER_ID_PATTERN,
    ConsentEvent,
    Frequency,
    Interests,
    MailEventKind,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
    UnsubscribeChannel,
    Vote,
)
from service.store.database import Database
from service.store.rows import (
    add_consent,
    apply_preferences,
    consent_json,
    json_values,
    subscriber_row_json,
    to_subscriber,
)
from service.store.tables import (
    DeliveryRow,
    MailEventRow,
    NoticeRow,
    ProfileRow,
    SubscriberRow,
    SuppressionRow,
)


class SubscriberStore(Database):
    """Subscribers, their consent record and the suppression list."""

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
            confirm_nonce=confirm_nonce,
            consent=[consent_json(event) for event in consent],
            link_key=new_link_key(),
        )
        apply_preferences(row, preferences, with_votes=True, now=now)
        try:
            with self._session() as session:
                session.add(row)
        except IntegrityError as exc:
            raise AlreadySubscribed(f"{email} is already subscribed") from exc
        return to_subscriber(row)

    def get_subscriber(self, subscriber_id: int) -> Subscriber:
        with self._session() as session:
            row = session.get(SubscriberRow, subscriber_id)
            if row is None:
                raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
            return to_subscriber(row)

    def get_subscribers(self, subscriber_ids: Sequence[int]) -> dict[int, Subscriber]:
        query = select(SubscriberRow).where(SubscriberRow.id.in_(list(subscriber_ids)))
        with self._session() as session:
            return {row.id: to_subscriber(row) for row in session.scalars(query)}

    def find_subscriber(self, email: str) -> Subscriber:
        with self._session() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
            if row is None:
                raise UnknownSubscriber(f"no subscriber with address {email}")
            return to_subscriber(row)

    def find_subscriber_by_email(self, email: str) -> Subscriber | None:
        with self._session() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
            return None if row is None else to_subscriber(row)

    def list_subscribers(self, *, status: SubscriptionStatus | None = None) -> list[Subscriber]:
        query = select(SubscriberRow).order_by(SubscriberRow.id)
        if status is not None:
            query = query.where(SubscriberRow.status == status)
        with self._session() as session:
            return [to_subscriber(row) for row in session.scalars(query)]

    def remove_subscriber(self, email: str) -> None:
        """Delete a subscriber with their ledger rows, which hold their reading history."""
        with self._session() as session:
            row = session.scalar(select(SubscriberRow).where(SubscriberRow.email == email))
            if row is None:
                raise UnknownSubscriber(f"no subscriber with address {email}")
            # Delete children explicitly: SQLite enforces ON DELETE CASCADE only with a pragma.
            session.execute(delete(DeliveryRow).where(DeliveryRow.subscriber_id == row.id))
            session.execute(delete(NoticeRow).where(NoticeRow.subscriber_id == row.id))
            session.delete(row)  # and its profiles, which the session has loaded with it
        self._forget_deleted()

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
            row = locked_subscriber(session, subscriber_id)
            if row.status == SubscriptionStatus.PENDING:
                apply_preferences(row, preferences, with_votes=True, now=consent.at)
                # A fresh link: the pending row lives as long as the link, not from the
                # first request (pending rows are pruned by age).
                row.created_at = consent.at
            row.requested_preferences = preferences.model_dump(mode="json")
            row.confirm_nonce = confirm_nonce
            add_consent(row, consent)

    def confirm_subscriber(
        self, subscriber_id: int, confirm_nonce: str, *, consent: ConsentEvent
    ) -> bool:
        """Confirm with the nonce of the latest link; False if that link was used or
        superseded (or the subscriber is gone). The preferences asked for with that link
        apply now."""
        with self._session() as session:
            row = locked_subscriber_or_none(session, subscriber_id)
            if row is None or row.confirm_nonce is None or row.confirm_nonce != confirm_nonce:
                return False
            if row.requested_preferences is not None:
                requested = SubscriptionPreferences.model_validate(row.requested_preferences)
                apply_preferences(row, requested, with_votes=False, now=consent.at)
                # Papers liked on the new signup join those the first profile liked before.
                for paper_id in requested.interests.liked:
                    write_vote(row.profiles[0], paper_id, Vote.LIKE)
            row.status = SubscriptionStatus.CONFIRMED
            row.confirmed_at = consent.at
            row.unsubscribed_at = None
            # Confirming again shows the mailbox works: the bounce history stays, the score
            # starts afresh.
            row.bounce_score = 0.0
            row.last_bounce_at = None
            row.confirm_nonce = None
            row.requested_preferences = None
            add_consent(row, consent)
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
            return to_subscriber(row).preferences()

    def update_preferences(
        self,
        subscriber_id: int,
        preferences: SubscriptionPreferences,
        *,
        now: datetime | None = None,
    ) -> None:
        """Replace the schedule and the first profile's interests and mix, except its liked
        and disliked papers (`set_paper_vote`)."""
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            apply_preferences(row, preferences, with_votes=False, now=now or datetime.now(UTC))

    def set_paper_vote(
        self,
        subscriber_id: int,
        paper_id: str,
        vote: Vote | None,
        *,
        profile_id: int | None = None,
    ) -> Vote | None:
        """Make `vote` the one verdict of a profile on `paper_id` (None takes it back); return
        the verdict it replaces. Setting the same vote twice changes nothing. The profile is
        `profile_id` if the subscriber still has it, else their first one."""
        if not re.fullmatch(PAPER_ID_PATTERN, paper_id):
            # Stored, it would make the subscriber's interests unreadable.
            raise InvalidInput(f"not a paper id: {paper_id[:80]!r}")
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            profile = next((p for p in row.profiles if p.id == profile_id), None)
            if profile is None and row.profiles:
                profile = row.profiles[0]
            if profile is None:
                raise UnknownSubscriber(f"subscriber {subscriber_id} has no interest profile")
            return write_vote(profile, paper_id, vote)

    def change_status(
        self,
        subscriber_id: int,
        status: SubscriptionStatus,
        *,
        consent: ConsentEvent,
        allowed_from: Sequence[SubscriptionStatus],
        channel: UnsubscribeChannel = UnsubscribeChannel.ADMIN,
    ) -> bool:
        """Move a subscriber to `status` if their status is one of `allowed_from`; False (and
        nothing written) otherwise. Unsubscribing also voids any confirmation link, and is
        counted as an unsubscribe event through `channel`."""
        with self._session() as session:
            row = locked_subscriber(session, subscriber_id)
            if row.status not in allowed_from:
                return False
            row.status = status
            if status is SubscriptionStatus.UNSUBSCRIBED:
                row.unsubscribed_at = consent.at
                row.confirm_nonce = None
                row.requested_preferences = None
                session.add(
                    MailEventRow(
                        subscriber_id=subscriber_id,
                        at=consent.at,
                        kind=MailEventKind.UNSUBSCRIBE.value,
                        via=channel.value,
                    )
                )
            add_consent(row, consent)
            return True

    def erase_subscriber(self, subscriber_id: int, *, address_hash: str, now: datetime) -> None:
        """Delete a subscriber and their ledger rows, leaving only a suppression entry, and no
        copy in the database's files (see `_forget_deleted`)."""
        with self._session() as session:
            session.execute(delete(DeliveryRow).where(DeliveryRow.subscriber_id == subscriber_id))
            session.execute(delete(NoticeRow).where(NoticeRow.subscriber_id == subscriber_id))
            session.execute(delete(ProfileRow).where(ProfileRow.subscriber_id == subscriber_id))
            session.execute(delete(MailEventRow).where(MailEventRow.subscriber_id == subscriber_id))
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
            record: dict[str, Any] = {"subscriber": subscriber_row_json(row)}
            for table, column in _tables_referring_to_subscribers():
                rows = session.execute(
                    select(table).where(column == subscriber_id).order_by(*table.primary_key)
                ).mappings()
                record[table.name] = [json_values(dict(mapping)) for mapping in rows]
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

    def subscriber_counts(self) -> tuple[dict[SubscriptionStatus, int], int]:
        """Subscribers per status, and the hard bounces of all of them ever recorded."""
        query = select(SubscriberRow.status, func.count()).group_by(SubscriberRow.status)
        hard_bounces = (
            select(func.count())
            .select_from(MailEventRow)
            .where(MailEventRow.kind == MailEventKind.HARD_BOUNCE.value)
        )
        with self._session() as session:
            rows = session.execute(query).all()
            bounces = session.scalar(hard_bounces) or 0
        return {SubscriptionStatus(status): count for status, count in rows}, int(bounces)


def new_link_key() -> str:
    """128 random bits: a subscriber's links cannot be made without it and the secret key."""
    return secrets.token_urlsafe(16)


def write_vote(profile: ProfileRow, paper_id: str, vote: Vote | None) -> Vote | None:
    interests = Interests(
        liked=tuple(profile.liked_papers), disliked=tuple(profile.disliked_papers)
    )
    before = interests.vote_of(paper_id)
    if before is not vote:
        after = interests.with_vote(paper_id, vote)
        profile.liked_papers = list(after.liked)
        profile.disliked_papers = list(after.disliked)
    return before


def locked_subscriber_or_none(session: Session, subscriber_id: int) -> SubscriberRow | None:
    """The subscriber's row, locked until the transaction ends; None if there is none."""
    return session.scalar(
        select(SubscriberRow).where(SubscriberRow.id == subscriber_id).with_for_update()
    )


def locked_subscriber(session: Session, subscriber_id: int) -> SubscriberRow:
    row = locked_subscriber_or_none(session, subscriber_id)
    if row is None:
        raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
    return row


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
