"""`paperwire subscribers`: add, list, show (or as JSON), remove, export and erase subscribers.

The settings and the signup functions are imported inside the commands that use them, to keep
them out of the start-up of every other command."""

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from service.cli.common import (
    AuthorOption,
    ExcludeOption,
    KeywordOption,
    LikeOption,
    TextOption,
    TrendingWeightOption,
    YesOption,
    confirm,
    counted,
    open_store,
    out,
    shorten,
)
from service.errors import InvalidInput
from service.models import (
    DEFAULT_TRENDING_WEIGHT,
    ConsentEvent,
    Frequency,
    Interests,
    MailEventKind,
    Paper,
    Subscriber,
    SubscriptionPreferences,
    SubscriptionStatus,
)

if TYPE_CHECKING:
    from service.settings import Settings
    from service.store import Store

app = typer.Typer(help="Subscribers and their interests.", no_args_is_help=True)

# Bounce and complaint events `show --json` lists, newest first.
RECENT_EVENTS = 20
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


@app.command("add")
def subscribers_add(
    email: str,
    keyword: KeywordOption = None,
    text: TextOption = "",
    time_zone: Annotated[str | None, typer.Option(help="IANA time zone.")] = None,
    hour: Annotated[int | None, typer.Option(min=0, max=23, help="Local delivery hour.")] = None,
    frequency: Annotated[Frequency, typer.Option(help="daily or weekly.")] = Frequency.DAILY,
    weekday: Annotated[Weekday, typer.Option(help="Weekday of weekly issues.")] = Weekday.MON,
    trending_weight: TrendingWeightOption = DEFAULT_TRENDING_WEIGHT,
    like: LikeOption = None,
    author: AuthorOption = None,
    exclude: ExcludeOption = None,
    feed_only: Annotated[
        bool,
        typer.Option(
            "--feed-only", help="Issues go to the archive and the feed only; none is emailed."
        ),
    ] = False,
) -> None:
    """Add a confirmed subscriber (the admin vouches for consent), with a first interest
    profile from the options; `profiles add` adds more."""
    from service.settings import get_settings
    from service.signup.addresses import normalise_email
    from service.signup.subscriptions import is_suppressed

    settings = get_settings()
    interests = Interests(
        keywords=tuple(keyword or ()),
        text=text,
        authors=tuple(author or ()),
        excluded=tuple(exclude or ()),
    )
    preferences = SubscriptionPreferences(
        interests=interests,
        time_zone=time_zone or settings.default_time_zone,
        delivery_hour=settings.default_delivery_hour if hour is None else hour,
        frequency=frequency,
        weekday=WEEKDAYS.index(weekday),
        trending_weight=trending_weight,
        feed_only=feed_only,
    )
    address = normalise_email(email)
    with open_store(settings) as store:
        if is_suppressed(store, address, settings=settings):
            raise InvalidInput(
                f"{address} was erased at its owner's request; only they can sign up again"
            )
        if like:
            liked = stored_papers(store, like)
            preferences = preferences.model_copy(
                update={"interests": Interests(**interests.model_dump() | {"liked": liked})}
            )
        now = datetime.now(UTC)
        # The consent record says who vouched for this one: the admin, not the person.
        vouched = ConsentEvent(event="confirmed", at=now, via="admin CLI (subscribers add)")
        subscriber = store.add_subscriber(
            address, preferences, status=SubscriptionStatus.CONFIRMED, now=now, consent=[vouched]
        )
    out.print(f"added {subscriber.email} (id {subscriber.id})")


@app.command("list")
def subscribers_list(
    status: Annotated[SubscriptionStatus | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """All subscribers, or those with one status."""
    with open_store() as store:
        subscribers = store.list_subscribers(status=status)
    table = Table(
        "id",
        "email",
        "status",
        "interests",
        "profiles",
        "schedule",
        "trending",
        title="subscribers",
    )
    for subscriber in subscribers:
        table.add_row(
            str(subscriber.id),
            subscriber.email,
            subscriber.status,
            shorten(describe_interests(subscriber.interests), 50),
            str(len(subscriber.profiles)),
            _describe_schedule(subscriber.frequency, subscriber.weekday, subscriber.delivery_hour)
            + f" {subscriber.time_zone}",
            f"{subscriber.trending_weight:.2f}",
        )
    out.print(table)


@app.command("show")
def subscribers_show(
    email: str,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="As JSON on stdout, with the URLs of their archive and feed."),
    ] = False,
) -> None:
    """One subscriber with their recent issues."""
    from service.signup.addresses import normalise_email

    if as_json:
        from service.settings import get_settings

        settings = get_settings()
        with open_store(settings) as store:
            found = store.find_subscriber(normalise_email(email))
            events = store.mail_events(found.id, limit=RECENT_EVENTS)
        data = _subscriber_json(found, settings=settings)
        data["bounce_score"] = settings.bounce_policy.current_score(
            found.bounce_score, found.last_bounce_at, now=datetime.now(UTC)
        )
        data["last_bounce_at"] = (
            None if found.last_bounce_at is None else found.last_bounce_at.isoformat()
        )
        data["recent_bounce_events"] = [
            event.model_dump(mode="json", exclude={"subscriber_id"})
            for event in events
            if event.kind is not MailEventKind.UNSUBSCRIBE
        ]
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return
    with open_store() as store:
        subscriber = store.find_subscriber(normalise_email(email))
        deliveries = store.list_deliveries(subscriber_id=subscriber.id)
        papers = store.get_papers(
            [
                paper_id
                for profile in subscriber.profiles
                for paper_id in (*profile.interests.liked, *profile.interests.disliked)
            ]
        )
    out.print(f"[bold]{subscriber.email}[/bold] (id {subscriber.id}) — {subscriber.status}")
    schedule = _describe_schedule(
        subscriber.frequency, subscriber.weekday, subscriber.delivery_hour
    )
    out.print(f"schedule: {schedule} {subscriber.time_zone}")
    for number, profile in enumerate(subscriber.profiles, start=1):
        out.print(
            f"profile {number}: “{profile.name}”, {counted(profile.papers_per_issue, 'paper')},"
            f" trending weight {profile.trending_weight:.2f}",
            markup=False,
        )
        _print_interests(profile.interests, papers)
    out.print(f"subscribed: {subscriber.created_at:%Y-%m-%d %H:%M} UTC")
    if subscriber.last_bounce_at is not None:
        out.print(
            f"bounce score: {subscriber.bounce_score:g}, last bounce"
            f" {subscriber.last_bounce_at:%Y-%m-%d %H:%M} UTC"
        )
    table = Table("issue", "status", "papers", "attempts", "message id", "error", title="issues")
    for delivery in deliveries[-14:]:
        table.add_row(
            str(delivery.issue_date),
            delivery.status,
            str(len(delivery.paper_ids)),
            str(delivery.attempts),
            delivery.message_id or "",
            shorten(delivery.last_error or "", 40),
        )
    out.print(table)


@app.command("remove")
def subscribers_remove(email: str, yes: YesOption = False) -> None:
    """Delete a subscriber and their delivery history."""
    from service.signup.addresses import normalise_email

    address = normalise_email(email)
    with open_store() as store:
        store.find_subscriber(address)
        confirm(f"Delete {address} and their history?", doing=f"deleting {address}", yes=yes)
        store.remove_subscriber(address)
    out.print(f"removed {address}")


@app.command("export")
def subscribers_export(email: str) -> None:
    """Everything held about a subscriber, as JSON on stdout."""
    from service.signup.addresses import normalise_email
    from service.signup.subscriptions import export_subscriber

    with open_store() as store:
        subscriber = store.find_subscriber(normalise_email(email))
        data = export_subscriber(store, subscriber.id)
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@app.command("erase")
def subscribers_erase(email: str, yes: YesOption = False) -> None:
    """Delete a subscriber and their history, keeping only a hashed suppression entry."""
    from service.settings import get_settings
    from service.signup.addresses import normalise_email
    from service.signup.subscriptions import erase_subscriber

    settings = get_settings()
    address = normalise_email(email)
    with open_store(settings) as store:
        subscriber = store.find_subscriber(address)
        question = f"Erase {address} and everything held about them, for good?"
        confirm(question, doing=f"erasing {address}", yes=yes)
        erase_subscriber(store, subscriber.id, settings=settings, now=datetime.now(UTC))
    out.print(f"erased {address}")


def _subscriber_json(subscriber: Subscriber, *, settings: "Settings") -> dict[str, Any]:
    """What `show --json` prints: the subscription, and their archive and feed as the pages
    link them (never the link key or the consent record: `export` has everything)."""
    from service.signup.links import archive_list_url, feed_url

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "status": subscriber.status.value,
        "schedule": {
            "frequency": subscriber.frequency.value,
            "weekday": WEEKDAYS[subscriber.weekday],
            "delivery_hour": subscriber.delivery_hour,
            "time_zone": subscriber.time_zone,
        },
        "profiles": [profile.model_dump(mode="json") for profile in subscriber.profiles],
        "feed_only": subscriber.feed_only,
        "created_at": moment(subscriber.created_at),
        "confirmed_at": moment(subscriber.confirmed_at),
        "unsubscribed_at": moment(subscriber.unsubscribed_at),
        "archive_url": archive_list_url(subscriber, settings=settings),
        "feed_url": feed_url(subscriber, settings=settings),
    }


def stored_papers(store: "Store", typed: list[str]) -> tuple[str, ...]:
    """The stored papers `--like` names (ids or links; nothing is looked up on arXiv)."""
    from service.signup.seeds import MAX_PAPER_LINES, resolve_papers

    if len(typed) > MAX_PAPER_LINES:
        raise InvalidInput(f"at most {MAX_PAPER_LINES} --like at a time")
    resolved = resolve_papers(store, typed, lookup=None, now=datetime.now(UTC))
    if resolved.problems:
        hint = " (papers import or papers fetch brings papers in)"
        raise InvalidInput("--like: " + " ".join(resolved.problems) + hint)
    return resolved.paper_ids


def _print_interests(interests: Interests, papers: Mapping[str, Paper]) -> None:
    out.print(f"interests: {describe_interests(interests)}", markup=False)
    out.print(f"authors: {_quoted(interests.authors)}", markup=False)
    out.print(f"excluded: {_quoted(interests.excluded)}", markup=False)
    for name, paper_ids in (("liked", interests.liked), ("disliked", interests.disliked)):
        out.print(f"{name}: {len(paper_ids) or 'none'}")
        for paper_id in paper_ids:
            paper = papers.get(paper_id)
            title = paper.title if paper is not None else "(not stored)"
            out.print(f"  {paper_id}  {shorten(title, 100)}", markup=False)


def describe_interests(interests: Interests) -> str:
    if interests.is_empty:
        return "(none: trending digest)"
    parts = [f"“{keyword}”" for keyword in interests.keywords]
    if interests.text:
        parts.append(interests.text)
    if interests.liked:
        parts.append(
            f"{len(interests.liked)} liked {'paper' if len(interests.liked) == 1 else 'papers'}"
        )
    return ", ".join(parts)


def _quoted(phrases: tuple[str, ...]) -> str:
    return ", ".join(f"“{phrase}”" for phrase in phrases) or "none"


def _describe_schedule(frequency: Frequency, weekday: int, hour: int) -> str:
    when = "daily" if frequency is Frequency.DAILY else f"weekly on {WEEKDAYS[weekday]}"
    return f"{when} at {hour:02d}:00"
