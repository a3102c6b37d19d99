"""Bounces, complaints and unsubscribes as they are recorded, the bounce score they make, the
operator's inbox of inbound mail nothing acted on, and the receipts that make relay webhooks
idempotent.

The bounce score works as Mailman's does: a hard bounce adds 1, a soft one 0.5, and a day
counts once, at its worst (a relay's DSN and its webhook for the same issue are one bounce). A
bounce more than `BouncePolicy.stale_after` after the previous one starts the score afresh.
At `BouncePolicy.limit` a confirmed or paused subscriber is suppressed with reason "bouncing".
A later successful delivery changes nothing; confirming the subscription again resets the
score (the history stays)."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.models import (
    BOUNCE_KINDS,
    BouncePolicy,
    ConsentEvent,
    MailEvent,
    MailEventKind,
    SubscriptionStatus,
)
from service.store.database import Database
from service.store.rows import add_consent
from service.store.subscribers import locked_subscriber_or_none
from service.store.tables import (
    InboundMessageRow,
    MailEventRow,
    WebhookReceiptRow,
)

BOUNCE_WEIGHTS = {MailEventKind.HARD_BOUNCE: 1.0, MailEventKind.SOFT_BOUNCE: 0.5}
# Statuses a bounce or a complaint may suppress: others get no mail anyway.
SUPPRESSIBLE = (SubscriptionStatus.CONFIRMED.value, SubscriptionStatus.PAUSED.value)
MAX_DETAIL_CHARS = 500
# The inbox is for a person to look through, not an archive: the oldest go past these.
INBOUND_KEPT_MESSAGES = 500
INBOUND_KEPT_BYTES = 64 * 1024


@dataclass(frozen=True)
class BounceOutcome:
    score: float
    suppressed: bool  # by this bounce


@dataclass(frozen=True)
class InboundMessage:
    id: int
    received_at: datetime
    mail_from: str
    rcpt_to: str
    subject: str
    note: str
    size: int
    data: bytes


def write_bounce(
    session: Session,
    subscriber_id: int,
    kind: MailEventKind,
    *,
    via: str,
    at: datetime,
    policy: BouncePolicy,
    issue_date: date | None = None,
    status_code: str | None = None,
    detail: str = "",
) -> BounceOutcome | None:
    """Record a bounce in `session`'s transaction and score it; None if the subscriber is
    gone. Shared by the ledger (a refusal while sending) and bounce processing."""
    if kind not in BOUNCE_KINDS:
        raise ValueError(f"{kind} is not a bounce")
    row = locked_subscriber_or_none(session, subscriber_id)
    if row is None:
        return None
    day_start = datetime.combine(at.astimezone(UTC).date(), datetime.min.time(), UTC)
    kinds_today = session.scalars(
        select(MailEventRow.kind)
        .where(MailEventRow.subscriber_id == subscriber_id)
        .where(MailEventRow.kind.in_([k.value for k in BOUNCE_KINDS]))
        .where(MailEventRow.at >= day_start, MailEventRow.at < day_start + timedelta(days=1))
    ).all()
    counted_today = max((BOUNCE_WEIGHTS[MailEventKind(k)] for k in kinds_today), default=0.0)
    base = policy.current_score(row.bounce_score, row.last_bounce_at, now=at)
    score = base + max(0.0, BOUNCE_WEIGHTS[kind] - counted_today)
    session.add(
        MailEventRow(
            subscriber_id=subscriber_id,
            at=at,
            kind=kind.value,
            via=via,
            issue_date=issue_date,
            status_code=status_code,
            detail=detail[:MAX_DETAIL_CHARS],
        )
    )
    row.bounce_score = score
    if row.last_bounce_at is None or at > row.last_bounce_at:
        row.last_bounce_at = at
    suppressed = score >= policy.limit and row.status in SUPPRESSIBLE
    if suppressed:
        row.status = SubscriptionStatus.SUPPRESSED.value
        add_consent(
            row,
            ConsentEvent(event="suppressed", at=at, via="bounce processing", reason="bouncing"),
        )
    return BounceOutcome(score=score, suppressed=suppressed)


class MailEventStore(Database):
    def record_bounce(
        self,
        subscriber_id: int,
        kind: MailEventKind,
        *,
        via: str,
        at: datetime,
        policy: BouncePolicy,
        issue_date: date | None = None,
        status_code: str | None = None,
        detail: str = "",
    ) -> BounceOutcome | None:
        """See `write_bounce`; its own transaction."""
        with self._session() as session:
            return write_bounce(
                session,
                subscriber_id,
                kind,
                via=via,
                at=at,
                policy=policy,
                issue_date=issue_date,
                status_code=status_code,
                detail=detail,
            )

    def record_complaint(
        self,
        subscriber_id: int,
        *,
        via: str,
        at: datetime,
        issue_date: date | None = None,
        detail: str = "",
    ) -> bool:
        """A spam complaint: always recorded, and the subscriber is suppressed at once
        (planning takes confirmed subscribers only). False if the subscriber is gone."""
        with self._session() as session:
            row = locked_subscriber_or_none(session, subscriber_id)
            if row is None:
                return False
            session.add(
                MailEventRow(
                    subscriber_id=subscriber_id,
                    at=at,
                    kind=MailEventKind.COMPLAINT.value,
                    via=via,
                    issue_date=issue_date,
                    detail=detail[:MAX_DETAIL_CHARS],
                )
            )
            if row.status != SubscriptionStatus.SUPPRESSED.value:
                if row.status != SubscriptionStatus.UNSUBSCRIBED.value:
                    row.unsubscribed_at = at
                row.status = SubscriptionStatus.SUPPRESSED.value
                row.confirm_nonce = None
                row.requested_preferences = None
                add_consent(
                    row,
                    ConsentEvent(
                        event="suppressed", at=at, via=f"complaint ({via})", reason="complaint"
                    ),
                )
            return True

    def mail_events(
        self, subscriber_id: int, *, since: datetime | None = None, limit: int = 50
    ) -> list[MailEvent]:
        """A subscriber's events, newest first."""
        query = select(MailEventRow).where(MailEventRow.subscriber_id == subscriber_id)
        if since is not None:
            query = query.where(MailEventRow.at >= since)
        query = query.order_by(MailEventRow.at.desc(), MailEventRow.id.desc()).limit(limit)
        with self._session() as session:
            return [_to_mail_event(row) for row in session.scalars(query)]

    def mail_event_counts(self, *, since: date) -> dict[date, Counter[tuple[str, str]]]:
        """Events per UTC day from `since` on, counted by (kind, via)."""
        start = datetime.combine(since, datetime.min.time(), UTC)
        query = (
            select(MailEventRow.at, MailEventRow.kind, MailEventRow.via)
            .where(MailEventRow.at >= start)
            .order_by(MailEventRow.at)
        )
        counts: dict[date, Counter[tuple[str, str]]] = {}
        with self._session() as session:
            # Grouped here, not in SQL: a UTC day is spelled differently on each database,
            # and a week of events is small.
            for at, kind, via in session.execute(query):
                counts.setdefault(at.astimezone(UTC).date(), Counter())[(kind, via)] += 1
        return counts

    def add_inbound_message(
        self,
        *,
        received_at: datetime,
        mail_from: str,
        rcpt_to: str,
        subject: str,
        note: str,
        data: bytes,
    ) -> int:
        """Keep a message for the operator (its first `INBOUND_KEPT_BYTES`), dropping the
        oldest past `INBOUND_KEPT_MESSAGES`."""
        with self._session() as session:
            row = InboundMessageRow(
                received_at=received_at,
                mail_from=mail_from[:320],
                rcpt_to=rcpt_to[:320],
                subject=subject[:MAX_DETAIL_CHARS],
                note=note[:MAX_DETAIL_CHARS],
                size=len(data),
                data=data[:INBOUND_KEPT_BYTES],
            )
            session.add(row)
            session.flush()
            oldest_kept = (
                select(InboundMessageRow.id)
                .order_by(InboundMessageRow.id.desc())
                .offset(INBOUND_KEPT_MESSAGES - 1)
                .limit(1)
                .scalar_subquery()
            )
            session.execute(delete(InboundMessageRow).where(InboundMessageRow.id < oldest_kept))
            return row.id

    def inbound_messages(self, *, limit: int = 50) -> list[InboundMessage]:
        """Newest first."""
        query = select(InboundMessageRow).order_by(InboundMessageRow.id.desc()).limit(limit)
        with self._session() as session:
            return [_to_inbound(row) for row in session.scalars(query)]

    def get_inbound_message(self, message_id: int) -> InboundMessage | None:
        with self._session() as session:
            row = session.get(InboundMessageRow, message_id)
            return None if row is None else _to_inbound(row)

    def remember_webhook_receipt(
        self, provider: str, receipt_id: str, *, now: datetime, keep: timedelta
    ) -> bool:
        """Note a webhook call's id; False if it was noted before (a replay). Ids older than
        `keep` are forgotten: the caller refuses calls that old by their timestamp."""
        with self._session() as session:
            session.execute(
                delete(WebhookReceiptRow).where(WebhookReceiptRow.received_at < now - keep)
            )
        try:
            with self._session() as session:
                session.add(
                    WebhookReceiptRow(provider=provider, receipt_id=receipt_id, received_at=now)
                )
        except IntegrityError:
            return False
        return True


def _to_mail_event(row: MailEventRow) -> MailEvent:
    return MailEvent(
        id=row.id,
        subscriber_id=row.subscriber_id,
        at=row.at,
        kind=MailEventKind(row.kind),
        via=row.via,
        issue_date=row.issue_date,
        status_code=row.status_code,
        detail=row.detail,
    )


def _to_inbound(row: InboundMessageRow) -> InboundMessage:
    return InboundMessage(
        id=row.id,
        received_at=row.received_at,
        mail_from=row.mail_from,
        rcpt_to=row.rcpt_to,
        subject=row.subject,
        note=row.note,
        size=row.size,
        data=row.data,
    )
