"""SQLAlchemy table definitions. Only `store` and the migrations import this module."""

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from service.models import MAX_PROFILE_NAME_LENGTH

# Stable constraint names so Alembic migrations behave the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        list[str]: JSON,
    }


class PaperRow(Base):
    __tablename__ = "papers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(default=list)
    authors_count: Mapped[int | None]
    published_date: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(Text)
    upvotes: Mapped[int | None]
    comments: Mapped[int | None]
    github_stars: Mapped[int | None]
    first_seen_at: Mapped[datetime] = mapped_column(index=True)
    # Indexed for `papers_version`, asked before every batch: the latest refresh is then one
    # index probe, not a pass over every paper ever stored.
    updated_at: Mapped[datetime] = mapped_column(index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[list[str]] = mapped_column(default=list)
    categories: Mapped[list[str]] = mapped_column(default=list)
    hf_url: Mapped[str | None] = mapped_column(Text)
    # The paper's code repository, when a source names one (Hugging Face's `githubRepo`).
    github_repo: Mapped[str | None] = mapped_column(Text)


class CorpusTermRow(Base):
    """How many stored papers hold each stem, in title or abstract: the ranker's document
    frequencies, kept up to date as papers are added and edited (see `store.corpus`)."""

    __tablename__ = "corpus_terms"

    stem: Mapped[str] = mapped_column(Text, primary_key=True)
    papers: Mapped[int]


class CorpusTotalsRow(Base):
    """The one row of corpus totals beside `corpus_terms`, and the analysis version they were
    counted with (`ranking.terms.ANALYSIS_VERSION`; 0 until first counted)."""

    __tablename__ = "corpus_totals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_version: Mapped[int]
    papers: Mapped[int]
    title_terms: Mapped[int]
    abstract_terms: Mapped[int]


class PaperSignalRow(Base):
    """Each observation of a paper's trending signals, so trending can mean growth."""

    __tablename__ = "paper_signals"

    paper_id: Mapped[str] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    observed_at: Mapped[datetime] = mapped_column(primary_key=True)
    upvotes: Mapped[int | None]
    comments: Mapped[int | None]
    github_stars: Mapped[int | None]


class SubscriberRow(Base):
    __tablename__ = "subscribers"
    # Ids are never given again (SQLite would reuse the highest one once deleted); PostgreSQL's
    # sequence never does anyway.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    delivery_hour: Mapped[int]
    frequency: Mapped[str] = mapped_column(String(8))
    weekday: Mapped[int] = mapped_column(default=0)
    # Mailman's bounce score (hard bounce 1, soft 0.5, one bounce day counted once) and the
    # time of the last bounce, past which the score is stale: see `store.mail_events`.
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    last_bounce_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # Bound into the confirmation link; replaced when a new link is sent and cleared when one
    # is used, so each link confirms once and only the latest one works.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32))
    # What an unsubscribed person asked for when signing up again: applied when they confirm,
    # so nobody can change a subscription by typing its address into the signup form.
    requested_preferences: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The consent record: a list of ConsentEvent dicts, oldest first.
    consent: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Covered by the MAC of every link made for this row (see service.signup.tokens); NULL only in
    # rows from before migration 0007, whose older links stay readable.
    link_key: Mapped[str | None] = mapped_column(String(32))
    # Issues are made and archived as for everyone, and read in the feed: no email is sent.
    feed_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Loaded with the row, in one more query for any number of rows.
    profiles: Mapped[list["ProfileRow"]] = relationship(
        order_by="(ProfileRow.position, ProfileRow.id)",
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ProfileRow(Base):
    """A subscriber's named interest profile: a section of each of their issues."""

    __tablename__ = "profiles"
    __table_args__ = (
        # Names are told apart regardless of case in code; this catches the exact repeat.
        UniqueConstraint("subscriber_id", "name"),
        # Ids are never given again: a feedback link naming a removed profile must not
        # train a later one (see `subscribers`).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    # The reader's order; ties (never written by the store) go by id.
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(MAX_PROFILE_NAME_LENGTH))
    keywords: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    interests_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    followed_authors: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    excluded_topics: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    # Paper ids, oldest vote first; not foreign keys: a liked paper may not be stored yet.
    liked_papers: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    disliked_papers: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    trending_weight: Mapped[float] = mapped_column(Float)
    papers_per_issue: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SuppressionRow(Base):
    """Addresses erased at their owner's request, kept only as keyed hashes: the address is
    never mailed again unless its owner signs up and confirms anew."""

    __tablename__ = "suppressed_addresses"

    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]


class MailEventRow(Base):
    """Bounces, complaints and unsubscribes, one row each: a subscriber's bounce history and
    the per-day figures of `paperwire stats`. Deleted with the subscriber."""

    __tablename__ = "mail_events"
    __table_args__ = (
        Index("ix_mail_events_subscriber_id_at", "subscriber_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(16))
    issue_date: Mapped[date | None] = mapped_column(Date)
    status_code: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")


class InboundMessageRow(Base):
    """Mail the inbound receiver took but could not act on (not a bounce, complaint or
    unsubscribe it could tie to a subscriber): kept for the operator, newest few only."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    # What the receiver made of it, e.g. "not a report" or "bounce for no known issue".
    note: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int]
    # The message as received, cut at `INBOUND_KEPT_BYTES`.
    data: Mapped[bytes] = mapped_column(LargeBinary)


class WebhookReceiptRow(Base):
    """Ids of relay webhook calls already acted on, so a replayed call changes nothing."""

    __tablename__ = "webhook_receipts"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    receipt_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)


class DeliveryRow(Base):
    """The delivery ledger: one row per (subscriber, issue date)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "issue_date"),
        # For a day's issues (sweep, stats). No index on status alone: see migration 0004.
        Index("ix_deliveries_issue_date_subscriber_id", "issue_date", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    issue_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(255))
    paper_ids: Mapped[list[str]] = mapped_column(default=list)
    # What the reader saw of each paper, in the order sent: dicts of "paper_id", "why" (the
    # why-line) and "section" (the interest profile it was picked for). Empty in issues from
    # before migration 0010.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None]
    # A `retry` row is claimable again from this time on.
    next_attempt_at: Mapped[datetime | None]
    # Past this time the issue is not worth sending (nobody wants yesterday's digest late).
    expires_at: Mapped[datetime | None]
    # When the row was last handed to the broker, so the sweep can tell lost messages.
    enqueued_at: Mapped[datetime | None]
    # Set just before the message goes to the relay: a sender lost after this point may have
    # delivered it, so its issue is in doubt rather than safe to send again.
    data_started_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # Attempts that ended in doubt (the relay may have taken the message): such an issue is
    # resent at most `in_doubt_resends` times, and never ends plain `failed` or `expired`,
    # which an operator's retry would send again.
    in_doubt_count: Mapped[int] = mapped_column(default=0)


class NoticeRow(Base):
    """A one-off email a visitor asked for (confirmation, manage link), stored before it is
    sent and deleted once sent: a web process that dies mid-send leaves it for the next one."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(default=list)
    message_id: Mapped[str] = mapped_column(String(255))
    # The message as it goes on the wire.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A sender holds it until then; past it, a sender that died is assumed and it is due again.
    lease_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    # Past this nobody wants it (its link has expired): it is dropped unsent.
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
