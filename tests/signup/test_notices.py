"""One-off emails (confirmation, "already subscribed", fresh manage link) are stored before
they are sent: a web process killed mid-send, or a relay that is down, loses none of them.
Against `paperwire serve` in a subprocess, a private Redis and the SMTP sink."""

import asyncio
import os
import re
from datetime import timedelta
from pathlib import Path

import httpx

from service.settings import Settings
from service.signup.limits import MemoryWindowLimiter
from service.signup.notices import send_notices
from service.signup.subscriptions import RequestOrigin, request_signup
from service.store import Store
from tests.support.factories import NOW, make_preferences
from tests.support.services import free_port, paperwire_serve, wait_until
from tests.support.smtp_sink import HANG, SmtpSink

ORIGIN = RequestOrigin(ip=None, user_agent=None, via="test")


def _confirmations_to(sink: SmtpSink, address: str) -> list[str]:
    """The confirm links of the messages the sink accepted for `address`."""
    links = []
    for received in sink.messages:
        if received.rcpt_tos == (address,):
            body = received.message.get_body(preferencelist=("plain",))
            assert body is not None
            links.extend(re.findall(r"http://\S+/c/\S+", body.get_content()))
    return links


def test_a_confirmation_survives_a_web_process_killed_while_sending_it(
    tmp_path: Path, smtp_sink: SmtpSink, redis_url: str
) -> None:
    database = f"sqlite:///{tmp_path / 'web.db'}"
    store = Store(database)
    store.upgrade()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")},
        "PAPERWIRE_DATABASE_URL": database,
        "PAPERWIRE_MAIL_URL": smtp_sink.url,
        "PAPERWIRE_REDIS_URL": redis_url,
        "PAPERWIRE_SECRET_KEY": "notice-test-secret",
        "PAPERWIRE_SIGNUP_ANSWER_SECONDS": "0",
        "PAPERWIRE_MAIL_TIMEOUT_SECONDS": "2",
        "PAPERWIRE_NOTICE_SWEEP_SECONDS": "0.5",
    }
    port = free_port()
    env["PAPERWIRE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    stalled = [True]
    # The relay takes the connection and then never answers RCPT: the web process is in the
    # middle of the SMTP conversation when it is killed.
    smtp_sink.fault = lambda command: HANG if command.verb == "RCPT" and stalled[0] else None
    with paperwire_serve(env, cwd=tmp_path, port=port) as web:
        signup = httpx.post(f"{web.url}/api/signup", json={"email": "ada@example.org"}, timeout=10)
        assert signup.status_code == 202
        wait_until(
            lambda: any(c.verb == "RCPT" for c in smtp_sink.commands),
            timeout=10,
            what="the web process to reach RCPT",
        )
        web.kill()
        stalled[0] = False
        web.start()
        # Its notice was held by the dead process; once that hold runs out, it is sent.
        wait_until(
            lambda: len(_confirmations_to(smtp_sink, "ada@example.org")) == 1,
            timeout=40,
            what="the confirmation email after the restart",
        )
        with httpx.Client(base_url=web.url, timeout=10) as client:
            # Within the mailbox's limit, signing up again sends nothing more: one went out.
            # On one connection, each request's email goes out before the next request is
            # read: once the sentinel's has arrived, a second one to ada would have too.
            assert client.post("/api/signup", json={"email": "ada@example.org"}).status_code == 202
            client.post("/api/signup", json={"email": "sentinel@example.org"})
            wait_until(
                lambda: bool(_confirmations_to(smtp_sink, "sentinel@example.org")),
                timeout=10,
                what="the sentinel's confirmation",
            )
            (link,) = _confirmations_to(smtp_sink, "ada@example.org")
            page = client.get(link.removeprefix(web.url))
            assert page.status_code == 200 and "Confirm subscription" in page.text
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM notices").scalar() == 0
    store.close()


def test_a_notice_the_relay_refuses_for_now_is_sent_once_it_takes_mail(
    sqlite_store: Store, smtp_sink: SmtpSink
) -> None:
    settings = Settings.model_validate(
        {
            "database_url": str(sqlite_store.url),
            "mail_url": smtp_sink.url,
            "secret_key": "notice-test-secret",
            "public_base_url": "https://paperwire.test",
        }
    )
    mail = request_signup(
        sqlite_store,
        MemoryWindowLimiter(),
        "ada@example.org",
        make_preferences(),
        origin=ORIGIN,
        settings=settings,
        now=NOW,
    )
    assert mail is not None
    smtp_sink.fail_next("RCPT", "451 4.3.0 try again later")
    clock = [NOW]

    def send() -> int:
        return asyncio.run(send_notices(sqlite_store, settings=settings, now=lambda: clock[0]))

    assert send() == 0  # refused for now: kept, due again in 30 s
    assert send() == 0  # not yet due
    clock[0] = NOW + timedelta(seconds=31)
    assert send() == 1
    assert send() == 0  # sent once, and gone from the store
    (received,) = smtp_sink.messages
    assert received.message["Message-ID"] == mail.message_id
