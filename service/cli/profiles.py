"""`paperwire profiles`: list, add and remove a subscriber's interest profiles, each a section
of their digest.

The settings and the store are imported inside the commands that use them, to keep them out
of the start-up of every other command."""

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from service.cli.common import (
    AuthorOption,
    ExcludeOption,
    KeywordOption,
    LikeOption,
    TextOption,
    TrendingWeightOption,
    open_store,
    out,
    shorten,
)
from service.errors import UnknownProfile
from service.models import (
    DEFAULT_PAPERS_PER_ISSUE,
    DEFAULT_TRENDING_WEIGHT,
    MAX_PAPERS_PER_ISSUE,
    MIN_PAPERS_PER_ISSUE,
    InterestProfile,
    Interests,
    ProfilePreferences,
    Subscriber,
)

app = typer.Typer(
    help="A subscriber's interest profiles: one digest section each.", no_args_is_help=True
)


@app.command("list")
def profiles_list(email: str) -> None:
    """A subscriber's profiles, in the order of their digest's sections."""
    from service.cli.subscribers import describe_interests
    from service.signup.addresses import normalise_email

    with open_store() as store:
        subscriber = store.find_subscriber(normalise_email(email))
    table = Table("#", "name", "interests", "papers", "trending", title=subscriber.email)
    for number, profile in enumerate(subscriber.profiles, start=1):
        table.add_row(
            str(number),
            profile.name,
            shorten(describe_interests(profile.interests), 60),
            str(profile.papers_per_issue),
            f"{profile.trending_weight:.2f}",
        )
    out.print(table)


@app.command("add")
def profiles_add(
    email: str,
    name: str,
    keyword: KeywordOption = None,
    text: TextOption = "",
    like: LikeOption = None,
    author: AuthorOption = None,
    exclude: ExcludeOption = None,
    papers: Annotated[
        int,
        typer.Option(
            min=MIN_PAPERS_PER_ISSUE,
            max=MAX_PAPERS_PER_ISSUE,
            help="Most papers in this profile's section.",
        ),
    ] = DEFAULT_PAPERS_PER_ISSUE,
    trending_weight: TrendingWeightOption = DEFAULT_TRENDING_WEIGHT,
) -> None:
    """Add a profile after the subscriber's others: a new last section of their digest."""
    from service.cli.subscribers import stored_papers
    from service.settings import get_settings
    from service.signup.addresses import normalise_email

    settings = get_settings()
    with open_store(settings) as store:
        subscriber = store.find_subscriber(normalise_email(email))
        preferences = ProfilePreferences(
            name=name,
            interests=Interests(
                keywords=tuple(keyword or ()),
                text=text,
                authors=tuple(author or ()),
                excluded=tuple(exclude or ()),
                liked=stored_papers(store, like) if like else (),
            ),
            papers_per_issue=papers,
            trending_weight=trending_weight,
        )
        profile = store.add_profile(
            subscriber.id,
            preferences,
            max_profiles=settings.max_profiles,
            now=datetime.now(UTC),
        )
    out.print(f"added profile “{profile.name}” to {subscriber.email}", markup=False)


@app.command("remove")
def profiles_remove(email: str, name: str) -> None:
    """Remove a profile and its votes; a subscriber keeps at least one."""
    from service.signup.addresses import normalise_email

    with open_store() as store:
        subscriber = store.find_subscriber(normalise_email(email))
        profile = profile_named(subscriber, name)
        store.remove_profile(subscriber.id, profile.id)
    out.print(f"removed profile “{profile.name}” from {subscriber.email}", markup=False)


def profile_named(subscriber: Subscriber, name: str) -> InterestProfile:
    """The subscriber's profile of that name, whatever its case and spacing."""
    wanted = " ".join(name.split()).casefold()
    for profile in subscriber.profiles:
        if profile.name.casefold() == wanted:
            return profile
    names = ", ".join(f"“{profile.name}”" for profile in subscriber.profiles)
    raise UnknownProfile(f"{subscriber.email} has no profile named {name!r} (they have {names})")
