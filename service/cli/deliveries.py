"""`paperwire deliveries list|retry|prune` and `paperwire stats`: the delivery ledger.

The delivery pipeline is imported by `deliveries retry --now` alone: the other commands only
read the ledger."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from service.cli.common import (
    YesOption,
    confirm,
    counted,
    open_store,
    out,
    parse_date,
    progress_bar,
    shorten,
)
from service.cli.digest import print_run_summary
from service.models import DeliveryStatus, MailEventKind, SubscriptionStatus, UnsubscribeChannel

app = typer.Typer(help="The delivery ledger.", no_args_is_help=True)

AWAITING_RETRY = (DeliveryStatus.RETRY,)
# Finished without being sent, and worth sending again once what failed is fixed. Not refused
# issues (the relay refused them for good: a hard bounce would only count twice) nor in-doubt
# ones (the subscriber may have a copy) unless named.
DEFAULT_RETRY_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)


# Gmail's and Yahoo's sender rules: a spam rate kept under 0.1%, never reaching 0.3%.
COMPLAINT_RATE_WARNING = 0.001
COMPLAINT = (MailEventKind.COMPLAINT.value, None)
# The unsubscribe columns of `stats`, by channel; API and admin unsubscribes count as "other".
UNSUBSCRIBE_COLUMNS = {
    "link": UnsubscribeChannel.LINK,
    "one-click": UnsubscribeChannel.ONE_CLICK,
    "mailto": UnsubscribeChannel.MAILTO,
}


@app.command("list")
def deliveries_list(
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """The ledger rows of one issue date."""
    day = parse_date(issue_date)
    with open_store() as store:
        deliveries = store.list_deliveries(issue_date=day, status=status)
        emails = {s.id: s.email for s in store.list_subscribers()}
    table = Table("subscriber", "status", "attempts", "papers", "next attempt (UTC)", "error")
    for delivery in deliveries:
        # Only an issue waiting to be tried again has a next attempt worth showing; other rows
        # may keep the time of an earlier retry, which means nothing now.
        next_attempt = delivery.next_attempt_at if delivery.status in AWAITING_RETRY else None
        table.add_row(
            emails.get(delivery.subscriber_id, str(delivery.subscriber_id)),
            delivery.status,
            str(delivery.attempts),
            str(len(delivery.paper_ids)),
            f"{next_attempt:%Y-%m-%d %H:%M}" if next_attempt else "",
            shorten(delivery.last_error or "", 60),
            end_section=False,
        )
    table.title = f"{counted(len(deliveries), 'issue')} of {day}"
    out.print(table)


@app.command("prune")
def deliveries_prune(
    before: Annotated[
        str | None,
        typer.Option(
            help="YYYY-MM-DD: delete issues dated before it; by default, those older than "
            "PAPERWIRE_LEDGER_RETENTION_DAYS."
        ),
    ] = None,
    yes: YesOption = False,
) -> None:
    """Delete old issues from the ledger (and so from archives, feeds and stats)."""
    from service.delivery.retention import check_cutoff, prune_ledger, retention_cutoff
    from service.settings import get_settings

    settings = get_settings()
    today = parse_date(None)
    cutoff = (
        retention_cutoff(today, settings.ledger_retention_days)
        if before is None
        else parse_date(before)
    )
    if cutoff is None:
        out.print("PAPERWIRE_LEDGER_RETENTION_DAYS is 0: every issue is kept (name --before)")
        return
    check_cutoff(cutoff, today=today)
    with open_store(settings) as store:
        total = store.count_deliveries_before(cutoff)
        if total == 0:
            out.print(f"no issue dated before {cutoff}")
            return
        confirm(
            f"Delete {counted(total, 'issue')} dated before {cutoff} from the ledger?",
            doing="deleting issues",
            yes=yes,
        )
        with progress_bar() as progress:
            task = progress.add_task("deleting issues", total=total)
            pruned = prune_ledger(
                store,
                before=cutoff,
                today=today,
                on_pruned=lambda deleted: progress.advance(task, deleted),
            )
    out.print(f"{counted(pruned, 'issue')} dated before {cutoff} deleted")


@app.command("retry")
def deliveries_retry(
    issue_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD; today.")] = None,
    status: Annotated[
        list[DeliveryStatus] | None,
        typer.Option(
            help="Statuses to retry (repeatable); failed and expired by default. refused "
            "(permanent SMTP refusals) and in_doubt (a copy may have arrived) only when named."
        ),
    ] = None,
    now_: Annotated[
        bool, typer.Option("--now", help="Send them from this process instead of the workers.")
    ] = False,
) -> None:
    """Make failed (or other finished) issues of a day go out again; only to subscribers
    still confirmed."""
    from service.settings import get_settings

    settings = get_settings()
    day = parse_date(issue_date)
    statuses = status or list(DEFAULT_RETRY_STATUSES)
    with open_store(settings) as store:
        reopened = store.reopen_issues(issue_date=day, statuses=statuses, now=datetime.now(UTC))
        out.print(f"{counted(len(reopened), 'issue')} of {day} reopened")
        left = store.delivery_counts(since=day).get(day, {})
        for held_back in (DeliveryStatus.REFUSED, DeliveryStatus.IN_DOUBT):
            if left.get(held_back) and held_back not in statuses:
                out.print(
                    f"{counted(left[held_back], held_back.value + ' issue')} left alone "
                    f"(add --status {held_back.value} to send them again)"
                )
        if now_ and reopened:
            import asyncio

            from service.delivery.pipeline import deliver_batch

            summary = asyncio.run(deliver_batch(store, reopened, settings=settings))
            print_run_summary(summary)
        elif reopened:
            out.print("the workers' next sweep sends them (within 5 minutes)")


def stats(
    since: Annotated[
        str | None, typer.Option(help="First issue date, YYYY-MM-DD; a week ago.")
    ] = None,
) -> None:
    """Issues per day and ledger status; per day what came back (bounces, complaints,
    unsubscribes) and the complaint rate; subscribers per status."""
    first = parse_date(since) if since else datetime.now(UTC).date() - timedelta(days=6)
    with open_store() as store:
        counts = store.delivery_counts(since=first)
        emailed = store.emailed_counts(since=first)
        events = store.mail_event_counts(since=first)
        subscribers, bounces = store.subscriber_counts()
    statuses = list(DeliveryStatus)
    table = Table("issue date", *(status.value for status in statuses), title="deliveries")
    for issue_date in sorted(counts, reverse=True):
        row = counts[issue_date]
        table.add_row(str(issue_date), *(str(row.get(status, 0)) for status in statuses))
    out.print(table)
    out.print(_mail_table(emailed, events))
    for day in sorted(set(emailed) | set(events), reverse=True):
        rate = complaint_rate(emailed.get(day, 0), _sum(events.get(day), COMPLAINT))
        if rate is not None and rate > COMPLAINT_RATE_WARNING:
            out.print(
                f"[bold red]complaint rate {rate:.2%} on {day}: over {COMPLAINT_RATE_WARNING:.1%}"
                " (Gmail and Yahoo require under 0.3%)[/bold red]"
            )
    people = ", ".join(f"{subscribers.get(s, 0)} {s.value}" for s in SubscriptionStatus)
    out.print(f"subscribers: {people}; hard bounces: {bounces}")


def complaint_rate(emailed: int, complaints: int) -> float | None:
    """Complaints of a day over the issues emailed that day; None when nothing went out."""
    return complaints / emailed if emailed else None


def _sum(counts: Counter[tuple[str, str]] | None, wanted: tuple[str, str | None]) -> int:
    kind, via = wanted
    return sum(n for (k, v), n in (counts or {}).items() if k == kind and via in (None, v))


def _mail_table(emailed: dict[date, int], events: dict[date, Counter[tuple[str, str]]]) -> Table:
    table = Table(
        "day",
        "emailed",
        "hard bounces",
        "soft bounces",
        "complaints",
        "complaint rate",
        *(f"unsub. {name}" for name in UNSUBSCRIBE_COLUMNS),
        "unsub. other",
        title="what came back (bounces and complaints by the day they arrived)",
    )
    unsubscribe = MailEventKind.UNSUBSCRIBE.value
    for day in sorted(set(emailed) | set(events), reverse=True):
        counts = events.get(day)
        complaints = _sum(counts, COMPLAINT)
        rate = complaint_rate(emailed.get(day, 0), complaints)
        shown_rate = "" if rate is None else f"{rate:.2%}"
        if rate is not None and rate > COMPLAINT_RATE_WARNING:
            shown_rate = f"[bold red]{shown_rate}[/bold red]"
        by_channel = [_sum(counts, (unsubscribe, c.value)) for c in UNSUBSCRIBE_COLUMNS.values()]
        table.add_row(
            str(day),
            str(emailed.get(day, 0)),
            str(_sum(counts, (MailEventKind.HARD_BOUNCE.value, None))),
            str(_sum(counts, (MailEventKind.SOFT_BOUNCE.value, None))),
            str(complaints),
            shown_rate,
            *(str(n) for n in by_channel),
            str(_sum(counts, (unsubscribe, None)) - sum(by_channel)),
        )
    return table
