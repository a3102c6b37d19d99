"""What every transport shares: the `MailTransport` protocol, `DeliveryError`, and how an SMTP
reply code reads (permanent or not)."""

from collections.abc import Callable
from typing import Protocol

from service.errors import PaperwireError
from service.mail.wire import OutgoingMail


class DeliveryError(PaperwireError):
    """A message was not handed over. `permanent` means retrying the same message is futile;
    `in_doubt` means the relay may have it: the connection ended after the whole message was
    sent and before the relay said whether it took it; `unreachable` means no session with
    the relay could be had (it is down, or refuses this service), whatever the message."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        smtp_code: int | None = None,
        in_doubt: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.smtp_code = smtp_code
        self.in_doubt = in_doubt
        self.unreachable = unreachable


# Called once every recipient is accepted, just before the message itself goes out; from
# then on a lost connection may mean the relay has the message.
BeforeData = Callable[[], None]


class MailTransport(Protocol):
    async def send(self, mail: OutgoingMail, *, before_data: BeforeData | None = None) -> None:
        """Hand `mail` over; `OutgoingMail.from_message` makes one of any EmailMessage."""
        ...

    async def close(self) -> None: ...


def is_permanent(code: int) -> bool:
    # 552 (storage exceeded) is a mailbox that may have room tomorrow; RFC 5321 §4.5.3.1.10.
    # 530 (authentication or STARTTLS required) and 538 (encryption required), RFC 4954 §6 and
    # RFC 3207 §4, ask for a different session set-up: a mail_url to fix, not a bad message.
    return 500 <= code < 600 and code not in (530, 538, 552)


def check_envelope(mail: OutgoingMail) -> None:
    """The checks smtplib makes of an envelope, made before any connection is used."""
    if not mail.sender:
        raise DeliveryError(
            "the message needs exactly one From (or Sender) address", permanent=True
        )
    if not mail.recipients:
        raise DeliveryError("the message has no recipients", permanent=True)
