"""The interest profiles part of the manage page: each profile listed in section order with its
summary, and the forms that add, edit (and rename), move and remove one. The manage page's
POST route checks the CSRF token and the link, then hands these actions here."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, UnknownProfile
from service.models import (
    MAX_INTERESTS_TEXT_LENGTH,
    MAX_PAPERS_PER_ISSUE,
    MIN_PAPERS_PER_ISSUE,
    InterestProfile,
    Interests,
    ProfilePreferences,
    Subscriber,
    check_profile_name,
)
from service.store import Store
from service.web.forms import (
    DEFAULT_MIX_PERCENT,
    MAX_INTERESTS_FIELD_CHARS,
    MIX_PERCENT_RANGE,
    read_phrases,
)

T = TypeVar("T")

PROFILE_ACTIONS = frozenset(
    {"add_profile", "edit_profile", "move_profile_up", "move_profile_down", "remove_profile"}
)
PROFILE_FIELDS = ("name", "interests", "about", "authors", "excluded", "papers_per_issue", "mix")
# The key of the add form among the forms a failed POST is shown back in.
NEW_PROFILE = "new"
GONE = "That profile is gone: it may have been removed in another window."


@dataclass(frozen=True)
class ProfileForm:
    """A profile form posted and refused: which one (a profile's id, or NEW_PROFILE), what
    was typed, and an error per field."""

    key: str
    values: Mapping[str, str]
    errors: Mapping[str, str]


@dataclass(frozen=True)
class ProfileOutcome:
    """What a profile action leaves the manage page showing, and its status."""

    subscriber: Subscriber
    notice: str = ""
    status: int = 200
    form: ProfileForm | None = None
    # A refusal that belongs to no one field: a profile unknown, one too many.
    problem: str = ""


@dataclass(frozen=True)
class ProfileEntry:
    """A profile as the page lists it, with the values of its edit form."""

    id: int
    name: str
    summary: str
    values: Mapping[str, str]
    errors: Mapping[str, str] = field(default_factory=dict)


def new_profile_values() -> dict[str, str]:
    values = dict.fromkeys(PROFILE_FIELDS, "")
    values["papers_per_issue"] = str(ProfilePreferences().papers_per_issue)
    values["mix"] = str(DEFAULT_MIX_PERCENT)
    return values


def profile_values(profile: InterestProfile) -> dict[str, str]:
    """A profile as its edit form shows it."""
    interests = profile.interests
    return {
        "name": profile.name,
        "interests": "\n".join(interests.keywords),
        "about": interests.text,
        "authors": "\n".join(interests.authors),
        "excluded": ", ".join(interests.excluded),
        "papers_per_issue": str(profile.papers_per_issue),
        "mix": str(round(profile.trending_weight * 100)),
    }


def profile_summary(profile: InterestProfile) -> str:
    """ "diffusion models, consistency models · 10 papers · 30% trending", for the list."""
    interests = profile.interests
    about = ", ".join(interests.keywords) or interests.text or "No interests: trending papers"
    papers = profile.papers_per_issue
    count = f"{papers} {'paper' if papers == 1 else 'papers'} an issue"
    return f"{about} · {count} · {round(profile.trending_weight * 100)}% trending"


def profiles_context(
    subscriber: Subscriber, outcome: ProfileOutcome | None, *, max_profiles: int
) -> dict[str, Any]:
    """What templates/web/_profiles.html shows: every profile, a refused form as it was
    posted, and the add form."""
    failed = outcome.form if outcome is not None else None
    entries = []
    for profile in subscriber.profiles:
        entry = ProfileEntry(
            id=profile.id,
            name=profile.name,
            summary=profile_summary(profile),
            values=profile_values(profile),
        )
        if failed is not None and failed.key == str(profile.id):
            entry = replace(entry, values={**entry.values, **failed.values}, errors=failed.errors)
        entries.append(entry)
    adding = failed is not None and failed.key == NEW_PROFILE
    return {
        "profiles": entries,
        "new_profile": ProfileEntry(
            id=0,
            name="",
            summary="",
            values=failed.values if failed is not None and adding else new_profile_values(),
            errors=failed.errors if failed is not None and adding else {},
        ),
        "can_add_profile": len(subscriber.profiles) < max_profiles,
        "max_profiles": max_profiles,
        "profiles_problem": outcome.problem if outcome is not None else "",
        "papers_range": (MIN_PAPERS_PER_ISSUE, MAX_PAPERS_PER_ISSUE),
    }


def read_profile_form(
    form: Mapping[str, Any],
) -> tuple[dict[str, str], dict[str, str], ProfilePreferences | None]:
    """What was typed in a profile form, an error per field, and the `ProfilePreferences`
    when there is no error (else None)."""
    values = {name: str(form.get(name, "")) for name in PROFILE_FIELDS}
    errors: dict[str, str] = {}
    try:
        name = check_profile_name(values["name"])
    except ValueError as exc:
        errors["name"] = as_sentence(str(exc))
    boxes = {"interests": "interests", "authors": "authors", "excluded": "topics"}
    for box, label in boxes.items():
        if len(values[box]) > MAX_INTERESTS_FIELD_CHARS:
            errors[box] = f"Keep {label} under {MAX_INTERESTS_FIELD_CHARS} characters."
    if len(values["about"]) > MAX_INTERESTS_TEXT_LENGTH:
        errors["about"] = f"Keep this under {MAX_INTERESTS_TEXT_LENGTH} characters."
    phrases = read_phrases(values, errors)
    low_mix, high_mix = MIX_PERCENT_RANGE
    numbers = {
        "papers_per_issue": (
            MIN_PAPERS_PER_ISSUE,
            MAX_PAPERS_PER_ISSUE,
            f"Choose from {MIN_PAPERS_PER_ISSUE} to {MAX_PAPERS_PER_ISSUE} papers.",
        ),
        "mix": (low_mix, high_mix, f"Choose a mix between {low_mix} and {high_mix}."),
    }
    parsed: dict[str, int] = {}
    for number, (low, high, message) in numbers.items():
        raw = values[number].strip()
        if raw.isascii() and raw.isdigit() and low <= int(raw) <= high:
            parsed[number] = int(raw)
        else:
            errors[number] = message
    if errors:
        return values, errors, None
    try:
        preferences = ProfilePreferences(
            name=name,
            interests=Interests(**phrases, text=values["about"]),
            papers_per_issue=parsed["papers_per_issue"],
            trending_weight=parsed["mix"] / 100,
        )
    except ValidationError:
        errors["about"] = "Write the sentence without control characters."
        return values, errors, None
    return values, {}, preferences


def as_sentence(message: str) -> str:
    """A store's or a model's message ("at most 5 interest profiles") as a page shows it."""
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def read_profile_id(form: Mapping[str, Any]) -> int | None:
    raw = str(form.get("profile_id", ""))
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


async def change_profile(
    store: Store,
    subscriber: Subscriber,
    action: str,
    form: Mapping[str, Any],
    *,
    max_profiles: int,
    now: datetime,
) -> ProfileOutcome:
    """Carry out one of PROFILE_ACTIONS. A profile id the subscriber does not have, whoever's
    it is, gets one answer: 404, the profile is gone."""
    if action == "add_profile":
        return await add_profile(store, subscriber, form, max_profiles=max_profiles, now=now)
    profile_id = read_profile_id(form)
    profile = subscriber.profile(profile_id) if profile_id is not None else None
    if profile is None:
        return ProfileOutcome(subscriber, status=404, problem=GONE)
    if action == "edit_profile":
        return await edit_profile(store, subscriber, profile, form, now=now)
    if action == "remove_profile":
        return await remove_profile(store, subscriber, profile, form)
    return await move_profile(store, subscriber, profile, up=action == "move_profile_up", now=now)


async def add_profile(
    store: Store,
    subscriber: Subscriber,
    form: Mapping[str, Any],
    *,
    max_profiles: int,
    now: datetime,
) -> ProfileOutcome:
    values, errors, preferences = read_profile_form(form)
    if len(subscriber.profiles) >= max_profiles:
        problem = f"You have {max_profiles} profiles, the most there can be: remove one first."
        return ProfileOutcome(subscriber, status=409, problem=problem)
    if preferences is None:
        return ProfileOutcome(subscriber, status=422, form=ProfileForm(NEW_PROFILE, values, errors))
    try:
        added = await changed(
            store,
            subscriber,
            lambda: store.add_profile(
                subscriber.id, preferences, max_profiles=max_profiles, now=now
            ),
        )
    except InvalidInput as exc:
        # The count was checked above: what is left is a name taken.
        refused = {"name": as_sentence(str(exc))}
        return ProfileOutcome(
            subscriber, status=409, form=ProfileForm(NEW_PROFILE, values, refused)
        )
    return ProfileOutcome(added, notice=f"Added “{preferences.name}”: a new last section.")


async def edit_profile(
    store: Store,
    subscriber: Subscriber,
    profile: InterestProfile,
    form: Mapping[str, Any],
    *,
    now: datetime,
) -> ProfileOutcome:
    """A profile's name, interests and numbers replaced; its votes are kept."""
    key = str(profile.id)
    values, errors, preferences = read_profile_form(form)
    if preferences is None:
        return ProfileOutcome(subscriber, status=422, form=ProfileForm(key, values, errors))
    try:
        updated = await changed(
            store,
            subscriber,
            lambda: store.update_profile(subscriber.id, profile.id, preferences, now=now),
        )
    except InvalidInput as exc:
        refused = {"name": as_sentence(str(exc))}
        return ProfileOutcome(subscriber, status=409, form=ProfileForm(key, values, refused))
    except UnknownProfile:
        return ProfileOutcome(subscriber, status=404, problem=GONE)
    return ProfileOutcome(updated, notice=f"Saved “{preferences.name}”.")


async def move_profile(
    store: Store, subscriber: Subscriber, profile: InterestProfile, *, up: bool, now: datetime
) -> ProfileOutcome:
    """A profile swapped with the one before (or after) it; at either end it stays put."""
    order = [each.id for each in subscriber.profiles]
    at = order.index(profile.id)
    to = at - 1 if up else at + 1
    if not 0 <= to < len(order):
        where = "first" if up else "last"
        return ProfileOutcome(subscriber, notice=f"“{profile.name}” is {where} already.")
    order[at], order[to] = order[to], order[at]
    try:
        moved = await changed(
            store, subscriber, lambda: store.reorder_profiles(subscriber.id, order, now=now)
        )
    except InvalidInput:
        # Another window added or removed one meanwhile: the list shown is the one stored.
        return ProfileOutcome(subscriber, status=409, problem=GONE)
    return ProfileOutcome(moved, notice=f"Moved “{profile.name}” {'up' if up else 'down'}.")


async def remove_profile(
    store: Store, subscriber: Subscriber, profile: InterestProfile, form: Mapping[str, Any]
) -> ProfileOutcome:
    key = str(profile.id)
    if form.get("confirm_remove") != "yes":
        errors = {"remove": f"Tick the box to confirm that “{profile.name}” should go."}
        return ProfileOutcome(subscriber, status=422, form=ProfileForm(key, {}, errors))
    try:
        removed = await changed(
            store, subscriber, lambda: store.remove_profile(subscriber.id, profile.id)
        )
    except InvalidInput:
        errors = {"remove": "Your only profile stays: edit it instead."}
        return ProfileOutcome(subscriber, status=409, form=ProfileForm(key, {}, errors))
    except UnknownProfile:
        return ProfileOutcome(subscriber, status=404, problem=GONE)
    return ProfileOutcome(removed, notice=f"Removed “{profile.name}” and its votes.")


async def changed(store: Store, subscriber: Subscriber, change: Callable[[], T]) -> Subscriber:
    """The subscriber once `change` has run, both in a worker thread (the store blocks)."""

    def run() -> Subscriber:
        change()
        return store.get_subscriber(subscriber.id)

    return await run_in_threadpool(run)
