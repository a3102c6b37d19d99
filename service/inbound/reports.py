"""What a bounce, a complaint or a mailed unsubscribe says, and acting on it: the one path by
which the inbound receiver (`receiver`) and the relay webhooks (`service.web.webhooks`) change
a subscription.

A report names its subscriber in one of three ways, tried in this order:
1. an issue tag (`service.signup.return_addresses`) from the envelope sender it came back to,
   or from the Message-ID or Return-Path it quotes: signed, so it cannot be forged;
2. for a mailed unsubscribe, the signed `unsubscribe+…` address it was sent to;
3. the recipient's address, only when the report is authenticated as the relay's own
   (`trusted_recipients`): anyone can put any address in a mail.
A report that names nobody changes nothing.
"""

import contextlib
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from service.errors import InvalidInput
from service.models import (
    BOUNCE_KINDS,
    MailEventKind,
    Subscriber,
    UnsubscribeChannel,
)
from service.settings import Settings
from service.signup.addresses import normalise_email
from service.signup.return_addresses import read_issue_tag, read_unsubscribe_address
from service.signup.subscriptions import RequestOrigin, unsubscribe
from service.signup.tokens import InvalidToken
from service.store import Store


@dataclass(frozen=True)
class MailReport:
    """One recipient's bounce, complaint or unsubscribe, as read from a mail or a webhook."""

    kind: MailEventKind
    # Where it came from: dsn, arf or mailto (inbound mail), ses, postmark or mailgun.
    via: str
    issue_tags: tuple[str, ...] = ()
    # The address an unsubscribe mail was sent to.
    unsubscribe_address: str | None = None
    # Believed only if `trusted_recipients`.
    recipients: tuple[str, ...] = ()
    trusted_recipients: bool = False
    status_code: str | None = None  # 5.1.1 and the like
    detail: str = ""


class Action(StrEnum):
    BOUNCE_SCORED = "bounce scored"
    SUPPRESSED = "suppressed"
    UNSUBSCRIBED = "unsubscribed"
    ALREADY_DONE = "nothing to change"
    UNMATCHED = "names no subscriber"


@dataclass(frozen=True)
class Outcome:
    action: Action
    subscriber_id: int | None = None
    bounce_score: float | None = None


def apply_report(store: Store, report: MailReport, *, settings: Settings, now: datetime) -> Outcome:
    """Record `report` against the subscriber it names, if any (see the module's docstring)."""
    matched = match_subscriber(store, report, settings=settings)
    if matched is None:
        return Outcome(Action.UNMATCHED)
    subscriber, issue_date = matched
    if report.kind in BOUNCE_KINDS:
        bounced = store.record_bounce(
            subscriber.id,
            report.kind,
            via=report.via,
            at=now,
            policy=settings.bounce_policy,
            issue_date=issue_date,
            status_code=report.status_code,
            detail=report.detail,
        )
        if bounced is None:
            return Outcome(Action.UNMATCHED)
        action = Action.SUPPRESSED if bounced.suppressed else Action.BOUNCE_SCORED
        return Outcome(action, subscriber.id, bounced.score)
    if report.kind is MailEventKind.COMPLAINT:
        if not store.record_complaint(
            subscriber.id, via=report.via, at=now, issue_date=issue_date, detail=report.detail
        ):
            return Outcome(Action.UNMATCHED)
        return Outcome(Action.SUPPRESSED, subscriber.id)
    origin = RequestOrigin(ip=None, user_agent=None, via=f"unsubscribe mail ({report.via})")
    done = unsubscribe(store, subscriber.id, origin=origin, now=now, channel=_channel(report))
    return Outcome(Action.UNSUBSCRIBED if done else Action.ALREADY_DONE, subscriber.id)


def match_subscriber(
    store: Store, report: MailReport, *, settings: Settings
) -> tuple[Subscriber, date | None] | None:
    """The subscriber a report names, and the issue it concerns when it names one."""
    for tag in report.issue_tags:
        with contextlib.suppress(InvalidToken):
            return read_issue_tag(store, tag, settings=settings)
    if report.unsubscribe_address:
        with contextlib.suppress(InvalidToken):
            return read_unsubscribe_address(
                store, report.unsubscribe_address, settings=settings
            ), None
    if report.trusted_recipients:
        for recipient in report.recipients:
            with contextlib.suppress(InvalidInput):
                found = store.find_subscriber_by_email(normalise_email(recipient))
                if found is not None:
                    return found, None
    return None


def _channel(report: MailReport) -> UnsubscribeChannel:
    return UnsubscribeChannel.MAILTO if report.via == "mailto" else UnsubscribeChannel.ADMIN
