"""The conditional statements of the delivery ledger, built once at import: a claim takes only
issues nobody holds, and only the holder of a claim writes its outcome (`HELD`). `Ledger`
(service/store/ledger.py) runs them."""

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Text,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import BindParameter

from service.models import DeliveryStatus
from service.store.tables import DeliveryRow, UtcDateTime

THESE_ISSUES = (DeliveryRow.issue_date == bindparam("day")) & DeliveryRow.subscriber_id.in_(
    bindparam("ids", expanding=True)
)
LEASE_RAN_OUT = (DeliveryRow.status == DeliveryStatus.SENDING) & (
    DeliveryRow.lease_expires_at < bindparam("now")
)
CLAIMABLE = THESE_ISSUES & or_(
    DeliveryRow.status == DeliveryStatus.PLANNED,
    (DeliveryRow.status == DeliveryStatus.RETRY)
    & (DeliveryRow.next_attempt_at.is_(None) | (DeliveryRow.next_attempt_at <= bindparam("now"))),
    LEASE_RAN_OUT & DeliveryRow.data_started_at.is_(None),
)
# An attempt whose outcome is unknown (the relay may have the message): resent later, while
# the issue has resends left, with the same Message-ID; otherwise it ends `in_doubt`.
RESEND_LEFT = DeliveryRow.in_doubt_count < bindparam("resends", type_=Integer())
IN_DOUBT_VALUES: dict[str, Any] = {
    "status": case(
        (RESEND_LEFT, literal(DeliveryStatus.RETRY.value)),
        else_=literal(DeliveryStatus.IN_DOUBT.value),
    ),
    "next_attempt_at": case((RESEND_LEFT, bindparam("resend_at", type_=UtcDateTime())), else_=None),
    "in_doubt_count": DeliveryRow.in_doubt_count + 1,
    "lease_expires_at": None,
    "updated_at": bindparam("now"),
}
MARK_LOST_IN_DOUBT = (
    update(DeliveryRow)
    .where(THESE_ISSUES, LEASE_RAN_OUT, DeliveryRow.data_started_at.is_not(None))
    .values(
        last_error="the sender was lost after handing the message to the relay",
        **IN_DOUBT_VALUES,
    )
)


def unless_in_doubt(status: Any) -> ColumnElement[str]:
    """`status` for an issue that ends unsent, unless an earlier attempt may have delivered
    it: then it ends `in_doubt`, which no default retry sends again."""
    return case(
        (DeliveryRow.in_doubt_count > 0, literal(DeliveryStatus.IN_DOUBT.value)),
        else_=status,
    )


EXPIRE_CLAIMABLE = (
    update(DeliveryRow)
    .where(CLAIMABLE, DeliveryRow.expires_at <= bindparam("now"))
    .values(
        status=unless_in_doubt(literal(DeliveryStatus.EXPIRED.value)),
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)
FAIL_TRIED_TOO_OFTEN = (
    update(DeliveryRow)
    .where(CLAIMABLE, DeliveryRow.attempts >= bindparam("max_attempts"))
    .values(
        status=unless_in_doubt(literal(DeliveryStatus.FAILED.value)),
        last_error=bindparam("gave_up", type_=Text())
        + func.coalesce(DeliveryRow.last_error, "the worker was lost"),
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)
CLAIM = (
    update(DeliveryRow)
    .where(CLAIMABLE)
    .values(
        status=DeliveryStatus.SENDING,
        attempts=DeliveryRow.attempts + 1,
        lease_expires_at=bindparam("lease_until"),
        # Until told otherwise, a lost attempt reads as a lost worker.
        last_error="the worker was lost while sending",
        data_started_at=None,
        updated_at=bindparam("now"),
    )
    .returning(DeliveryRow.subscriber_id, DeliveryRow.attempts)
)
# The first try of an issue planned and never claimed; claimed for a whole batch at once.
CLAIM_FIRST_TRIES = (
    update(DeliveryRow)
    .where(
        THESE_ISSUES,
        DeliveryRow.status == DeliveryStatus.PLANNED,
        DeliveryRow.attempts == 0,
    )
    .values(
        status=DeliveryStatus.SENDING,
        attempts=1,
        lease_expires_at=bindparam("lease_until"),
        last_error="the worker was lost while sending",
        data_started_at=None,
        updated_at=bindparam("now"),
    )
    .returning(DeliveryRow.subscriber_id, DeliveryRow.attempts)
)
STILL_CLAIMABLE = select(DeliveryRow.subscriber_id).where(CLAIMABLE)


def one_issue(prefix: str = "") -> ColumnElement[bool]:
    """The issue named by the parameters `sid` and `day` (each after `prefix`)."""
    return (DeliveryRow.subscriber_id == bindparam(f"{prefix}sid")) & (
        DeliveryRow.issue_date == bindparam(f"{prefix}day")
    )


def held(prefix: str = "") -> ColumnElement[bool]:
    """Only the holder of a claim may write to its issue: the claim's attempt number (the
    parameter `attempt`, after `prefix`) fences off a sender whose lease ran out and whose issue
    another sender has claimed since. (No attempt given: whoever holds it, for an operator's
    or a test's direct write.)"""
    return (DeliveryRow.status == DeliveryStatus.SENDING) & (
        func.coalesce(bindparam(f"{prefix}attempt", type_=Integer()), DeliveryRow.attempts)
        == DeliveryRow.attempts
    )


ONE_ISSUE = one_issue()
HELD = held()
# With the papers going out (and their why-lines, for the archive): if the sender is then lost,
# the issue is in doubt and its papers count as sent, so the next issue does not repeat them.
# The give-up time is checked here, message by message: a batch that runs long sends nothing
# after it.
BEFORE_DEADLINE = DeliveryRow.expires_at.is_(None) | (DeliveryRow.expires_at > bindparam("now"))
# Its parameters are not named like columns (`sent_paper_ids`, not `paper_ids`): SQLAlchemy
# would add those to the SET of an UPDATE in its WITH (data_start_after_outcome).
MARK_DATA_STARTED = (
    update(DeliveryRow)
    .where(ONE_ISSUE, HELD, BEFORE_DEADLINE)
    .values(
        data_started_at=bindparam("now"),
        paper_ids=bindparam("sent_paper_ids", type_=DeliveryRow.__table__.c.paper_ids.type),
        items=bindparam("sent_items", type_=DeliveryRow.__table__.c["items"].type),
    )
)
EXPIRE_HELD = (
    update(DeliveryRow)
    .where(ONE_ISSUE, HELD, DeliveryRow.expires_at <= bindparam("now"))
    .values(
        status=unless_in_doubt(literal(DeliveryStatus.EXPIRED.value)),
        last_error="not sent: its give-up time had passed",
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)
# The relay may have the message: resent later, or `in_doubt` for good (see IN_DOUBT_VALUES).
RECORD_IN_DOUBT = (
    update(DeliveryRow)
    .where(ONE_ISSUE, HELD)
    .values(
        message_id=bindparam("message_id"),
        paper_ids=bindparam("paper_ids", type_=DeliveryRow.__table__.c.paper_ids.type),
        items=bindparam("items", type_=DeliveryRow.__table__.c["items"].type),
        last_error=bindparam("error"),
        **IN_DOUBT_VALUES,
    )
)
# A long batch keeps its claims: the lease is renewed while the sender is alive.
RENEW_LEASES = (
    update(DeliveryRow)
    .where(
        THESE_ISSUES,
        DeliveryRow.status == DeliveryStatus.SENDING,
        DeliveryRow.lease_expires_at >= bindparam("now"),
    )
    .values(lease_expires_at=bindparam("lease_until"))
)


# The parameters of the earlier issue's outcome in data_start_after_outcome are named with this
# prefix: `p_sid`, `p_day`, `p_attempt`, `p_status`, `p_now`, `p_v_…`.
PREVIOUS = "p_"


@lru_cache(maxsize=32)
def finish_statement(columns: frozenset[str], prefix: str = "") -> Update:
    """UPDATE of a claimed issue's outcome setting `columns`; built once per set of columns.
    Its parameters are `sid`, `day`, `attempt`, `status`, `now` and `v_COLUMN`, each after
    `prefix`."""
    table_columns = DeliveryRow.__table__.c
    status: BindParameter[str] = bindparam(f"{prefix}status")
    return (
        update(DeliveryRow)
        .where(one_issue(prefix), held(prefix))
        .values(
            status=case(
                (
                    (status == DeliveryStatus.FAILED.value) & (DeliveryRow.in_doubt_count > 0),
                    literal(DeliveryStatus.IN_DOUBT.value),
                ),
                else_=status,
            ),
            lease_expires_at=None,
            updated_at=bindparam(f"{prefix}now"),
            **{
                name: bindparam(f"{prefix}v_{name}", type_=table_columns[name].type)
                for name in sorted(columns)
            },
        )
    )


@lru_cache(maxsize=32)
def data_start_after_outcome(columns: frozenset[str]) -> Update:
    """MARK_DATA_STARTED with the outcome of the issue sent before it (`finish_statement` of
    `columns`, its parameters named after PREVIOUS) in the same statement, as an UPDATE in a
    WITH: on PostgreSQL one round trip and one commit for both, where a transaction of two
    statements takes four. PostgreSQL runs such an UPDATE once and to completion, and both
    see one snapshot, so they must be of two different issues."""
    previous = finish_statement(columns, PREVIOUS).returning(DeliveryRow.id).cte("previous_outcome")
    return MARK_DATA_STARTED.add_cte(previous)
