"""Rows to models and back: papers, subscribers (their preferences, interest profiles and
consent record) and ledger rows, and any row as JSON-able data."""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from service.models import (
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    Frequency,
    InterestProfile,
    Interests,
    IssueItem,
    Paper,
    ProfilePreferences,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.store.tables import DeliveryRow, PaperRow, PaperSignalRow, ProfileRow, SubscriberRow

# Events a consent record keeps: the first and the newest others.
MAX_CONSENT_EVENTS = 20

# Trending signals a re-import refreshes; the rest of a paper is refreshed only when given.
TRENDING_FIELDS = ("upvotes", "comments", "github_stars")


def paper_row(paper: Paper, *, now: datetime) -> PaperRow:
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
        github_repo=paper.github_repo,
    )


def signal_row(paper: Paper, *, now: datetime) -> PaperSignalRow:
    return PaperSignalRow(
        paper_id=paper.id,
        observed_at=now,
        upvotes=paper.upvotes,
        comments=paper.comments,
        github_stars=paper.github_stars,
    )


def refresh_paper_row(row: PaperRow, paper: Paper, *, now: datetime) -> None:
    row.title = paper.title
    if paper.abstract:
        row.abstract = paper.abstract
    if paper.authors:
        row.authors = list(paper.authors)
    # A field a source leaves out keeps what is known. For the code repository too: arXiv never
    # names one, and a repository rarely goes away while a field missing from one answer does.
    for name in (
        "authors_count",
        "published_date",
        "url",
        "hf_url",
        "github_repo",
        *TRENDING_FIELDS,
    ):
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


def to_paper(row: PaperRow) -> Paper:
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
        github_repo=row.github_repo,
    )


def apply_preferences(
    row: SubscriberRow, preferences: SubscriptionPreferences, *, with_votes: bool, now: datetime
) -> None:
    """Write the schedule to the row and the interests and mix to its first profile (made if
    there is none). The liked and disliked papers only `with_votes`: a new subscriber's seeds;
    later they change one vote at a time (`set_paper_vote`), so that saving a form that does
    not show them never loses one."""
    row.time_zone = preferences.time_zone
    row.delivery_hour = preferences.delivery_hour
    row.frequency = preferences.frequency
    row.weekday = preferences.weekday
    row.feed_only = preferences.feed_only
    if not row.profiles:
        row.profiles.append(
            new_profile_row(ProfilePreferences(), position=0, now=now, with_votes=False)
        )
    profile = row.profiles[0]
    apply_interests(profile, preferences.interests, with_votes=with_votes)
    profile.trending_weight = preferences.trending_weight
    profile.updated_at = now


def apply_interests(profile: ProfileRow, interests: Interests, *, with_votes: bool) -> None:
    profile.keywords = list(interests.keywords)
    profile.interests_text = interests.text
    profile.followed_authors = list(interests.authors)
    profile.excluded_topics = list(interests.excluded)
    if with_votes:
        profile.liked_papers = list(interests.liked)
        profile.disliked_papers = list(interests.disliked)


def apply_profile(profile: ProfileRow, preferences: ProfilePreferences, *, now: datetime) -> None:
    """Write a profile's name, interests (votes apart) and numbers."""
    profile.name = preferences.name
    apply_interests(profile, preferences.interests, with_votes=False)
    profile.trending_weight = preferences.trending_weight
    profile.papers_per_issue = preferences.papers_per_issue
    profile.updated_at = now


def new_profile_row(
    preferences: ProfilePreferences, *, position: int, now: datetime, with_votes: bool
) -> ProfileRow:
    profile = ProfileRow(
        position=position, liked_papers=[], disliked_papers=[], created_at=now, updated_at=now
    )
    apply_profile(profile, preferences, now=now)
    if with_votes:
        apply_interests(profile, preferences.interests, with_votes=True)
    return profile


def consent_json(event: ConsentEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def add_consent(row: SubscriberRow, event: ConsentEvent) -> None:
    """Append to the consent record, which keeps the first event (how the subscription began)
    and the newest ones: repeated signups of one address must not grow a row without bound."""
    events = [*row.consent, consent_json(event)]
    if len(events) > MAX_CONSENT_EVENTS:
        events = [events[0], *events[-(MAX_CONSENT_EVENTS - 1) :]]
    row.consent = events


def to_subscriber(row: SubscriberRow) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        status=SubscriptionStatus(row.status),
        time_zone=row.time_zone,
        delivery_hour=row.delivery_hour,
        frequency=Frequency(row.frequency),
        weekday=row.weekday,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        consent=tuple(ConsentEvent.model_validate(event) for event in row.consent or ()),
        link_key=row.link_key,
        profiles=tuple(to_profile(profile) for profile in row.profiles),
        feed_only=row.feed_only,
        bounce_score=row.bounce_score,
        last_bounce_at=row.last_bounce_at,
    )


def to_profile(row: ProfileRow) -> InterestProfile:
    return InterestProfile(
        id=row.id,
        name=row.name,
        interests=Interests(
            keywords=tuple(_without_controls(keyword) for keyword in row.keywords),
            text=_without_controls(row.interests_text),
            authors=tuple(row.followed_authors or ()),
            excluded=tuple(row.excluded_topics or ()),
            liked=tuple(row.liked_papers or ()),
            disliked=tuple(row.disliked_papers or ()),
        ),
        trending_weight=row.trending_weight,
        papers_per_issue=row.papers_per_issue,
    )


# Input with control characters is refused (`models.refuse_control_characters`), but rows stored
# before that rule may hold some: they are dropped on reading, so such a row still gets issues.
_CONTROLS = dict.fromkeys([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)])


def _without_controls(text: str) -> str:
    return text.translate(_CONTROLS)


def to_delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        subscriber_id=row.subscriber_id,
        issue_date=row.issue_date,
        status=DeliveryStatus(row.status),
        message_id=row.message_id,
        paper_ids=tuple(row.paper_ids),
        items=tuple(IssueItem.model_validate(item) for item in row.items or ()),
        attempts=row.attempts,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
        in_doubt_count=row.in_doubt_count,
    )


def items_json(items: Sequence[IssueItem]) -> list[dict[str, Any]]:
    """An issue's items as its ledger row keeps them."""
    return [item.model_dump(mode="json") for item in items]


def subscriber_row_json(row: SubscriberRow) -> dict[str, Any]:
    """Every stored column of a subscriber's row, as JSON-able data."""
    return json_values(
        {column.key: getattr(row, column.key) for column in SubscriberRow.__table__.columns}
    )


def json_values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _json_value(value) for name, value in values.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")  # a stored email, as its text
    return value
