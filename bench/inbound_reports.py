"""How fast `paperwire inbound` takes bounces: DSNs for N subscribers' issues, each mailed to
its VERP address over SMTP on 127.0.0.1 to the receiver running in this process, scored in the
store; then the classifier alone on a DSN that returns a whole 100 KB digest.

Run from the project root:

    .venv/bin/python -m bench.inbound_reports [--subscribers 500] [--database-url URL]

SQLite in a temporary folder unless a database URL is given (a PostgreSQL database it may fill).
"""

import argparse
import asyncio
import smtplib
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from service.inbound.classify import classify_message
from service.inbound.receiver import start_receiver
from service.models import SubscriptionStatus
from service.signup.return_addresses import bounce_address, digest_message_id
from service.store import Store
from tests.support.factories import make_preferences, make_settings
from tests.support.returned_mail import delivery_status_notification

ISSUE_DAY = datetime(2026, 11, 25, 8, tzinfo=UTC)
DIGEST_BYTES = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'inbound.db'}"
        store = Store(url)
        try:
            store.upgrade()
            run(store, args.subscribers)
        finally:
            store.close()


def run(store: Store, count: int) -> None:
    settings = make_settings()
    subscribers = [
        store.add_subscriber(
            f"bench{n}-{time.monotonic_ns()}@example.org",
            make_preferences(),
            status=SubscriptionStatus.CONFIRMED,
            now=ISSUE_DAY,
        )
        for n in range(count)
    ]
    messages = []
    for subscriber in subscribers:
        original = EmailMessage()
        original["From"] = f"Paperwire <{settings.mail_from_address}>"
        original["To"] = subscriber.email
        original["Subject"] = "Your papers"
        original["Date"] = format_datetime(ISSUE_DAY)
        original["Message-ID"] = digest_message_id(subscriber, ISSUE_DAY.date(), settings=settings)
        verp = bounce_address(subscriber, ISSUE_DAY.date(), settings=settings)
        dsn = delivery_status_notification(original, to=verp, recipient=subscriber.email)
        messages.append((verp, dsn))

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        start_receiver(
            store,
            settings,
            host="127.0.0.1",
            port=0,
            now=lambda: ISSUE_DAY + timedelta(hours=2),
        )
    )
    port = server.sockets[0].getsockname()[1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example.org") as client:
            for verp, dsn in messages:
                client.sendmail("", [verp], dsn)
        elapsed = time.perf_counter() - started
    finally:
        loop.call_soon_threadsafe(server.close)
    scored = sum(1 for s in subscribers if store.get_subscriber(s.id).bounce_score == 1)
    print(f"database: {store.url.get_backend_name()}, {count} DSNs over one SMTP connection")
    print(f"  {elapsed:.2f} s: {count / elapsed:.0f} DSNs/s, {1000 * elapsed / count:.2f} ms each")
    print(f"  subscribers scored a hard bounce: {scored} of {count}")
    _classifier_alone(messages[0][0], settings.mail_from_address)


def _classifier_alone(verp: str, sender: str) -> None:
    """A DSN that returns the whole message (message/rfc822) of a 100 KB digest."""
    original = EmailMessage()
    original["From"] = sender
    original["To"] = "reader@example.org"
    original["Subject"] = "Your papers"
    line = "A paragraph of an abstract, wrapped as a digest wraps it, about seventy chars.\n"
    original.set_content(line * (DIGEST_BYTES // len(line)))
    headers_only = message_from_bytes(
        delivery_status_notification(original, to=verp, recipient="reader@example.org"),
        policy=policy.default,
    )
    note, status, _headers = headers_only.iter_parts()
    returned = EmailMessage()
    returned.set_content(original)  # message/rfc822: the whole digest comes back
    headers_only.set_payload([note, status, returned])
    dsn = headers_only.as_bytes(policy=policy.SMTP)
    rounds = 50
    started = time.process_time()
    for _ in range(rounds):
        classify_message(dsn, rcpt_tos=[verp], mail_from="")
    cpu = (time.process_time() - started) / rounds
    print(f"classifier alone, DSN of {len(dsn):,} bytes: {1000 * cpu:.1f} ms CPU each")


if __name__ == "__main__":
    main()
