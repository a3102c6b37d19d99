"""`paperwire inbound` as an operator runs it, in a subprocess on 127.0.0.1, and `paperwire
inbox`, which lists and shows what it kept."""

import os
import signal
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.models import MailEventKind, SubscriptionStatus
from service.signup.return_addresses import unsubscribe_address
from service.store import Store
from tests.support.cli_runner import PAPERWIRE, Run
from tests.support.factories import NOW, add_subscriber, make_settings
from tests.support.returned_mail import plain_message
from tests.support.services import free_port, wait_until

SECRET_KEY = "inbound-cli-secret"
SENDER = "digest@paperwire.test"


@pytest.fixture
def cli_store(tmp_path: Path) -> Iterator[Store]:
    """The store `paperwire` uses in `tmp_path` (see tests/support/cli_runner.py), migrated."""
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    store.upgrade()
    yield store
    store.close()


def _accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_inbound_receives_a_mailed_unsubscribe_until_terminated(
    cli_store: Store, tmp_path: Path
) -> None:
    ada = add_subscriber(cli_store, "ada@example.org")
    address = unsubscribe_address(
        ada, settings=make_settings(secret_key=SECRET_KEY, mail_from_address=SENDER)
    )
    port = free_port()
    env = {
        **os.environ,
        "PAPERWIRE_DATABASE_URL": str(cli_store.url),
        "PAPERWIRE_SECRET_KEY": SECRET_KEY,
        "PAPERWIRE_MAIL_FROM_ADDRESS": SENDER,
    }
    receiver = subprocess.Popen(
        [PAPERWIRE, "inbound", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _accepts_connections(port), timeout=30, what="paperwire inbound")
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client:
            client.sendmail(
                "ada@example.org",
                [address],
                plain_message(address, "unsubscribe", "", sender="ada@example.org"),
            )
    finally:
        receiver.send_signal(signal.SIGTERM)
        stdout, stderr = receiver.communicate(timeout=15)

    assert receiver.returncode == 0, stderr
    assert stdout.splitlines() == [f"listening on smtp://127.0.0.1:{port}", "stopped"]
    assert "Traceback" not in stderr
    assert "unsubscribe mail: unsubscribed" in stderr  # the receiver's line for the message
    assert cli_store.get_subscriber(ada.id).status is SubscriptionStatus.UNSUBSCRIBED
    (event,) = cli_store.mail_events(ada.id)
    assert (event.kind, event.via) == (MailEventKind.UNSUBSCRIBE, "mailto")


def test_inbound_refuses_a_port_in_use_in_one_line(paperwire: Run, cli_store: Store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = paperwire("inbound", "--port", str(port), check_exit=2)

    assert result.stderr.splitlines() == [
        f"error: cannot listen: error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"
    ]


def test_inbound_needs_a_migrated_store(paperwire: Run) -> None:
    result = paperwire("inbound", "--port", str(free_port()), check_exit=2)

    (line,) = result.stderr.splitlines()
    assert line.startswith("error: database error: ") and "paperwire db upgrade" in line


def test_inbox_lists_and_shows_kept_messages(paperwire: Run, cli_store: Store) -> None:
    data = plain_message(
        "bounces@paperwire.test", "Out of office \x1b]0;owned\x07[bold]", "Back on Monday.\n"
    )
    kept_id = cli_store.add_inbound_message(
        received_at=NOW,
        mail_from="ada@example.org",
        rcpt_to="bounces@paperwire.test",
        subject="Out of office \x1b]0;owned\x07[bold]",
        note="an automatic reply",
        data=data,
    )
    cli_store.add_inbound_message(
        received_at=NOW + timedelta(minutes=1),
        mail_from="<>",
        rcpt_to="postmaster@paperwire.test",
        subject="Second",
        note="not a bounce, a complaint or an unsubscribe",
        data=b"Subject: Second\r\n\r\nhi\r\n",
    )

    listed = paperwire("inbox").stdout
    newest_only = paperwire("inbox", "--limit", "1").stdout
    shown = paperwire("inbox", "show", str(kept_id)).stdout

    assert "2 messages kept" in listed and "an automatic reply" in listed
    assert "Out of office" in listed and "[bold]" in listed and "\x1b" not in listed
    assert "1 message kept" in newest_only and "Second" in newest_only
    assert "Out of office" not in newest_only
    assert "note: an automatic reply" in shown.splitlines()
    assert "Back on Monday." in shown
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "Out of office \N{REPLACEMENT CHARACTER}]0;owned\N{REPLACEMENT CHARACTER}" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("inbox", "show", "99"), "error: no kept message has id 99: see `paperwire inbox`"),
        (("inbox", "--limit", "0"), "must be a whole number from 1 to 500"),
        (("inbox", "show", "x"), "'message_id'"),
    ],
)
def test_inbox_refuses_bad_input_in_one_line(
    paperwire: Run, cli_store: Store, args: tuple[str, ...], message: str
) -> None:
    result = paperwire(*args, check_exit=2)

    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line
