"""Domain models: the nouns of Paperwire. Data only, no I/O."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_KEYWORDS = 30
MAX_KEYWORD_LENGTH = 100
MAX_INTERESTS_TEXT_LENGTH = 1000
# Authors followed and topics left out: names and phrases, each as long as a keyword.
MAX_AUTHORS = 20
MAX_EXCLUDED_TOPICS = 20
# Papers liked (seeds and 👍) and disliked (👎): a vote beyond this drops the oldest, so a
# profile stays cheap to rank and its newest taste counts.
MAX_PAPER_VOTES = 100
PAPER_ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"

# How far a digest leans on what is trending rather than on a subscriber's interests: 0 ranks
# by their interests alone, 1 by trending signals alone. The CLI, the pages and the API share it.
MIN_TRENDING_WEIGHT = 0.0
MAX_TRENDING_WEIGHT = 1.0
DEFAULT_TRENDING_WEIGHT = 0.3

# Interest profiles: each one a section of the digest, with its own number of papers.
DEFAULT_PROFILE_NAME = "My interests"
MAX_PROFILE_NAME_LENGTH = 60
MIN_PAPERS_PER_ISSUE = 1
MAX_PAPERS_PER_ISSUE = 30
DEFAULT_PAPERS_PER_ISSUE = 10

# Control characters (C0, DEL, C1) left once white space is collapsed: no reader types them, a
# NUL cannot even be stored in PostgreSQL text, and they would end up in emails and pages.
_CONTROL_CHARACTERS = frozenset(chr(code) for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)))


def refuse_control_characters(value: str, *, what: str) -> str:
    if not _CONTROL_CHARACTERS.isdisjoint(value):
        raise ValueError(f"{what} contains a control character")
    return value


# A digest issue: (subscriber id, issue date). The pair that identifies it everywhere, and what
# makes sending it idempotent.
IssueKey = tuple[int, date]


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    SUPPRESSED = "suppressed"
    # Confirmed, but wants no issues for now: planning only ever takes CONFIRMED subscribers.
    PAUSED = "paused"


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class DeliveryStatus(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    RETRY = "retry"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    EXPIRED = "expired"
    # The relay refused the message for good (5xx but 552), or the address cannot be written
    # in a header: sending it again would be refused again.
    REFUSED = "refused"


# The ledger keeps at least this many days of issues, whatever the retention: the reading
# history (never the same paper twice) reads the last 8, the sweep and `stats` the last month.
SHORTEST_LEDGER_RETENTION_DAYS = 30

# The issues a reader has, or most likely has (one in doubt most likely arrived): those their
# archive and feed show.
ARCHIVED_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.IN_DOUBT)


class Vote(StrEnum):
    """A reader's verdict on a paper: 👍 "more like this" or 👎 "less like this"."""

    LIKE = "like"
    DISLIKE = "dislike"


def _clean_phrases(value: object, *, what: str) -> object:
    """Strip, collapse white space and drop empty or repeated phrases, keeping order."""
    if not isinstance(value, list | tuple):
        return value
    cleaned: dict[str, str] = {}
    for raw in value:
        if not isinstance(raw, str):
            return value  # let pydantic report the wrong type
        phrase = refuse_control_characters(" ".join(raw.split()), what=what)
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise ValueError(f"{what} longer than {MAX_KEYWORD_LENGTH} characters")
        if phrase:
            cleaned.setdefault(phrase.casefold(), phrase)
    return tuple(cleaned.values())


def _clean_paper_ids(value: object) -> object:
    """Drop repeated ids, keeping the first place of each."""
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        return value
    return tuple(dict.fromkeys(item.strip() for item in value if item.strip()))


class Interests(BaseModel):
    """What a subscriber wants to read about: phrases, an optional sentence, authors to follow,
    topics to leave out, and the papers they liked (seeds and 👍) and disliked (👎)."""

    model_config = ConfigDict(frozen=True)

    keywords: tuple[str, ...] = Field((), max_length=MAX_KEYWORDS)
    text: str = Field("", max_length=MAX_INTERESTS_TEXT_LENGTH)
    authors: tuple[str, ...] = Field((), max_length=MAX_AUTHORS)
    excluded: tuple[str, ...] = Field((), max_length=MAX_EXCLUDED_TOPICS)
    liked: tuple[Annotated[str, Field(pattern=PAPER_ID_PATTERN)], ...] = Field(
        (), max_length=MAX_PAPER_VOTES
    )
    disliked: tuple[Annotated[str, Field(pattern=PAPER_ID_PATTERN)], ...] = Field(
        (), max_length=MAX_PAPER_VOTES
    )

    @field_validator("keywords", mode="before")
    @classmethod
    def _clean_keywords(cls, value: object) -> object:
        return _clean_phrases(value, what="an interest")

    @field_validator("authors", mode="before")
    @classmethod
    def _clean_authors(cls, value: object) -> object:
        return _clean_phrases(value, what="an author")

    @field_validator("excluded", mode="before")
    @classmethod
    def _clean_excluded(cls, value: object) -> object:
        return _clean_phrases(value, what="a topic to leave out")

    @field_validator("liked", "disliked", mode="before")
    @classmethod
    def _clean_paper_ids(cls, value: object) -> object:
        return _clean_paper_ids(value)

    @field_validator("text")
    @classmethod
    def _clean_text(cls, value: str) -> str:
        return refuse_control_characters(" ".join(value.split()), what="the sentence")

    @property
    def is_empty(self) -> bool:
        """Nothing to rank by but trending: no phrases, no sentence, no liked paper."""
        return not self.keywords and not self.text.strip() and not self.liked

    def vote_of(self, paper_id: str) -> Vote | None:
        if paper_id in self.liked:
            return Vote.LIKE
        if paper_id in self.disliked:
            return Vote.DISLIKE
        return None

    def with_vote(self, paper_id: str, vote: Vote | None) -> "Interests":
        """These interests with `vote` as the one verdict on `paper_id` (None: no verdict);
        the newest vote goes last and the oldest drop out beyond `MAX_PAPER_VOTES`."""
        liked = [paper for paper in self.liked if paper != paper_id]
        disliked = [paper for paper in self.disliked if paper != paper_id]
        if vote is Vote.LIKE:
            liked = [*liked, paper_id][-MAX_PAPER_VOTES:]
        elif vote is Vote.DISLIKE:
            disliked = [*disliked, paper_id][-MAX_PAPER_VOTES:]
        return self.model_copy(update={"liked": tuple(liked), "disliked": tuple(disliked)})


class Paper(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1)
    abstract: str = ""
    authors: tuple[str, ...] = ()
    authors_count: int | None = Field(None, ge=0)
    published_date: date | None = None
    source: str = "import"
    url: str | None = None
    upvotes: int | None = Field(None, ge=0)
    comments: int | None = Field(None, ge=0)
    github_stars: int | None = Field(None, ge=0)
    first_seen_at: datetime | None = None
    # A short machine-written summary (Hugging Face's `ai_summary`): the digest snippet when set.
    summary: str = ""
    # Extra ranking text (Hugging Face's `ai_keywords`), never shown.
    keywords: tuple[str, ...] = ()
    # arXiv categories, primary first (cs.LG, stat.ML, …).
    categories: tuple[str, ...] = ()
    # The paper's Hugging Face page, beside `url` (the arXiv abstract page).
    hf_url: str | None = None
    # The paper's code repository (Hugging Face's `githubRepo`), as `code_repository_url`
    # accepts it.
    github_repo: str | None = None


# Hosts whose pages a digest links as a paper's "Code". A source's repository field is typed by
# whoever submitted the paper, and a link a digest labels "Code" should lead to code, not to any
# page at all.
CODE_HOSTS = frozenset({"github.com", "gitlab.com", "codeberg.org", "bitbucket.org"})
MAX_REPOSITORY_URL_LENGTH = 500


def code_repository_url(value: object) -> str | None:
    """`value` as the https URL of a repository on one of CODE_HOSTS, or None.

    Anything else (another scheme, another host, a user name or port in the address, no path,
    white space or control characters) is no repository link; an http one becomes https,
    which every one of those hosts serves."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or len(url) > MAX_REPOSITORY_URL_LENGTH or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.netloc.lower().removeprefix("www.")
    # The whole netloc must be the host: no "user@", no port.
    if parts.scheme.lower() not in ("http", "https") or host not in CODE_HOSTS:
        return None
    if not parts.path.strip("/"):
        return None
    return urlunsplit(("https", parts.netloc.lower(), parts.path, parts.query, parts.fragment))


# A source's repository field: the link `code_repository_url` makes of it, else None (the
# paper is kept without it).
CodeRepository = Annotated[str | None, BeforeValidator(code_repository_url)]


class SignalObservation(BaseModel):
    """The trending signals of one paper as a source reported them at one time."""

    model_config = ConfigDict(frozen=True)

    paper_id: str
    observed_at: datetime
    upvotes: int | None = None
    comments: int | None = None
    github_stars: int | None = None


def check_time_zone(name: str) -> str:
    if not name.isprintable() or len(name) > 64:
        raise ValueError(f"unknown time zone {name[:64]!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


class DeliveryPreferences(BaseModel):
    """When a subscriber gets their issues: time zone, hour, daily or weekly."""

    model_config = ConfigDict(frozen=True)

    time_zone: str = "UTC"
    delivery_hour: int = Field(8, ge=0, le=23)
    frequency: Frequency = Frequency.DAILY
    weekday: int = Field(0, ge=0, le=6, description="Monday=0; used by weekly subscribers.")

    _known_time_zone = field_validator("time_zone")(check_time_zone)


class SubscriptionPreferences(DeliveryPreferences):
    """What a subscriber chooses on the one-profile forms (signup, the manage page's
    preferences, `subscribers add`): the schedule, the interests and trending/relevance mix
    of their first interest profile, and whether issues are emailed or only read in the
    feed."""

    interests: Interests = Interests()
    trending_weight: float = Field(
        DEFAULT_TRENDING_WEIGHT, ge=MIN_TRENDING_WEIGHT, le=MAX_TRENDING_WEIGHT
    )
    feed_only: bool = Field(
        False, description="Issues are made for the archive and the feed; none is emailed."
    )


def check_profile_name(value: str) -> str:
    """A profile's name as shown: white space collapsed, 1 to MAX_PROFILE_NAME_LENGTH
    characters, no control characters (it heads a section of an email)."""
    name = refuse_control_characters(" ".join(value.split()), what="a profile name")
    if not name:
        raise ValueError("a profile needs a name")
    if len(name) > MAX_PROFILE_NAME_LENGTH:
        raise ValueError(f"a profile name is at most {MAX_PROFILE_NAME_LENGTH} characters")
    return name


class ProfilePreferences(BaseModel):
    """What one interest profile holds: a name, what an interest holds, its own mix of
    trending and relevance, and how many papers its section of an issue may have."""

    model_config = ConfigDict(frozen=True)

    name: str = DEFAULT_PROFILE_NAME
    interests: Interests = Interests()
    trending_weight: float = Field(
        DEFAULT_TRENDING_WEIGHT, ge=MIN_TRENDING_WEIGHT, le=MAX_TRENDING_WEIGHT
    )
    papers_per_issue: int = Field(
        DEFAULT_PAPERS_PER_ISSUE, ge=MIN_PAPERS_PER_ISSUE, le=MAX_PAPERS_PER_ISSUE
    )

    _clean_name = field_validator("name")(check_profile_name)


class InterestProfile(ProfilePreferences):
    """A stored profile: its id is never given again, so a link naming it cannot reach a
    later one."""

    id: int


class ConsentEvent(BaseModel):
    """One step of a subscription's consent record: who asked, from where, through what."""

    model_config = ConfigDict(frozen=True)

    event: str  # requested, confirmed, unsubscribed, paused, resumed, suppressed
    at: datetime
    ip: str | None = None
    user_agent: str | None = None
    via: str = ""  # the form or API endpoint, e.g. "web signup form"
    # Why the service itself acted, e.g. "bouncing" or "complaint" on a suppression.
    reason: str = ""


class MailEventKind(StrEnum):
    """What a recipient's side said about mail after (or while) it was sent."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


BOUNCE_KINDS = (MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE)


@dataclass(frozen=True)
class BouncePolicy:
    """When bounces suppress a subscriber: at a score of `limit`, counting only bounces that
    follow each other within `stale_after` (settings `bounce_score_limit`,
    `bounce_stale_days`)."""

    limit: float = 5.0
    stale_after: timedelta = timedelta(days=7)

    def current_score(
        self, score: float, last_bounce_at: datetime | None, *, now: datetime
    ) -> float:
        """A stored score as it stands at `now`: nothing once the last bounce is stale."""
        if last_bounce_at is None or now - last_bounce_at > self.stale_after:
            return 0.0
        return score


class UnsubscribeChannel(StrEnum):
    """How a reader unsubscribed: the `via` of their unsubscribe event."""

    LINK = "link"  # the unsubscribe page's button
    ONE_CLICK = "one-click"  # RFC 8058, from the mail client
    MAILTO = "mailto"  # a mail to the List-Unsubscribe mailto address
    API = "api"
    ADMIN = "admin"


class MailEvent(BaseModel):
    """One stored bounce, complaint or unsubscribe: the history behind a bounce score and
    the per-day figures of `paperwire stats`."""

    model_config = ConfigDict(frozen=True)

    id: int
    subscriber_id: int
    at: datetime
    kind: MailEventKind
    # Where it came from: smtp (refused while sending), dsn, arf, ses, postmark, mailgun; for
    # unsubscribes an `UnsubscribeChannel`.
    via: str
    issue_date: date | None = None
    status_code: str | None = None  # the enhanced status code of a bounce, e.g. 5.1.1
    detail: str = ""


class Subscriber(DeliveryPreferences):
    id: int
    email: str
    status: SubscriptionStatus
    created_at: datetime
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent: tuple[ConsentEvent, ...] = ()
    # Random, made with the row and covered by the MAC of each of its links (never in a link):
    # a link works for this row only. None only for rows from before link keys existed.
    link_key: str | None = Field(None, repr=False)
    # In the reader's order; a subscriber has at least one (the store never removes the last).
    profiles: tuple[InterestProfile, ...] = ()
    # Issues are made for the archive and the feed; none is emailed.
    feed_only: bool = False
    # Mailman's bounce score as last written, and when the last bounce came: see
    # `service.store.mail_events` for how it grows and goes stale.
    bounce_score: float = 0.0
    last_bounce_at: datetime | None = None

    @property
    def first_profile(self) -> InterestProfile:
        """The profile the one-profile pages show and edit (and signup made)."""
        if not self.profiles:
            return InterestProfile(id=0)
        return self.profiles[0]

    @property
    def interests(self) -> Interests:
        """The first profile's interests."""
        return self.first_profile.interests

    @property
    def trending_weight(self) -> float:
        """The first profile's mix."""
        return self.first_profile.trending_weight

    def preferences(self) -> SubscriptionPreferences:
        """What the one-profile forms show: the schedule and the first profile."""
        return SubscriptionPreferences(
            interests=self.interests,
            trending_weight=self.trending_weight,
            time_zone=self.time_zone,
            delivery_hour=self.delivery_hour,
            frequency=self.frequency,
            weekday=self.weekday,
            feed_only=self.feed_only,
        )

    def profile(self, profile_id: int) -> InterestProfile | None:
        return next((profile for profile in self.profiles if profile.id == profile_id), None)


class ScoredPaper(BaseModel):
    """A paper ranked for one subscriber, with the reason it was picked."""

    model_config = ConfigDict(frozen=True)

    paper: Paper
    score: float
    relevance: float
    trending: float
    why: str
    matched_terms: tuple[str, ...] = ()


class DigestSection(BaseModel):
    """The papers of an issue picked for one interest profile, best first."""

    model_config = ConfigDict(frozen=True)

    name: str = ""
    # None in a digest built from papers alone (previews of a ranking, archived copies).
    profile_id: int | None = None
    papers: tuple[ScoredPaper, ...] = ()


class Digest(BaseModel):
    """One issue for one subscriber: the pair (subscriber, issue_date) identifies it. Its
    papers come in sections, one per profile that found any, in the reader's order; built
    from `papers=` alone it has one unnamed section."""

    model_config = ConfigDict(frozen=True)

    subscriber: Subscriber
    issue_date: date
    sections: tuple[DigestSection, ...] = ()
    # Every profile the issue was ranked for, in the reader's order, also those that found
    # nothing: what the issue's header line names.
    ranked_for: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _papers_as_one_section(cls, data: Any) -> Any:
        if isinstance(data, dict) and "papers" in data:
            data = dict(data)
            papers = data.pop("papers")
            data.setdefault("sections", (DigestSection(papers=tuple(papers)),))
        return data

    @property
    def papers(self) -> tuple[ScoredPaper, ...]:
        """Every paper of the issue, section by section."""
        return tuple(scored for section in self.sections for scored in section.papers)


class ReadingHistory(BaseModel):
    """What a subscriber already has: when their last issue went out and every paper sent."""

    model_config = ConfigDict(frozen=True)

    last_sent_at: datetime | None = None
    sent_paper_ids: frozenset[str] = frozenset()


class IssueItem(BaseModel):
    """One paper of an issue as the reader saw it: kept with the issue, so that its archived
    copy shows the same why-line however the ranking changes later."""

    model_config = ConfigDict(frozen=True)

    paper_id: str
    why: str = ""
    # The interest profile the paper was picked for ("" for a digest of one section).
    section: str = ""


class Delivery(BaseModel):
    """A row of the delivery ledger."""

    model_config = ConfigDict(frozen=True)

    subscriber_id: int
    issue_date: date
    status: DeliveryStatus
    message_id: str | None = None
    paper_ids: tuple[str, ...] = ()
    # The papers with their why-lines, in the order sent; empty in issues from before they
    # were kept.
    items: tuple[IssueItem, ...] = ()
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    # Attempts after which the relay may have had the message (see the ledger).
    in_doubt_count: int = 0
