"""The store's notices: one-off emails a visitor asked for (a confirmation link, a manage
link), kept until sent so that a sender lost on the way leaves them to the next one."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update

from service.mail.wire import OutgoingMail
from service.store.database import Database
from service.store.tables import NoticeRow


class NoticeStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"


@dataclass(frozen=True)
class ClaimedNotice:
    id: int
    attempt: int
    mail: OutgoingMail


class NoticeStore(Database):
    """Notices waiting to be sent, and the claims of their senders."""

    def add_notice(
        self,
        mail: OutgoingMail,
        *,
        subscriber_id: int,
        kind: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Keep an email to send before it is sent: whoever sends it may die on the way."""
        row = NoticeRow(
            subscriber_id=subscriber_id,
            kind=kind,
            sender=mail.sender,
            recipients=list(mail.recipients),
            message_id=mail.message_id,
            data=mail.data,
            status=NoticeStatus.QUEUED,
            attempts=0,
            next_attempt_at=now,
            expires_at=expires_at,
            created_at=now,
        )
        with self._session() as session:
            session.add(row)

    def claim_notices(
        self,
        *,
        now: datetime,
        lease: timedelta,
        message_id: str | None = None,
        limit: int = 100,
    ) -> list[ClaimedNotice]:
        """Take due notices for sending (those queued and due, and those whose sender's lease
        ran out), or only the one with `message_id`. Each is held until `now + lease`; two
        senders never take the same one. Notices past their time are deleted unsent."""
        due = (NoticeRow.status == NoticeStatus.QUEUED) & (NoticeRow.next_attempt_at <= now)
        lost = (NoticeRow.status == NoticeStatus.SENDING) & (NoticeRow.lease_expires_at < now)
        with self._session() as session:
            session.execute(delete(NoticeRow).where(NoticeRow.expires_at <= now))
            candidates = select(NoticeRow.id).where(due | lost).order_by(NoticeRow.id).limit(limit)
            if message_id is not None:
                candidates = candidates.where(NoticeRow.message_id == message_id)
            ids = list(session.scalars(candidates))
            if not ids:
                return []
            claimed = session.execute(
                update(NoticeRow)
                .where(NoticeRow.id.in_(ids), due | lost)
                .values(
                    status=NoticeStatus.SENDING,
                    attempts=NoticeRow.attempts + 1,
                    lease_expires_at=now + lease,
                )
                .returning(
                    NoticeRow.id,
                    NoticeRow.sender,
                    NoticeRow.recipients,
                    NoticeRow.message_id,
                    NoticeRow.data,
                    NoticeRow.attempts,
                )
                .execution_options(synchronize_session=False)
            )
            return [
                ClaimedNotice(
                    id=row.id,
                    attempt=row.attempts,
                    mail=OutgoingMail(
                        sender=row.sender,
                        recipients=tuple(row.recipients),
                        message_id=row.message_id,
                        data=row.data,
                    ),
                )
                for row in claimed
            ]

    def finish_notice(
        self, notice_id: int, *, attempt: int, retry_at: datetime | None, error: str | None
    ) -> None:
        """Sent, or given up (`retry_at` None): the notice and its bytes are deleted. Otherwise
        it is due again at `retry_at`. Only the holder of the claim (`attempt`) may finish it."""
        held = (
            (NoticeRow.id == notice_id)
            & (NoticeRow.status == NoticeStatus.SENDING)
            & (NoticeRow.attempts == attempt)
        )
        with self._session() as session:
            if retry_at is None:
                session.execute(delete(NoticeRow).where(held))
            else:
                session.execute(
                    update(NoticeRow)
                    .where(held)
                    .values(
                        status=NoticeStatus.QUEUED,
                        next_attempt_at=retry_at,
                        lease_expires_at=None,
                        last_error=error,
                    )
                    .execution_options(synchronize_session=False)
                )
