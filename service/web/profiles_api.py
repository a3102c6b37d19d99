"""The JSON API of a subscriber's interest profiles, under their manage link: list, add,
replace (rename and edit), reorder and remove; each profile is a section of their digest."""

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from service.errors import InvalidInput, UnknownProfile, UnknownSubscriber
from service.models import (
    DEFAULT_PAPERS_PER_ISSUE,
    DEFAULT_TRENDING_WEIGHT,
    MAX_AUTHORS,
    MAX_EXCLUDED_TOPICS,
    MAX_INTERESTS_TEXT_LENGTH,
    MAX_KEYWORDS,
    MAX_PAPER_VOTES,
    MAX_PAPERS_PER_ISSUE,
    MAX_TRENDING_WEIGHT,
    MIN_PAPERS_PER_ISSUE,
    MIN_TRENDING_WEIGHT,
    InterestProfile,
    Interests,
    ProfilePreferences,
    Subscriber,
)
from service.signup.seeds import like_papers
from service.web.api import LIKED_ERRORS, LINK_ERRORS, managed, resolved_likes
from service.web.deps import ClockDep, LimiterDep, SettingsDep, StoreDep, VisitorDep
from service.web.forms import PaperLine, Phrase

router = APIRouter()
T = TypeVar("T")

PROFILE_ERRORS = {
    **LINK_ERRORS,
    404: {"description": "The subscriber has no profile with that id"},
    409: {
        "description": "Refused: a name taken, one profile too many, the last one removed, "
        "or an order that does not name each profile once"
    },
}


class ProfileIn(BaseModel):
    """An interest profile as the API takes it: a PUT replaces all of it but the papers liked
    and disliked, which only grow by `liked` (and change one 👍/👎 at a time)."""

    name: str = Field(max_length=200, description="Heads the profile's digest section.")
    interests: list[Phrase] = Field(default_factory=list, max_length=MAX_KEYWORDS)
    interests_text: str = Field("", max_length=MAX_INTERESTS_TEXT_LENGTH)
    authors: list[Phrase] = Field(default_factory=list, max_length=MAX_AUTHORS)
    excluded: list[Phrase] = Field(default_factory=list, max_length=MAX_EXCLUDED_TOPICS)
    liked: list[PaperLine] = Field(
        default_factory=list,
        max_length=MAX_PAPER_VOTES,
        description="Papers liked: arXiv ids, arXiv or Hugging Face paper links, or titles; "
        "they join the papers the profile liked before.",
    )
    papers_per_issue: int = Field(
        DEFAULT_PAPERS_PER_ISSUE, ge=MIN_PAPERS_PER_ISSUE, le=MAX_PAPERS_PER_ISSUE
    )
    trending_weight: float = Field(
        DEFAULT_TRENDING_WEIGHT, ge=MIN_TRENDING_WEIGHT, le=MAX_TRENDING_WEIGHT
    )


class ProfileOut(BaseModel):
    id: int
    name: str
    interests: list[str]
    interests_text: str
    authors: list[str]
    excluded: list[str]
    liked: list[str]
    disliked: list[str]
    papers_per_issue: int
    trending_weight: float


class ProfilesOut(BaseModel):
    """The profiles in the order of the digest's sections."""

    profiles: list[ProfileOut]


class OrderIn(BaseModel):
    profile_ids: list[int] = Field(max_length=100, description="Every profile's id, once.")


def profile_out(profile: InterestProfile) -> ProfileOut:
    interests = profile.interests
    return ProfileOut(
        id=profile.id,
        name=profile.name,
        interests=list(interests.keywords),
        interests_text=interests.text,
        authors=list(interests.authors),
        excluded=list(interests.excluded),
        liked=list(interests.liked),
        disliked=list(interests.disliked),
        papers_per_issue=profile.papers_per_issue,
        trending_weight=profile.trending_weight,
    )


def profiles_out(subscriber: Subscriber) -> ProfilesOut:
    return ProfilesOut(profiles=[profile_out(profile) for profile in subscriber.profiles])


def profile_preferences(body: ProfileIn) -> ProfilePreferences:
    try:
        return ProfilePreferences(
            name=body.name,
            interests=Interests(
                keywords=tuple(body.interests),
                text=body.interests_text,
                authors=tuple(body.authors),
                excluded=tuple(body.excluded),
            ),
            papers_per_issue=body.papers_per_issue,
            trending_weight=body.trending_weight,
        )
    except ValidationError as exc:
        problems = [str(problem["msg"]).removeprefix("Value error, ") for problem in exc.errors()]
        raise HTTPException(422, detail="; ".join(problems)) from exc


async def refusing(change: Callable[[], T]) -> T:
    """Run a store change in a worker thread; its refusals become 404 and 409."""
    try:
        return await run_in_threadpool(change)
    except UnknownProfile as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    except InvalidInput as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    except UnknownSubscriber as exc:
        # Erased while the request ran: the link died with the row.
        raise HTTPException(400, detail="link not valid") from exc


@router.get("/api/preferences/{token}/profiles", tags=["api"], responses=LINK_ERRORS)
async def api_profiles_get(
    token: str, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> ProfilesOut:
    """The profiles of the subscriber a manage token names, in section order."""
    return profiles_out(await managed(token, store=store, settings=settings, now=now))


@router.post(
    "/api/preferences/{token}/profiles",
    status_code=201,
    tags=["api"],
    responses={**PROFILE_ERRORS, **LIKED_ERRORS},
)
async def api_profiles_add(
    token: str,
    body: ProfileIn,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> ProfileOut:
    """Add a profile after the others: a new last section of the digest."""
    subscriber = await managed(token, store=store, settings=settings, now=now)
    preferences = profile_preferences(body)
    liked = await resolved_likes(
        body.liked, store=store, settings=settings, limiter=limiter, visitor=visitor, now=now
    )
    with_liked = preferences.model_copy(
        update={"interests": preferences.interests.model_copy(update={"liked": liked})}
    )
    at = now()
    profile = await refusing(
        lambda: store.add_profile(
            subscriber.id, with_liked, max_profiles=settings.max_profiles, now=at
        )
    )
    return profile_out(profile)


@router.put("/api/preferences/{token}/profiles/order", tags=["api"], responses=PROFILE_ERRORS)
async def api_profiles_reorder(
    token: str, body: OrderIn, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> ProfilesOut:
    """Put the profiles, and so the digest's sections, in this order."""
    subscriber = await managed(token, store=store, settings=settings, now=now)
    at = now()
    profiles = await refusing(
        lambda: store.reorder_profiles(subscriber.id, body.profile_ids, now=at)
    )
    return ProfilesOut(profiles=[profile_out(profile) for profile in profiles])


@router.put(
    "/api/preferences/{token}/profiles/{profile_id}",
    tags=["api"],
    responses={**PROFILE_ERRORS, **LIKED_ERRORS},
)
async def api_profiles_put(
    token: str,
    profile_id: int,
    body: ProfileIn,
    settings: SettingsDep,
    store: StoreDep,
    limiter: LimiterDep,
    visitor: VisitorDep,
    now: ClockDep,
) -> ProfileOut:
    """Replace a profile (rename it, change its interests and numbers); the papers in `liked`
    join those it liked before, and no paper liked or disliked before is dropped."""
    subscriber = await managed(token, store=store, settings=settings, now=now)
    preferences = profile_preferences(body)
    known = subscriber.profile(profile_id)
    if known is None:
        raise HTTPException(404, detail=f"no interest profile with id {profile_id}")
    liked = await resolved_likes(
        body.liked,
        store=store,
        settings=settings,
        limiter=limiter,
        visitor=visitor,
        now=now,
        known=(*known.interests.liked, *known.interests.disliked),
    )
    at = now()

    def update() -> InterestProfile | None:
        store.update_profile(subscriber.id, profile_id, preferences, now=at)
        like_papers(store, subscriber.id, liked, profile_id=profile_id)
        return store.get_subscriber(subscriber.id).profile(profile_id)

    profile = await refusing(update)
    if profile is None:  # removed by another request in the meantime
        raise HTTPException(404, detail=f"no interest profile with id {profile_id}")
    return profile_out(profile)


@router.delete(
    "/api/preferences/{token}/profiles/{profile_id}", tags=["api"], responses=PROFILE_ERRORS
)
async def api_profiles_remove(
    token: str, profile_id: int, settings: SettingsDep, store: StoreDep, now: ClockDep
) -> ProfilesOut:
    """Remove a profile with its votes; the last one stays (edit it instead)."""
    subscriber = await managed(token, store=store, settings=settings, now=now)

    def remove() -> Subscriber:
        store.remove_profile(subscriber.id, profile_id)
        return store.get_subscriber(subscriber.id)

    return profiles_out(await refusing(remove))
