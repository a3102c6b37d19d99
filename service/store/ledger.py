"""The delivery ledger's claims and outcomes, as one sender records them on one connection,
with the conditional statements that make them safe to race (`ledger_statements`): two senders
never both win an issue, and only the holder of a claim writes its outcome."""

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.models import BouncePolicy, DeliveryStatus, IssueItem, MailEventKind
from service.store.ledger_statements import (
    CLAIM,
    CLAIM_FIRST_TRIES,
    EXPIRE_CLAIMABLE,
    EXPIRE_HELD,
    FAIL_TRIED_TOO_OFTEN,
    MARK_DATA_STARTED,
    MARK_LOST_IN_DOUBT,
    PREVIOUS,
    RECORD_IN_DOUBT,
    RENEW_LEASES,
    STILL_CLAIMABLE,
    data_start_after_outcome,
    finish_statement,
)
from service.store.mail_events import write_bounce
from service.store.rows import items_json

_ENHANCED_CODE = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")


class DataStart(StrEnum):
    """What `Ledger.mark_data_started` found: go ahead, or why the message must not go out."""

    STARTED = "started"
    CLAIM_LOST = "claim-lost"
    EXPIRED = "expired"


# One write of the ledger, run inside a transaction on the ledger's connection.
_Write = Callable[[Connection], object]


@dataclass(frozen=True)
class _Outcome:
    """The outcome of a claimed issue (`finish_statement` of `columns`, with `params`); the
    write says False if the issue was not being sent (only the holder of the claim may record
    its outcome)."""

    columns: frozenset[str]
    params: dict[str, Any]

    def __call__(self, connection: Connection) -> bool:
        return bool(connection.execute(finish_statement(self.columns), self.params).rowcount == 1)

    def of(self, subscriber_id: int, issue_date: date) -> bool:
        return bool(self.params["sid"] == subscriber_id and self.params["day"] == issue_date)


class Ledger:
    """Claims and outcomes of issues, as one sender records them on one connection.

    An outcome is not committed on its own: it waits for the next write, at the latest the
    mark that the next message is going out (`mark_data_started`), and goes in the same
    transaction, so a message costs one commit, not three. A sender lost in between leaves
    that issue `sending` with its data started, which the next claim turns into `in_doubt`:
    it is never sent twice. On PostgreSQL that mark and the one outcome before it are a single
    statement, in the connection's autocommit mode: one round trip, where a transaction of
    two statements costs four (BEGIN, two UPDATEs, COMMIT), and each round trip wakes the
    server and the sender once more.

    Claims take only issues that planning put in the ledger (`service.delivery.planning`);
    an issue with no row, never planned or gone with its subscriber, is nobody's to send.
    """

    def __init__(self, connection: Connection, *, one_statement_starts: bool = True) -> None:
        """`one_statement_starts=False` writes every data start in a transaction, as on
        SQLite, for comparison (`bench.ledger_writes`)."""
        self._connection = connection
        self._pending: list[_Write] = []
        # PostgreSQL runs an UPDATE in a WITH; there the connection is in autocommit mode
        # between transactions, so that one statement is one round trip.
        self._one_statement_starts = (
            one_statement_starts and connection.dialect.name == "postgresql"
        )
        if self._one_statement_starts:
            connection.execution_options(isolation_level="AUTOCOMMIT")
        # The issue whose data start this ledger committed last, with its papers and items:
        # its `record_sent` need not write them again.
        self._data_started: tuple[int, date, tuple[str, ...], tuple[IssueItem, ...]] | None = None

    def claim_first_tries(
        self,
        issue_date: date,
        subscriber_ids: Sequence[int],
        *,
        now: datetime,
        lease: timedelta,
        max_attempts: int | None = None,
        in_doubt_resends: int = 0,
        in_doubt_resend_after: timedelta = timedelta(0),
    ) -> tuple[dict[int, int], set[int]]:
        """Claim at once these issues that were never tried; return their attempt numbers,
        and the ids of those tried before that may be claimed now, one by one with `claim`.

        Issues tried before are claimed just before each is sent, so that a lost try counts
        only against its own issue, never against the neighbours of one that kept killing
        its worker.
        """
        ids = list(subscriber_ids)
        params = _claim_params(
            issue_date,
            ids,
            now=now,
            lease=lease,
            max_attempts=max_attempts,
            in_doubt_resends=in_doubt_resends,
            in_doubt_resend_after=in_doubt_resend_after,
        )
        connection = self._connection
        with self._transaction():
            self._write_pending()
            self._settle_lost_and_late(params)
            claimed = {
                row.subscriber_id: row.attempts
                for row in connection.execute(CLAIM_FIRST_TRIES, params)
            }
            later = set(connection.scalars(STILL_CLAIMABLE, params))
        return claimed, later

    def claim(
        self,
        issue_date: date,
        subscriber_ids: Sequence[int],
        *,
        now: datetime,
        lease: timedelta,
        max_attempts: int | None = None,
        in_doubt_resends: int = 0,
        in_doubt_resend_after: timedelta = timedelta(0),
    ) -> dict[int, int]:
        """Take these subscribers' issues of `issue_date` for sending; return the attempt
        number of each one taken. Issues sent, finished or held by another sender are not.

        One conditional UPDATE decides, so two workers racing for the same issue cannot both
        win. The claim is committed before any mail is sent. An issue past its give-up time
        becomes `expired`, one already tried `max_attempts` times becomes `failed` (a task that
        kills its worker every time must end somewhere), and one whose sender was lost after
        the message started going out is in doubt: due again after `in_doubt_resend_after`
        while it has resends left (`in_doubt_resends`), `in_doubt` otherwise.
        """
        ids = list(subscriber_ids)
        params = _claim_params(
            issue_date,
            ids,
            now=now,
            lease=lease,
            max_attempts=max_attempts,
            in_doubt_resends=in_doubt_resends,
            in_doubt_resend_after=in_doubt_resend_after,
        )
        with self._transaction():
            self._write_pending()
            self._settle_lost_and_late(params)
            claimed = self._connection.execute(CLAIM, params)
            return {row.subscriber_id: row.attempts for row in claimed}

    def mark_data_started(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        now: datetime,
        paper_ids: Sequence[str] = (),
        items: Sequence[IssueItem] = (),
        attempt: int | None = None,
    ) -> "DataStart":
        """Committed before the message with `paper_ids` (and their `items`, as the reader
        sees them) goes out: from here a lost sender leaves it in doubt. Outcomes still
        pending are committed with it. Anything but `STARTED` means the message must not go
        out: this sender no longer holds the claim (see `ledger_statements.HELD`), or the
        issue's give-up time has passed (it is now `expired`)."""
        params = {
            "sid": subscriber_id,
            "day": issue_date,
            "now": now,
            "sent_paper_ids": list(paper_ids),
            "sent_items": items_json(items),
            "attempt": attempt,
        }
        started = self._start_in_one_statement(params)
        if started is None:
            started = self._start_in_transaction(params)
        if started:
            self._data_started = (subscriber_id, issue_date, tuple(paper_ids), tuple(items))
            return DataStart.STARTED
        with self._transaction():
            if self._connection.execute(EXPIRE_HELD, params).rowcount == 1:
                return DataStart.EXPIRED
        return DataStart.CLAIM_LOST

    def _start_in_one_statement(self, params: dict[str, Any]) -> bool | None:
        """Whether the data start, written with the one outcome pending if any as a single
        statement, took; None on SQLite, or when other writes are pending, or when the
        outcome is of this same issue (one statement must not write a row twice)."""
        if not self._one_statement_starts or len(self._pending) > 1:
            return None
        statement = MARK_DATA_STARTED
        if self._pending:
            outcome = self._pending[0]
            if not isinstance(outcome, _Outcome) or outcome.of(params["sid"], params["day"]):
                return None
            statement = data_start_after_outcome(outcome.columns)
            params = {
                **params,
                **{PREVIOUS + name: value for name, value in outcome.params.items()},
            }
        self._pending = []
        with self._connection.begin():  # in autocommit mode: no BEGIN or COMMIT is sent
            return bool(self._connection.execute(statement, params).rowcount == 1)

    def _start_in_transaction(self, params: dict[str, Any]) -> bool:
        with self._transaction():
            self._write_pending()
            return bool(self._connection.execute(MARK_DATA_STARTED, params).rowcount == 1)

    def renew_leases(
        self, issue_date: date, subscriber_ids: Sequence[int], *, now: datetime, lease: timedelta
    ) -> None:
        """Extend the leases of these issues still held, for a batch that runs long."""
        params = {
            "day": issue_date,
            "ids": list(subscriber_ids),
            "now": now,
            "lease_until": now + lease,
        }
        with self._transaction():
            self._write_pending()
            self._connection.execute(RENEW_LEASES, params)

    def record_sent(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        message_id: str | None,
        paper_ids: Sequence[str],
        now: datetime,
        items: Sequence[IssueItem] = (),
        attempt: int | None = None,
    ) -> None:
        """Mark a claimed issue sent; its papers, kept on its row, are never sent again, and
        its `items` are what its archived copy shows. No `message_id`: an issue made for the
        feed alone, with no email."""
        written = (subscriber_id, issue_date, tuple(paper_ids), tuple(items))
        papers: dict[str, Any] = (
            {}
            if written == self._data_started
            else {"paper_ids": list(paper_ids), "items": items_json(items)}
        )
        finish = _finish_write(
            subscriber_id,
            issue_date,
            attempt,
            status=DeliveryStatus.SENT,
            now=now,
            message_id=message_id,
            sent_at=now,
            last_error=None,
            **papers,
        )
        self._pending.append(finish)

    def record_skipped(
        self, subscriber_id: int, issue_date: date, *, now: datetime, attempt: int | None = None
    ) -> None:
        """Mark a claimed issue skipped: nothing relevant to send that day."""
        finish = _finish_write(
            subscriber_id, issue_date, attempt, status=DeliveryStatus.SKIPPED, now=now
        )
        self._pending.append(finish)

    def record_failure(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        error: str,
        now: datetime,
        retry_at: datetime | None = None,
        refused: bool = False,
        hard_bounce: BouncePolicy | None = None,
        attempt: int | None = None,
    ) -> None:
        """Mark a claimed issue due again at `retry_at`; `refused` when sending it again is
        futile (a permanent refusal); failed otherwise, or in doubt if an earlier attempt may
        have delivered it.

        A hard bounce (the relay said the mailbox does not exist; given as the bounce policy)
        is scored against the subscriber like any other (`store.mail_events`).
        """
        if refused:
            status = DeliveryStatus.REFUSED
        else:
            status = DeliveryStatus.FAILED if retry_at is None else DeliveryStatus.RETRY
        finish = _finish_write(
            subscriber_id,
            issue_date,
            attempt,
            status=status,
            now=now,
            last_error=error,
            next_attempt_at=retry_at,
        )

        def write(connection: Connection) -> None:
            if finish(connection) and hard_bounce is not None:
                with Session(bind=connection) as session:
                    write_bounce(
                        session,
                        subscriber_id,
                        MailEventKind.HARD_BOUNCE,
                        via="smtp",
                        at=now,
                        policy=hard_bounce,
                        issue_date=issue_date,
                        status_code=_enhanced_code(error),
                        detail=error,
                    )
                    session.flush()

        self._pending.append(write)

    def record_in_doubt(
        self,
        subscriber_id: int,
        issue_date: date,
        *,
        message_id: str,
        error: str,
        now: datetime,
        paper_ids: Sequence[str] = (),
        items: Sequence[IssueItem] = (),
        attempt: int | None = None,
        resends: int = 0,
        resend_at: datetime | None = None,
    ) -> None:
        """The relay may have the message: the connection ended after the message went out
        and before the relay answered. Due again at `resend_at` (same Message-ID, so a
        receiver that has it can drop the copy) while the issue has had fewer than `resends`
        such attempts; `in_doubt` for good otherwise."""
        params = {
            "sid": subscriber_id,
            "day": issue_date,
            "attempt": attempt,
            "now": now,
            "resends": resends if resend_at is not None else 0,
            "resend_at": resend_at,
            "message_id": message_id,
            "paper_ids": list(paper_ids),
            "items": items_json(items),
            "error": error,
        }
        self._pending.append(lambda connection: connection.execute(RECORD_IN_DOUBT, params))

    def flush(self) -> None:
        """Commit the outcomes still pending."""
        if self._pending:
            with self._transaction():
                self._write_pending()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A transaction on the ledger's connection, out of autocommit mode for its length."""
        connection = self._connection
        if not self._one_statement_starts:
            with connection.begin():
                yield
            return
        connection.execution_options(isolation_level=connection.default_isolation_level)
        try:
            with connection.begin():
                yield
        finally:
            connection.execution_options(isolation_level="AUTOCOMMIT")

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        for write in pending:
            write(self._connection)

    def _settle_lost_and_late(self, params: dict[str, Any]) -> None:
        """End the issues no claim may take any more."""
        connection = self._connection
        connection.execute(MARK_LOST_IN_DOUBT, params)
        connection.execute(EXPIRE_CLAIMABLE, params)
        connection.execute(FAIL_TRIED_TOO_OFTEN, params)


def _claim_params(
    issue_date: date,
    ids: list[int],
    *,
    now: datetime,
    lease: timedelta,
    max_attempts: int | None,
    in_doubt_resends: int,
    in_doubt_resend_after: timedelta,
) -> dict[str, Any]:
    return {
        "day": issue_date,
        "ids": ids,
        "now": now,
        "lease_until": now + lease,
        "resends": in_doubt_resends,
        "resend_at": now + in_doubt_resend_after,
        # No cap is a cap nobody reaches.
        "max_attempts": max_attempts if max_attempts is not None else 2**31 - 1,
        "gave_up": f"gave up after {max_attempts} attempts; last error: ",
    }


def _finish_write(
    subscriber_id: int,
    issue_date: date,
    attempt: int | None,
    *,
    status: DeliveryStatus,
    now: datetime,
    **values: Any,
) -> _Outcome:
    params = {f"v_{name}": value for name, value in values.items()}
    params.update(sid=subscriber_id, day=issue_date, status=status.value, now=now, attempt=attempt)
    return _Outcome(frozenset(values), params)


def _enhanced_code(reply: str) -> str | None:
    """The RFC 3463 code in an SMTP reply's text (`550 5.1.1 no such user`), if any."""
    match = _ENHANCED_CODE.search(reply)
    return match.group(0) if match else None
