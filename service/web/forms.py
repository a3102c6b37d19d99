"""What the pages' forms and the JSON API take and give: posted fields and bodies read into
`SubscriptionPreferences` (with the lines of papers liked, resolved by the routes), and a
subscriber shown back as form values or as JSON."""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from service.models import (
    DEFAULT_TRENDING_WEIGHT,
    MAX_AUTHORS,
    MAX_EXCLUDED_TOPICS,
    MAX_INTERESTS_TEXT_LENGTH,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_PAPER_VOTES,
    MAX_TRENDING_WEIGHT,
    MIN_TRENDING_WEIGHT,
    Frequency,
    Interests,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
)
from service.settings import Settings
from service.signup.limits import WindowLimiter
from service.signup.links import archive_list_url, feed_url
from service.signup.seeds import (
    MAX_PAPER_LINE_CHARS,
    MAX_PAPER_LINES,
    ResolvedPapers,
    arxiv_lookup,
    check_paper_lines,
    paper_lines,
    resolve_papers,
)
from service.signup.subscriptions import parse_interests
from service.store import Store

# Bounds on what a form may carry, far above what the pages send.
MAX_FORM_FIELDS = 40
MAX_FORM_PART_BYTES = 64 * 1024
MAX_INTERESTS_FIELD_CHARS = 5000
PREFERENCE_FIELDS = (
    "interests",
    "about",
    "authors",
    "excluded",
    "frequency",
    "weekday",
    "delivery_hour",
    "time_zone",
    "feed_only",
)
# The phrase fields: the form's field, the `Interests` field it fills, and what it allows.
PHRASE_FIELDS = (
    ("interests", "keywords", f"Up to {MAX_KEYWORDS} interests"),
    ("authors", "authors", f"Up to {MAX_AUTHORS} authors"),
    ("excluded", "excluded", f"Up to {MAX_EXCLUDED_TOPICS} topics"),
)
# The form's mix is the trending weight in percent.
MIX_PERCENT_RANGE = (round(MIN_TRENDING_WEIGHT * 100), round(MAX_TRENDING_WEIGHT * 100))
DEFAULT_MIX_PERCENT = round(DEFAULT_TRENDING_WEIGHT * 100)


@dataclass(frozen=True)
class FormOutcome:
    values: dict[str, str]
    errors: dict[str, str]
    preferences: SubscriptionPreferences | None
    # The lines of "Papers I like", for the route to resolve.
    paper_lines: tuple[str, ...] = ()


Phrase = Annotated[str, Field(max_length=MAX_KEYWORD_LENGTH)]
PaperLine = Annotated[str, Field(max_length=MAX_PAPER_LINE_CHARS)]


class PreferencesIn(BaseModel):
    """A subscriber's choices, as the JSON API takes them."""

    interests: list[str] = Field(default_factory=list, max_length=MAX_KEYWORDS)
    interests_text: str = Field("", max_length=MAX_INTERESTS_TEXT_LENGTH)
    authors: list[Phrase] = Field(
        default_factory=list, max_length=MAX_AUTHORS, description="Authors to follow."
    )
    excluded: list[Phrase] = Field(
        default_factory=list, max_length=MAX_EXCLUDED_TOPICS, description="Topics to leave out."
    )
    liked: list[PaperLine] = Field(
        default_factory=list,
        # What GET shows may come back whole; at most MAX_PAPER_LINES new ones (see the API).
        max_length=MAX_PAPER_VOTES,
        description=f"Papers liked: arXiv ids, arXiv or Hugging Face paper links, or titles, "
        f"at most {MAX_PAPER_LINES} not liked before. On an update they join the papers liked "
        "before.",
    )
    frequency: Frequency = Frequency.DAILY
    weekday: int = Field(0, ge=0, le=6, description="Monday=0; for weekly issues.")
    delivery_hour: int | None = Field(None, ge=0, le=23, description="Local hour; default set.")
    time_zone: str | None = Field(
        None, max_length=64, description="IANA time zone; the server's default."
    )
    trending_weight: float = Field(
        DEFAULT_TRENDING_WEIGHT,
        ge=MIN_TRENDING_WEIGHT,
        le=MAX_TRENDING_WEIGHT,
        description="0 my topics … 1 trending.",
    )
    feed_only: bool = Field(
        False, description="Issues go to the archive and the feed only; none is emailed."
    )


class SignupIn(PreferencesIn):
    email: str = Field(max_length=320)


class AcceptedOut(BaseModel):
    status: Literal["check-your-inbox"] = "check-your-inbox"
    detail: str = "If the address can receive mail, a confirmation link is on its way."


class ConfirmIn(BaseModel):
    token: str = Field(max_length=512)


class SubscriptionOut(BaseModel):
    email: str
    status: SubscriptionStatus
    interests: list[str]
    interests_text: str
    authors: list[str]
    excluded: list[str]
    liked: list[str]
    disliked: list[str]
    frequency: Frequency
    weekday: int
    delivery_hour: int
    time_zone: str
    trending_weight: float
    feed_only: bool
    archive_url: str = Field(description="Every issue sent, newest first (never expires).")
    feed_url: str = Field(description="The Atom feed of the issues (never expires).")


class StatusOut(BaseModel):
    status: str


async def read_form(request: Request) -> FormData:
    return await request.form(max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_PART_BYTES)


@lru_cache(maxsize=1)
def time_zone_names() -> tuple[str, ...]:
    """IANA zone names worth offering: Area/City names and UTC."""
    names = {
        name
        for name in available_timezones()
        if "/" in name and not name.startswith(("Etc/", "posix/", "right/", "SystemV/", "US/"))
    }
    return ("UTC", *sorted(names))


def default_form_values(settings: Settings) -> dict[str, str]:
    return {
        "email": "",
        "interests": "",
        "about": "",
        "authors": "",
        "excluded": "",
        "papers": "",
        "frequency": Frequency.DAILY.value,
        "weekday": "0",
        "delivery_hour": str(settings.default_delivery_hour),
        "time_zone": settings.default_time_zone,
        "mix": str(DEFAULT_MIX_PERCENT),
        "feed_only": "",
    }


def form_values(subscriber: Subscriber) -> dict[str, str]:
    """A subscriber's preferences as the form shows them."""
    return {
        "email": subscriber.email,
        "interests": "\n".join(subscriber.interests.keywords),
        "about": subscriber.interests.text,
        "authors": "\n".join(subscriber.interests.authors),
        "excluded": ", ".join(subscriber.interests.excluded),
        # Papers liked are listed apart, each with its remove button: the box adds more.
        "papers": "",
        "frequency": subscriber.frequency.value,
        "weekday": str(subscriber.weekday),
        "delivery_hour": str(subscriber.delivery_hour),
        "time_zone": subscriber.time_zone,
        "mix": str(round(subscriber.trending_weight * 100)),
        "feed_only": "yes" if subscriber.feed_only else "",
    }


def read_preferences_form(form: Mapping[str, Any]) -> FormOutcome:
    """The preference fields of a posted form: what was typed (to show again), an error per
    field, the preferences when there is no error, and the lines of papers liked."""
    values = {name: str(form.get(name, "")) for name in (*PREFERENCE_FIELDS, "mix", "papers")}
    errors: dict[str, str] = {}
    # The papers box is bounded by its lines: 20 of 300 characters.
    boxes = {"interests": "interests", "authors": "authors", "excluded": "topics"}
    for name, label in boxes.items():
        if len(values[name]) > MAX_INTERESTS_FIELD_CHARS:
            errors[name] = f"Keep {label} under {MAX_INTERESTS_FIELD_CHARS} characters."
    if len(values["about"]) > MAX_INTERESTS_TEXT_LENGTH:
        errors["about"] = f"Keep this under {MAX_INTERESTS_TEXT_LENGTH} characters."
    lines = paper_lines(values["papers"])
    if problem := check_paper_lines(lines):
        errors["papers"] = problem
    phrases = read_phrases(values, errors)
    low_mix, high_mix = MIX_PERCENT_RANGE
    numbers = {
        "weekday": (0, 6, "Choose a day of the week."),
        "delivery_hour": (0, 23, "Choose an hour."),
        "mix": (low_mix, high_mix, f"Choose a mix between {low_mix} and {high_mix}."),
    }
    parsed: dict[str, int] = {}
    for name, (low, high, message) in numbers.items():
        raw = values[name].strip()
        if raw.isascii() and raw.isdigit() and low <= int(raw) <= high:
            parsed[name] = int(raw)
        else:
            errors[name] = message
    if values["frequency"] not in (Frequency.DAILY, Frequency.WEEKLY):
        errors["frequency"] = "Choose daily or weekly."
    if values["time_zone"] not in time_zone_names():
        errors["time_zone"] = "Choose a time zone from the list."
    if errors:
        return FormOutcome(values, errors, None, tuple(lines))
    try:
        preferences = SubscriptionPreferences(
            interests=Interests(**phrases, text=values["about"]),
            time_zone=values["time_zone"],
            delivery_hour=parsed["delivery_hour"],
            frequency=Frequency(values["frequency"]),
            weekday=parsed["weekday"],
            trending_weight=parsed["mix"] / 100,
            # A checkbox: sent when ticked, absent otherwise.
            feed_only=values["feed_only"] == "yes",
        )
    except ValidationError:
        errors["about"] = "Write the sentence without control characters."
        return FormOutcome(values, errors, None, tuple(lines))
    return FormOutcome(values, {}, preferences, tuple(lines))


def read_phrases(values: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any]:
    """The interests, authors and topics typed, each checked on its own so that an error
    names its field."""
    phrases: dict[str, Any] = {}
    for name, field, allowed in PHRASE_FIELDS:
        if name in errors:
            continue
        try:
            checked = Interests.model_validate({field: parse_interests(values[name])})
        except ValidationError:
            errors[name] = f"{allowed}, each at most {MAX_KEYWORD_LENGTH} characters."
            continue
        phrases[field] = getattr(checked, field)
    return phrases


def with_liked(
    preferences: SubscriptionPreferences, paper_ids: tuple[str, ...]
) -> SubscriptionPreferences:
    """The preferences with `paper_ids` as the papers liked (a signup's seeds)."""
    interests = Interests.model_validate(preferences.interests.model_dump() | {"liked": paper_ids})
    return preferences.model_copy(update={"interests": interests})


async def resolve_paper_lines(
    lines: Sequence[str],
    *,
    store: Store,
    settings: Settings,
    limiter: WindowLimiter,
    client_key: str | None,
    now: datetime,
    known: Collection[str] = (),
) -> ResolvedPapers:
    """The papers liked lines name, an arXiv id not stored yet looked up (see
    `service.signup.seeds`); in a worker thread, as the store and arXiv block."""
    if not lines:
        return ResolvedPapers(paper_ids=())
    lookup = arxiv_lookup(settings, limiter=limiter, client_key=client_key)
    return await run_in_threadpool(
        resolve_papers, store, lines, lookup=lookup, now=now, known=known
    )


def api_preferences(body: PreferencesIn, *, settings: Settings) -> SubscriptionPreferences:
    try:
        return SubscriptionPreferences(
            interests=Interests(
                keywords=tuple(body.interests),
                text=body.interests_text,
                authors=tuple(body.authors),
                excluded=tuple(body.excluded),
            ),
            time_zone=body.time_zone or settings.default_time_zone,
            delivery_hour=(
                settings.default_delivery_hour if body.delivery_hour is None else body.delivery_hour
            ),
            frequency=body.frequency,
            weekday=body.weekday,
            trending_weight=body.trending_weight,
            feed_only=body.feed_only,
        )
    except ValidationError as exc:
        problems = [str(problem["msg"]).removeprefix("Value error, ") for problem in exc.errors()]
        raise HTTPException(422, detail="; ".join(problems)) from exc


def subscription_out(subscriber: Subscriber, *, settings: Settings) -> SubscriptionOut:
    return SubscriptionOut(
        email=subscriber.email,
        status=subscriber.status,
        interests=list(subscriber.interests.keywords),
        interests_text=subscriber.interests.text,
        authors=list(subscriber.interests.authors),
        excluded=list(subscriber.interests.excluded),
        liked=list(subscriber.interests.liked),
        disliked=list(subscriber.interests.disliked),
        frequency=subscriber.frequency,
        weekday=subscriber.weekday,
        delivery_hour=subscriber.delivery_hour,
        time_zone=subscriber.time_zone,
        trending_weight=subscriber.trending_weight,
        feed_only=subscriber.feed_only,
        archive_url=archive_list_url(subscriber, settings=settings),
        feed_url=feed_url(subscriber, settings=settings),
    )
