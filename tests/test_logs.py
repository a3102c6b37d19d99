"""Log lines in one process: what is redacted, the JSON and text forms, the request, task and
subscriber of a line, and a relay outage said once. The same through real processes (serve,
a worker, `digest run`) is in tests/system/test_json_logs.py."""

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from service.delivery.pipeline import RunSummary, run_day
from service.mail.smtp import RELAY_OUTAGE
from service.models import DeliveryStatus
from service.observability.logs import (
    FIELDS,
    LogRole,
    RelayOutage,
    bind_log_context,
    configure_logging,
    log_context,
    note_subscriber,
    redact,
    unbind_log_context,
)
from service.settings import Settings
from service.store import Store
from tests.support.factories import (
    BACKGROUND_PAPERS,
    NOW,
    TODAY,
    add_subscriber,
    make_paper,
    make_settings,
)
from tests.support.services import free_port
from tests.support.smtp_sink import SmtpSink

TOKEN = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"
log = logging.getLogger("tests.logs")


class Captured:
    """What the process's log handler wrote, as text and as parsed JSON lines."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def capture() -> Iterator[Any]:
    """`capture(settings, role)` sends this process's log lines into a buffer, as the
    settings say; the handler and the root level are put back afterwards."""
    root = logging.getLogger()
    level = root.level
    handlers: list[logging.Handler] = []

    def configure(settings: Settings, role: LogRole = LogRole.SERVICE) -> Captured:
        stream = io.StringIO()
        handlers.append(configure_logging(settings, role=role, stream=stream))
        return Captured(stream)

    yield configure
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _no_outage_left_over() -> Iterator[None]:
    RELAY_OUTAGE.failures = 0
    yield
    RELAY_OUTAGE.failures = 0


# -- Redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SMTP 550 no such user (at RCPT TO, to ada@example.org)", "to [address])"),
        ("<Ada.Lovelace+news@sub.example.co.uk>", "<[address]>"),
        ("bounces+2026-11-25-42-abcdefghijklmnop@bounces.example.org", "[address]"),
        ("/?email=ada%40example.org&x=1", "/?email=[address]&x=1"),
        ("émile@exemple.fr wrote", "[address] wrote"),
        ("smtp://ada%40example.org:hunter2@relay.example.org:587", "smtp://[credentials]@relay"),
        (f"GET https://papers.example.org/u/{TOKEN} 200", "/u/{token} 200"),
        (f"/m/{TOKEN}/renew", "/m/{token}/renew"),
        (f"/api/preferences/{TOKEN}/profiles", "/api/preferences/{token}/profiles"),
        (f"/archive/{TOKEN} and /feed/{TOKEN}", "/archive/{token} and /feed/{token}"),
        (f"/c/{TOKEN} /a/{TOKEN} /f/{TOKEN}?vote=like", "/c/{token} /a/{token} /f/{token}?vote"),
    ],
)
def test_addresses_credentials_and_link_tokens_are_taken_out(text: str, expected: str) -> None:
    redacted = redact(text)
    assert expected in redacted
    assert "example.org:hunter2" not in redacted and "ada" not in redacted.lower()
    assert TOKEN not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "celery@worker-3f2a ready.",
        "Task paperwire.send_digest_batch[0c6f6f8e-9f4b-4b55-a0a2-1b1e5f0d8f0e] received",
        "/tmp/pytest-of-root/pytest-3/test_import0/papers.jsonl:2: rejected: not JSON",
        "GET /u/{token} 200 3.1 ms",
        "fetched from hf: 12 new, 3 updated, 0 rejected",
        "redis://redis:6379/0",
    ],
)
def test_what_is_not_personal_is_kept(text: str) -> None:
    assert redact(text) == text


# -- The lines ----------------------------------------------------------------------------------


def test_a_json_line_has_its_fields_its_context_and_no_personal_data(capture: Any) -> None:
    captured = capture(make_settings(log_format="json"))
    with log_context(request_id="req-1", subscriber_id=42):
        log.warning(
            "refused %s at %s",
            "ada@example.org",
            f"https://paperwire.test/u/{TOKEN}",
            extra={FIELDS: {"status": 550, "to": "ada@example.org"}},
        )
    try:
        raise RuntimeError("cannot send to grace@example.org")
    except RuntimeError:
        log.exception("failed")
    first, second = captured.lines()
    assert first["timestamp"].endswith("Z") and first["timestamp"][:4].isdigit()
    assert first == {
        "timestamp": first["timestamp"],
        "level": "WARNING",
        "logger": "tests.logs",
        "message": "refused [address] at https://paperwire.test/u/{token}",
        "request_id": "req-1",
        "subscriber_id": 42,
        "status": 550,
        "to": "[address]",
    }
    assert second["message"] == "failed" and "request_id" not in second
    assert "RuntimeError: cannot send to [address]" in second["exception"]
    assert "@example.org" not in captured.text and TOKEN not in captured.text


def test_personal_data_is_kept_only_when_a_setting_says_so(capture: Any) -> None:
    captured = capture(make_settings(log_format="json", log_personal_data=True))
    log.warning("refused ada@example.org at /u/%s", TOKEN)
    (line,) = captured.lines()
    assert line["message"] == f"refused ada@example.org at /u/{TOKEN}"


def test_text_lines_of_a_service_and_of_a_command(capture: Any) -> None:
    service = capture(make_settings(), LogRole.SERVICE)
    token = bind_log_context(task_id="task-7")
    log.info("batch of 2 issues for ada@example.org")
    unbind_log_context(token)
    (line,) = service.text.splitlines()
    assert line.endswith(" INFO tests.logs: batch of 2 issues for [address] [task_id=task-7]")
    command = capture(make_settings(), LogRole.COMMAND)
    log.info("not shown: a command in text shows its warnings and errors only")
    log.warning("rejected line 2")
    assert command.text == "warning: rejected line 2\n"


def test_configured_again_it_keeps_one_handler_of_its_own(capture: Any) -> None:
    capture(make_settings(), LogRole.COMMAND)
    last = capture(make_settings(log_format="json"), LogRole.COMMAND)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "paperwire"]
    assert len(ours) == 1
    log.info("a command with JSON logs writes its INFO lines")
    assert [line["message"] for line in last.lines()] == [
        "a command with JSON logs writes its INFO lines"
    ]


def test_a_subscriber_noted_inside_a_request_is_on_the_requests_line(capture: Any) -> None:
    captured = capture(make_settings(log_format="json"))
    note_subscriber(7)  # outside any request: nowhere to note it
    with log_context(request_id="r"):
        note_subscriber(42)
        log.info("answered")
    log.info("after")
    answered, after = captured.lines()
    assert answered["subscriber_id"] == 42 and answered["request_id"] == "r"
    assert "subscriber_id" not in after and "request_id" not in after


# -- A relay outage -----------------------------------------------------------------------------


def test_an_outage_is_said_once_and_its_end_says_how_long(capture: Any) -> None:
    captured = capture(make_settings(log_format="json"))
    clock = iter([100.0, 142.0, 200.0])
    outage = RelayOutage(log, clock=lambda: next(clock))
    outage.answered()  # no outage: nothing to say
    for _ in range(3):
        outage.failed("cannot open SMTP session with relay:25: refused")
    outage.answered()
    outage.answered()
    outage.failed("again")
    assert [(line["level"], line["message"]) for line in captured.lines()] == [
        (
            "WARNING",
            "cannot reach the mail relay: cannot open SMTP session with relay:25: refused "
            "(not said again until it answers)",
        ),
        ("INFO", "mail relay back after 3 failed sends, 42 s"),
        ("WARNING", "cannot reach the mail relay: again (not said again until it answers)"),
    ]


def test_a_day_against_a_relay_that_is_down_then_back_logs_the_outage_once(
    capture: Any, store: Store, smtp_sink: SmtpSink
) -> None:
    """Through the delivery path: three issues find no relay (one line, not three), their
    retry reaches it (one line), and each batch says what it did."""
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers([make_paper()], now=NOW - timedelta(hours=3))
    ids = [add_subscriber(store, f"reader{n}@example.org").id for n in range(3)]
    down = make_settings(mail_url=f"smtp://127.0.0.1:{free_port()}", log_format="json")
    captured = capture(down)
    assert _run(store, down).outcomes[DeliveryStatus.RETRY] == 3
    # Past every retry's time (at most the first delay, 60 s).
    back = down.model_copy(update={"mail_url": smtp_sink.url})
    assert _run(store, back, later=timedelta(minutes=5)).outcomes[DeliveryStatus.SENT] == 3
    lines = captured.lines()
    relay = [line for line in lines if line["logger"] == "service.mail.smtp"]
    assert [line["message"].split(":")[0].split(",")[0] for line in relay] == [
        "cannot reach the mail relay",
        "mail relay back after 3 failed sends",
    ]
    assert relay[0]["subscriber_id"] == ids[0] and relay[0]["level"] == "WARNING"
    # Not one line per issue that found no relay.
    assert not [line for line in lines if line["message"].startswith("issue of")]
    batches = [line for line in lines if line["message"].startswith("batch of")]
    assert [(b["issues"], b["retry"], b["sent"]) for b in batches] == [(3, 3, 0), (3, 0, 3)]
    assert all(isinstance(b["duration_ms"], int) for b in batches)
    assert "@example.org" not in captured.text


def test_an_issue_refused_by_the_relay_has_its_own_line_without_the_address(
    capture: Any, store: Store, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))
    store.upsert_papers([make_paper()], now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    smtp_sink.fail_next("RCPT", "550 5.1.1 <ada@example.org>: no such user")
    settings = make_settings(mail_url=smtp_sink.url, log_format="json")
    captured = capture(settings)
    assert _run(store, settings).outcomes[DeliveryStatus.REFUSED] == 1
    (refused,) = [line for line in captured.lines() if line["message"].startswith("issue of")]
    assert refused["subscriber_id"] == ada.id and refused["outcome"] == "refused"
    assert refused["message"].startswith(f"issue of {TODAY}: refused: SMTP recipient refused")
    assert "[address]" in refused["message"] and "ada@" not in captured.text


def _run(store: Store, settings: Settings, *, later: timedelta = timedelta(0)) -> RunSummary:
    at = NOW + later
    return asyncio.run(run_day(store, issue_date=TODAY, settings=settings, now=lambda: at))
