"""Which issues are due now: the planning step of the scheduled job, and the sweep behind it."""

from collections.abc import Callable
from datetime import date, datetime, timedelta

from service.delivery.schedule import Schedule
from service.models import IssueKey, Subscriber, SubscriptionStatus
from service.settings import Settings
from service.store import Store

# Signups not confirmed within this time are deleted; confirmation links expire before that.
PENDING_SIGNUP_LIFETIME = timedelta(days=3)


def plan_due_issues(store: Store, *, now: datetime, settings: Settings) -> list[IssueKey]:
    """Record a planned ledger row for every issue due at `now`; return the new ones."""
    give_up_after = timedelta(hours=settings.give_up_hours)
    planned: list[IssueKey] = []
    for schedule in store.schedules():
        issue_date = schedule.due_issue_date(now, give_up_after=give_up_after)
        if issue_date is None:
            continue
        expires_at = schedule.delivery_at(issue_date) + give_up_after
        subscriber_ids = store.plan_issues(schedule, issue_date, now=now, expires_at=expires_at)
        planned.extend((subscriber_id, issue_date) for subscriber_id in subscriber_ids)
    return planned


def plan_day(store: Store, issue_date: date, *, now: datetime) -> list[IssueKey]:
    """Plan the issue of `issue_date` for every confirmed subscriber due that day, whatever
    their hour (an operator's run of a whole day); no give-up deadline."""
    planned: list[IssueKey] = []
    for schedule in store.schedules():
        if schedule.is_issue_day(issue_date):
            subscriber_ids = store.plan_issues(schedule, issue_date, now=now, expires_at=None)
            planned.extend((subscriber_id, issue_date) for subscriber_id in subscriber_ids)
    return planned


def due_subscribers(store: Store, issue_date: date) -> list[Subscriber]:
    """Confirmed subscribers whose schedule gives them an issue on `issue_date`, by id: the
    rule `plan_day` plans by, for a run that plans nothing (a dry run)."""
    return [
        subscriber
        for subscriber in store.list_subscribers(status=SubscriptionStatus.CONFIRMED)
        if Schedule.of(subscriber).is_issue_day(issue_date)
    ]


def issues_to_sweep(
    store: Store,
    *,
    now: datetime,
    settings: Settings,
    waiting_in_broker: Callable[[list[IssueKey]], set[IssueKey]] | None = None,
) -> list[IssueKey]:
    """What a lost broker message, a dead worker or a due retry left waiting.

    `waiting_in_broker` says which issues still have their batch in the broker (see
    `workers.queued`): those are only slow, behind a long queue, and are not enqueued again,
    unless they have waited longer than the broker's visibility timeout, after which the
    broker itself would have handed them out again.
    """
    requeue_after = timedelta(seconds=settings.requeue_after_seconds)
    candidates = store.issues_to_sweep(now=now, requeue_after=requeue_after)
    maybe_queued = [c.key for c in candidates if c.maybe_queued]
    if waiting_in_broker is None or not maybe_queued:
        return [c.key for c in candidates]
    still_waiting = waiting_in_broker(maybe_queued)
    patience = now - timedelta(seconds=settings.broker_visibility_timeout_seconds)
    return [
        c.key
        for c in candidates
        if c.key not in still_waiting or (c.enqueued_at is not None and c.enqueued_at < patience)
    ]


def batches(keys: list[IssueKey], *, size: int) -> list[list[IssueKey]]:
    return [keys[start : start + size] for start in range(0, len(keys), size)]


def prune_pending_signups(store: Store, *, now: datetime) -> int:
    return store.prune_pending(created_before=now - PENDING_SIGNUP_LIFETIME)
