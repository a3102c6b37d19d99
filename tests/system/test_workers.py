"""The scheduled job with real parts: Celery workers in subprocesses, a private Redis broker,
PostgreSQL, and an SMTP sink on 127.0.0.1. Nothing is sent twice and nothing is lost."""

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from service.models import DeliveryStatus
from service.store import Store
from tests.support.processes import due_now as due_readers
from tests.support.services import (
    CeleryWorker,
    CeleryWorkerFactory,
    RedisServer,
    celery_client,
    free_port,
)
from tests.support.smtp_sink import (
    DATA_START,
    DROP,
    DROP_MID_DATA,
    HANG,
    RESET,
    RESET_MID_DATA,
    SmtpCommand,
    SmtpSink,
    delay,
)

UNRESOLVED = {DeliveryStatus.PLANNED, DeliveryStatus.SENDING, DeliveryStatus.RETRY}
# Short enough that a dead worker's issues come back within the test; in production minutes.
FAST_RECOVERY = {
    "PAPERWIRE_CLAIM_LEASE_SECONDS": "3",
    "PAPERWIRE_REQUEUE_AFTER_SECONDS": "3",
    "PAPERWIRE_BATCH_SIZE": "50",
    "PAPERWIRE_IN_DOUBT_RESEND_AFTER_SECONDS": "1",
}


@pytest.fixture
def start_worker(
    celery_worker_factory: CeleryWorkerFactory, postgres_url: str, smtp_sink: SmtpSink
) -> Callable[..., CeleryWorker]:
    def start(concurrency: int = 2, **overrides: str) -> CeleryWorker:
        env = {
            "PAPERWIRE_DATABASE_URL": postgres_url,
            "PAPERWIRE_MAIL_URL": smtp_sink.url,
            "PAPERWIRE_SECRET_KEY": "worker-test-secret",
            "PAPERWIRE_MAIL_FROM_ADDRESS": "digest@paperwire.test",
            **FAST_RECOVERY,
            **overrides,
        }
        return celery_worker_factory(env=env, concurrency=concurrency)

    return start


def due_now(store: Store, count: int) -> date:
    """`count` subscribers whose issue is due this hour, and three papers they all want."""
    return due_readers(store, count, papers=3)


def statuses(store: Store, issue_date: date) -> Counter[DeliveryStatus]:
    return Counter(d.status for d in store.list_deliveries(issue_date=issue_date))


def sweep_until_resolved(
    store: Store, redis_url: str, issue_date: date, *, expected: int, timeout: float
) -> None:
    """Run the sweep as beat would, only more often, until every issue has an outcome."""
    deadline = time.monotonic() + timeout
    with celery_client(redis_url) as client:
        while time.monotonic() < deadline:
            counts = statuses(store, issue_date)
            if sum(counts.values()) == expected and not UNRESOLVED & set(counts):
                return
            client.send_task("paperwire.sweep_deliveries")
            time.sleep(1.0)
    pytest.fail(f"issues still unresolved after {timeout:.0f} s: {statuses(store, issue_date)}")


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def assert_one_message_each(store: Store, smtp_sink: SmtpSink, issue_date: date) -> None:
    """Every issue sent, or in doubt; a second copy only where an attempt's outcome was unknown
    (`in_doubt_count`), and never more copies than such attempts allow."""
    received = Counter(rcpt for message in smtp_sink.messages for rcpt in message.rcpt_tos)
    emails = {s.id: s.email for s in store.list_subscribers()}
    doubtful_attempts = 0
    for delivery in store.list_deliveries(issue_date=issue_date):
        email = emails[delivery.subscriber_id]
        doubtful_attempts += delivery.in_doubt_count
        if delivery.status is DeliveryStatus.IN_DOUBT:
            assert delivery.in_doubt_count >= 1, (email, delivery)
            assert received[email] <= delivery.in_doubt_count, email
        else:
            assert delivery.status is DeliveryStatus.SENT, (email, delivery)
            assert 1 <= received[email] <= 1 + delivery.in_doubt_count, email
    duplicates = sum(count - 1 for count in received.values() if count > 1)
    assert duplicates <= doubtful_attempts


def most_in_any_window(times: list[float], width: float) -> int:
    """The most of `times` that fall within any `width` seconds (both ends included)."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] > width:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_a_worker_killed_mid_run_loses_nothing_and_sends_nothing_twice(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    subscribers = 2000
    issue_date = due_now(pg_store, subscribers)
    first = start_worker()
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    wait_for(lambda: len(smtp_sink.messages) >= 300, timeout=120, what="300 messages")

    first.kill()  # SIGKILL, pool children included: no shutdown, no acks
    killed_at = len(smtp_sink.messages)
    assert killed_at < subscribers
    start_worker()
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=300)

    assert_one_message_each(pg_store, smtp_sink, issue_date)
    counts = statuses(pg_store, issue_date)
    assert counts[DeliveryStatus.SENT] + counts[DeliveryStatus.IN_DOUBT] == subscribers
    print(f"killed after {killed_at} messages; ledger {dict(counts)}")


def test_planning_fired_twice_at_once_sends_one_issue_each(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    subscribers = 300
    issue_date = due_now(pg_store, subscribers)
    start_worker(concurrency=2)
    with celery_client(redis_url) as client:
        # Two planners at the same moment (two beats), then a later tick of the one beat.
        client.send_task("paperwire.enqueue_due_digests")
        client.send_task("paperwire.enqueue_due_digests")
        wait_for(lambda: len(smtp_sink.messages) >= subscribers, timeout=120, what="every message")
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=60)

    assert len(pg_store.list_deliveries(issue_date=issue_date)) == subscribers
    assert len(smtp_sink.messages) == subscribers
    assert_one_message_each(pg_store, smtp_sink, issue_date)


def test_refusals_retry_transient_and_fail_permanent_issues_through_the_workers(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    subscribers = 200
    issue_date = due_now(pg_store, subscribers)
    # Chosen by address, so a retried RCPT meets the same relay mood: 30 % are told 451 twice,
    # 5 % always 550 (no such user), 5 % 552 once (mailbox full: transient by RFC 5321 practice).
    busy = {f"reader{n}@example.org" for n in range(0, subscribers, 10) for n in (n, n + 1, n + 2)}
    unknown = {f"reader{n}@example.org" for n in range(3, subscribers, 20)}
    full = {f"reader{n}@example.org" for n in range(13, subscribers, 20)}
    refusals: Counter[str] = Counter()

    def relay(command: SmtpCommand) -> str | None:
        if command.verb != "RCPT":
            return None
        address = command.argument.strip("<>")
        refusals[address] += 1
        if address in unknown:
            return "550 5.1.1 no such user"
        if address in busy and refusals[address] <= 2:
            return "451 4.3.0 mailbox busy, try later"
        if address in full and refusals[address] == 1:
            return "552 5.2.2 mailbox full"
        return None

    smtp_sink.fault = relay
    start_worker(concurrency=2, PAPERWIRE_RETRY_BASE_SECONDS="0.5", PAPERWIRE_RETRY_MAX_SECONDS="1")
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=180)

    emails = {s.id: s.email for s in pg_store.list_subscribers()}
    received = Counter(rcpt for message in smtp_sink.messages for rcpt in message.rcpt_tos)
    for delivery in pg_store.list_deliveries(issue_date=issue_date):
        email = emails[delivery.subscriber_id]
        if email in unknown:
            assert (delivery.status, delivery.attempts) == (DeliveryStatus.REFUSED, 1)
            assert refusals[email] == 1  # a permanent refusal is never tried again
            assert received[email] == 0
        else:
            assert delivery.status is DeliveryStatus.SENT, (email, delivery)
            assert received[email] == 1
            expected_attempts = 3 if email in busy else 2 if email in full else 1
            assert delivery.attempts == expected_attempts, email
    assert len(unknown) == 10 and len(busy) == 60
    _, hard_bounces = pg_store.subscriber_counts()
    assert hard_bounces == 10  # one per unknown mailbox, counted on the subscriber


def test_an_issue_that_kills_its_worker_every_time_fails_after_the_attempt_cap(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    subscribers = 60
    issue_date = due_now(pg_store, subscribers)
    victim = "reader7@example.org"
    # The relay never answers this one: the task hits its hard time limit and the pool kills
    # the worker process, every time the issue is tried.
    smtp_sink.fault = lambda c: HANG if c.verb == "RCPT" and victim in c.argument else None
    start_worker(
        concurrency=2,
        PAPERWIRE_TASK_TIME_LIMIT_SECONDS="3",
        PAPERWIRE_MAX_ATTEMPTS="3",
        PAPERWIRE_CLAIM_LEASE_SECONDS="4",
    )
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=180)

    emails = {s.id: s.email for s in pg_store.list_subscribers()}
    for delivery in pg_store.list_deliveries(issue_date=issue_date):
        if emails[delivery.subscriber_id] == victim:
            assert delivery.status is DeliveryStatus.FAILED
            assert delivery.attempts == 3
            assert (delivery.last_error or "").startswith("gave up after 3 attempts")
        else:
            assert delivery.status is DeliveryStatus.SENT
    assert len(smtp_sink.messages) == subscribers - 1


def test_redis_killed_and_restarted_mid_run_loses_no_issue(
    pg_store: Store,
    redis_server: RedisServer,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    subscribers = 600
    issue_date = due_now(pg_store, subscribers)
    worker = start_worker(concurrency=2)
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    wait_for(lambda: len(smtp_sink.messages) >= 100, timeout=120, what="100 messages")

    redis_server.kill()  # SIGKILL; it keeps nothing on disk, so every queued batch is gone
    time.sleep(1.0)
    redis_server.restart()
    assert worker.is_running
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=240)

    assert_one_message_each(pg_store, smtp_sink, issue_date)
    # The same worker process reconnected by itself and took the sweep's batches.
    log = worker.log_text()
    assert worker.is_running and "Connection to broker lost" in log
    assert log.count("Connected to redis://") >= 2


def test_the_cli_runs_a_day_through_the_workers_and_follows_it(
    pg_store: Store,
    postgres_url: str,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
    tmp_path: Path,
) -> None:
    subscribers = 120
    issue_date = due_now(pg_store, subscribers)
    start_worker()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")},
        "PAPERWIRE_DATABASE_URL": postgres_url,
        "PAPERWIRE_REDIS_URL": redis_url,
        "PAPERWIRE_MAIL_URL": smtp_sink.url,
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "paperwire"),
            "digest",
            "run",
            "--via-celery",
            "--date",
            issue_date.isoformat(),
            "--timeout",
            "120",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr
    assert f"{subscribers} issues of {issue_date} enqueued" in result.stdout
    assert statuses(pg_store, issue_date) == {DeliveryStatus.SENT: subscribers}
    assert len(smtp_sink.messages) == subscribers


@pytest.mark.parametrize(
    "cut_short_by",
    [
        pytest.param(RESET_MID_DATA, id="reset-mid-data"),
        pytest.param(RESET, id="reset-after-354"),
        pytest.param(DROP_MID_DATA, id="drop-mid-data"),
        pytest.param(DROP, id="drop-after-354"),
    ],
)
def test_data_faults_lose_no_digest_and_resend_the_doubtful_once_later(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
    cut_short_by: str,
) -> None:
    subscribers = 200
    issue_date = due_now(pg_store, subscribers)
    # Chosen by address, each on its first try only. 10 % are cut short while the message is
    # still coming in: a reset tells the sender the relay took nothing (resent at once), an
    # orderly close looks to it like a loss after the final dot. 4 get the whole message and
    # then an orderly close without a reply (the relay may have it). Whatever the sender could
    # not tell is resent once, later, with the same Message-ID: nobody goes without the day's
    # digest. Twenty cut short, so a fault that misleads the sender only now and then shows.
    cut_short = {f"reader{n}@example.org" for n in range(4, subscribers, 10)}
    unanswered = {f"reader{n}@example.org" for n in range(7, subscribers, 50)}
    recipient_in: dict[int, str] = {}
    tries: Counter[str] = Counter()
    cut_in_session: dict[str, int] = {}

    def relay(command: SmtpCommand) -> str | None:
        if command.verb == "RCPT":
            # A digest has one recipient: the session's open transaction is this address's.
            recipient_in[command.session_id] = command.argument.strip("<>")
            return None
        if command.verb not in (DATA_START, "DATA"):
            return None
        address = recipient_in[command.session_id]
        if command.verb == DATA_START:
            tries[address] += 1
            if address in cut_short and tries[address] == 1:
                cut_in_session[address] = command.session_id
                return cut_short_by
        elif address in unanswered and tries[address] == 1:
            return DROP  # DATA is answered after the final dot: the message arrived whole
        return None

    smtp_sink.fault = relay
    start_worker(
        concurrency=2,
        PAPERWIRE_RETRY_BASE_SECONDS="0.5",
        PAPERWIRE_RETRY_MAX_SECONDS="1",
        PAPERWIRE_IN_DOUBT_RESEND_AFTER_SECONDS="1",
    )
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=120)

    assert len(cut_short) == 20 and len(unanswered) == 4 and not cut_short & unanswered
    assert set(cut_in_session) == cut_short  # every fault was dealt
    print(f"ledger {dict(statuses(pg_store, issue_date))}")
    assert_one_message_each(pg_store, smtp_sink, issue_date)  # duplicates <= in doubt
    received = {message.rcpt_tos[0]: message for message in smtp_sink.messages}
    interrupted = {message.rcpt_tos[0]: message for message in smtp_sink.interrupted}
    emails = {s.id: s.email for s in pg_store.list_subscribers()}
    # A close with part of the message unread is seen as a reset, or as an orderly end when
    # the sink had already buffered what had arrived: either way one copy arrives.
    closed = cut_short if cut_short_by in (DROP, DROP_MID_DATA) else set()
    resent_later = 0
    for delivery in pg_store.list_deliveries(issue_date=issue_date):
        email = emails[delivery.subscriber_id]
        outcome = (delivery.status, delivery.attempts, delivery.in_doubt_count)
        if email in closed and outcome != (DeliveryStatus.SENT, 1, 0):
            resent_later += 1
        if email in unanswered or (email in closed and outcome[2]):
            # Resent once, on a later attempt, with the Message-ID of the first.
            assert outcome == (DeliveryStatus.SENT, 2, 1), (email, delivery.last_error)
            assert tries[email] == 2
            assert received[email].message["Message-ID"] == delivery.message_id
            assert (delivery.message_id or "").startswith(
                f"<digest-{issue_date}-{delivery.subscriber_id}-"
            )
        elif email in cut_short:
            # Sent again at once, on a new connection, within the same attempt.
            assert outcome == (DeliveryStatus.SENT, 1, 0), (email, delivery.last_error)
            assert tries[email] == 2
            message = received[email]
            assert message.session_id != cut_in_session[email]  # on a new connection
            assert message.message["Message-ID"] == delivery.message_id
            if cut_short_by == RESET_MID_DATA:
                # The same message as the one cut short, not a new one.
                assert interrupted[email].message["Message-ID"] == delivery.message_id
        else:
            assert outcome == (DeliveryStatus.SENT, 1, 0), (email, delivery.last_error)
    # One accepted copy each: the doubtful first copies never reached the sink's store.
    assert len(smtp_sink.messages) == subscribers
    print(f"{cut_short_by}: {resent_later} of {len(closed)} cut short were resent later")


def test_a_relay_capping_messages_per_connection_under_a_shared_rate_limit_gets_each_once(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    subscribers, rate, burst = 60, 10.0, 5
    issue_date = due_now(pg_store, subscribers)
    mails: Counter[int] = Counter()

    def five_per_connection(command: SmtpCommand) -> str | None:
        if command.verb != "MAIL":
            return None
        mails[command.session_id] += 1
        # The sink closes the connection after a 421, as a relay at its limit does.
        return (
            "421 4.7.0 too many messages on this connection"
            if mails[command.session_id] > 5
            else None
        )

    smtp_sink.fault = five_per_connection
    limits = {
        "PAPERWIRE_MAIL_RATE_PER_SECOND": str(rate),
        "PAPERWIRE_MAIL_RATE_BURST": str(burst),
        # Four batches, so both workers send at once.
        "PAPERWIRE_BATCH_SIZE": "15",
    }
    # Two workers, as on two machines: only the bucket in their shared Redis keeps the pace.
    workers = [start_worker(concurrency=1, **limits) for _ in range(2)]
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=60)

    deliveries = pg_store.list_deliveries(issue_date=issue_date)
    assert {(d.status, d.attempts) for d in deliveries} == {(DeliveryStatus.SENT, 1)}
    assert len(smtp_sink.messages) == subscribers
    assert_one_message_each(pg_store, smtp_sink, issue_date)
    for worker in workers:  # both sent, not one alone
        log = worker.log_text().splitlines()
        assert any("send_digest_batch[" in line and "] succeeded" in line for line in log)
    # Each 421 came after five messages and the sender went on on a new connection within the
    # same attempt; no command ever met a session in the wrong state (503) or a refusal.
    per_session = Counter(message.session_id for message in smtp_sink.messages)
    refused = [reply for reply in smtp_sink.replies if reply.reply.startswith("421")]
    assert refused and all(per_session[reply.session_id] == 5 for reply in refused)
    assert max(per_session.values()) <= 5
    assert [r for r in smtp_sink.replies if r.reply[:1] == "5"] == []
    # The bucket lets through at most rate * W + burst messages in any W seconds. Each message
    # is timed at the sink, a little after its token was taken; for a W where that bound is a
    # whole number, a lag under 1 / rate cannot push a count over it.
    times = sorted(message.received_at for message in smtp_sink.messages)
    for width in (0.5, 1.0, 2.0, 4.0):
        most = most_in_any_window(times, width)
        assert most <= rate * width + burst, (width, most)
    # All but the burst waited for tokens: the run cannot be shorter, give or take one token.
    assert times[-1] - times[0] >= (subscribers - burst - 1) / rate
    print(
        f"{len(refused)} refusals over {len(per_session)} sessions; "
        f"{subscribers} messages in {times[-1] - times[0]:.2f} s; "
        f"most in 1 s: {most_in_any_window(times, 1.0)}"
    )


def run_cli(
    *args: str, database_url: str, mail_url: str, tmp_path: Path, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")},
        "PAPERWIRE_DATABASE_URL": database_url,
        "PAPERWIRE_MAIL_URL": mail_url,
        "COLUMNS": "200",
        **extra_env,
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "paperwire"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_an_issue_that_may_have_arrived_ends_in_doubt_and_a_retry_leaves_it_alone(
    pg_store: Store,
    postgres_url: str,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
    tmp_path: Path,
) -> None:
    """The whole message reaches the relay, which closes without a reply; the resend and every
    try after it are refused for now (451) until the attempt cap. A copy may be in the
    mailbox, so the issue must not end plain `failed`, which a retry would send again."""
    subscribers = 40
    issue_date = due_now(pg_store, subscribers)
    doubtful = {f"reader{n}@example.org" for n in range(0, subscribers, 10)}
    recipient_in: dict[int, str] = {}
    tried: Counter[str] = Counter()

    def relay(command: SmtpCommand) -> str | None:
        if command.verb == "RCPT":
            address = command.argument.strip("<>")
            recipient_in[command.session_id] = address
            tried[address] += 1
            if address in doubtful and tried[address] > 1:
                return "451 4.3.0 try again later"
        elif command.verb == "DATA" and recipient_in[command.session_id] in doubtful:
            return DROP  # after the final dot: the relay may have it
        return None

    smtp_sink.fault = relay
    start_worker(
        concurrency=2,
        PAPERWIRE_MAX_ATTEMPTS="3",
        PAPERWIRE_RETRY_BASE_SECONDS="0.5",
        PAPERWIRE_RETRY_MAX_SECONDS="1",
        PAPERWIRE_IN_DOUBT_RESEND_AFTER_SECONDS="0.5",
    )
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=120)

    emails = {s.id: s.email for s in pg_store.list_subscribers()}
    for delivery in pg_store.list_deliveries(issue_date=issue_date):
        email = emails[delivery.subscriber_id]
        if email in doubtful:
            outcome = (delivery.status, delivery.attempts, delivery.in_doubt_count)
            assert outcome == (DeliveryStatus.IN_DOUBT, 3, 1), (email, delivery.last_error)
            assert (delivery.last_error or "").startswith("gave up after 3 attempts")
        else:
            assert delivery.status is DeliveryStatus.SENT
    retried = run_cli(
        "deliveries", "retry", "--date", issue_date.isoformat(), "--now",
        database_url=postgres_url, mail_url=smtp_sink.url, tmp_path=tmp_path,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    assert f"0 issues of {issue_date} reopened" in retried.stdout
    assert "4 in_doubt issues left alone" in retried.stdout
    assert statuses(pg_store, issue_date)[DeliveryStatus.IN_DOUBT] == len(doubtful)
    assert max(tried[address] for address in doubtful) == 3  # nothing more was tried


def test_a_retry_never_sends_again_what_was_refused_for_good_or_to_the_suppressed(
    pg_store: Store,
    postgres_url: str,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
    tmp_path: Path,
) -> None:
    subscribers = 40
    issue_date = due_now(pg_store, subscribers)
    unknown = {f"reader{n}@example.org" for n in range(0, subscribers, 10)}  # 550: no such user
    busy = {f"reader{n}@example.org" for n in range(1, subscribers, 10)}  # 451 until given up
    refusals: Counter[str] = Counter()

    def relay(command: SmtpCommand) -> str | None:
        if command.verb != "RCPT":
            return None
        address = command.argument.strip("<>")
        refusals[address] += 1
        if address in unknown:
            return "550 5.1.1 no such user"
        if address in busy:
            return "451 4.3.0 try again later"
        return None

    smtp_sink.fault = relay
    start_worker(
        concurrency=2,
        PAPERWIRE_MAX_ATTEMPTS="2",
        PAPERWIRE_RETRY_BASE_SECONDS="0.5",
        PAPERWIRE_RETRY_MAX_SECONDS="1",
        PAPERWIRE_BOUNCE_SCORE_LIMIT="1",
    )
    with celery_client(redis_url) as client:
        client.send_task("paperwire.enqueue_due_digests")
    sweep_until_resolved(pg_store, redis_url, issue_date, expected=subscribers, timeout=120)
    counts = statuses(pg_store, issue_date)
    assert (counts[DeliveryStatus.REFUSED], counts[DeliveryStatus.FAILED]) == (4, 4)
    _, bounces_before = pg_store.subscriber_counts()
    # One of the busy ones has since been suppressed (say, a complaint): never mailed again.
    suppressed = "reader11@example.org"
    with pg_store.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE subscribers SET status = 'suppressed' WHERE email = %(email)s",
            {"email": suppressed},
        )
    tried_before = Counter(refusals)
    smtp_sink.fault = None  # the relay is fixed

    retried = run_cli(
        "deliveries", "retry", "--date", issue_date.isoformat(), "--now",
        database_url=postgres_url, mail_url=smtp_sink.url, tmp_path=tmp_path,
    )  # fmt: skip

    assert f"3 issues of {issue_date} reopened" in retried.stdout, retried.stdout
    assert "4 refused issues left alone" in retried.stdout
    sent_now = Counter(rcpt for m in smtp_sink.messages for rcpt in m.rcpt_tos)
    assert {address for address in busy if sent_now[address]} == busy - {suppressed}
    assert not any(refusals[address] > tried_before[address] for address in unknown)
    assert sent_now[suppressed] == 0
    _, bounces_after = pg_store.subscriber_counts()
    assert bounces_after == bounces_before == 4


def test_nothing_goes_out_after_an_issues_give_up_time(
    pg_store: Store,
    redis_url: str,
    smtp_sink: SmtpSink,
    start_worker: Callable[..., CeleryWorker],
) -> None:
    """One batch claimed before the deadline, on a slow relay that passes it halfway: the
    deadline is kept for each message, not only when the batch starts."""
    subscribers = 30
    issue_date = due_now(pg_store, subscribers)
    smtp_sink.fault = lambda command: delay(0.2) if command.verb == "RCPT" else None
    start_worker(concurrency=1, PAPERWIRE_BATCH_SIZE="100")
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    wall_minus_monotonic = time.time() - time.monotonic()
    schedule = pg_store.schedules()[0]
    planned = pg_store.plan_issues(schedule, issue_date, now=datetime.now(UTC), expires_at=deadline)
    with celery_client(redis_url) as client:
        client.send_task(
            "paperwire.send_digest_batch",
            args=[[[subscriber_id, issue_date.isoformat()] for subscriber_id in planned]],
        )
    wait_for(
        lambda: not UNRESOLVED & set(statuses(pg_store, issue_date)),
        timeout=60,
        what="every issue to end",
    )

    counts = statuses(pg_store, issue_date)
    assert counts[DeliveryStatus.SENT] + counts[DeliveryStatus.EXPIRED] == subscribers
    assert counts[DeliveryStatus.SENT] == len(smtp_sink.messages)
    assert 0 < counts[DeliveryStatus.EXPIRED] < subscribers
    arrived = [wall_minus_monotonic + m.received_at for m in smtp_sink.messages]
    # The check is made just before DATA: a message written then arrives within moments.
    late = [at - deadline.timestamp() for at in arrived if at > deadline.timestamp() + 0.5]
    assert late == [], late
    print(f"ledger {dict(counts)}; last arrival {max(arrived) - deadline.timestamp():+.2f} s")


def test_a_day_via_celery_with_the_broker_down_says_so_in_one_line_and_plans_nothing(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    broker_down = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            *args,
            database_url=database,
            mail_url="smtp://127.0.0.1:9",
            tmp_path=tmp_path,
            PAPERWIRE_REDIS_URL=broker_down,
        )

    assert cli("db", "upgrade").returncode == 0
    for number in range(5):
        assert cli("subscribers", "add", f"reader{number}@example.org").returncode == 0

    result = cli("digest", "run", "--via-celery", "--date", "2026-11-25")

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "cannot reach the broker" in line and "nothing was planned" in line
    assert "without --via-celery" in line
    assert "hunter2" not in line  # the password stays out of the message
    store = Store(database)
    try:
        assert store.list_deliveries() == []
    finally:
        store.close()
