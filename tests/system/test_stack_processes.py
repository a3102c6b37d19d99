"""The long-running commands of the compose stack, run as it runs them: a `paperwire worker`
that gets SIGTERM mid-batch finishes the batch (Celery's warm shutdown, reached because the
command execs Celery), and `paperwire beat` keeps its heartbeat file fresh only while it can
hand tasks to the broker."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

from service.models import DeliveryStatus
from service.store import Store
from tests.support.cli_runner import PAPERWIRE
from tests.support.processes import CELERY_SHUTDOWN_LINE, due_now, json_lines, paperwire_worker
from tests.support.services import RedisServer, celery_client, wait_until
from tests.support.smtp_sink import SmtpCommand, SmtpSink, delay

# Each message waits this long at MAIL, so that a batch of a few runs for seconds.
SLOW_RELAY_SECONDS = 0.5


def test_a_worker_told_to_stop_mid_batch_finishes_the_batch_first(
    redis_url: str, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'worker.db'}"
    store = Store(database)
    store.upgrade()
    issue_date = due_now(store, 4)

    def slow(command: SmtpCommand) -> str | None:
        return delay(SLOW_RELAY_SECONDS) if command.verb == "MAIL" else None

    smtp_sink.fault = slow
    worker = paperwire_worker(
        redis_url,
        tmp_path / "worker",
        {
            "PAPERWIRE_ENV_FILE": "",
            "PAPERWIRE_DATABASE_URL": database,
            "PAPERWIRE_MAIL_URL": smtp_sink.url,
        },
    )
    try:
        worker.start()
        worker.wait_ready()
        assert worker.pid is not None
        # `paperwire worker` became Celery: the process Docker signals is Celery's own.
        command_line = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
        assert b"celery" in command_line and b"worker" in command_line, command_line
        with celery_client(redis_url) as client:
            client.send_task("paperwire.run_digest_day", args=[issue_date.isoformat()])
        wait_until(lambda: len(smtp_sink.messages) >= 1, timeout=30, what="the first message")
        stopped_at = time.monotonic()
        worker.stop(timeout=60)  # SIGTERM to the main process, then SIGKILL for what is left
        stopping = time.monotonic() - stopped_at
        deliveries = store.list_deliveries(issue_date=issue_date)
    finally:
        worker.kill()
        store.close()
    text = worker.log_text()

    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 4
    assert len(smtp_sink.messages) == 4
    # It waited for the batch, and no longer than that.
    assert 3 * SLOW_RELAY_SECONDS * 0.8 < stopping < 30, stopping
    assert CELERY_SHUTDOWN_LINE in text
    assert "paperwire.run_digest_day[" in text and "succeeded in" in text


@contextmanager
def beat(tmp_path: Path, env: dict[str, str]) -> Iterator[Path]:
    """`paperwire beat` in a session of its own, its output in beat.log; SIGTERM, then
    SIGKILL to its group, on the way out."""
    log_path = tmp_path / "beat.log"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PAPERWIRE, "beat", "--loglevel=INFO", f"--schedule={tmp_path / 'schedule'}"],
            cwd=tmp_path,
            env={**inherited, "PYTHONUNBUFFERED": "1", **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_beat_touches_its_heartbeat_only_while_it_hands_tasks_to_the_broker(
    tmp_path: Path,
) -> None:
    heartbeat = tmp_path / "var" / "beat-heartbeat"
    with RedisServer(tmp_path / "redis") as broker:
        env = {
            "PAPERWIRE_ENV_FILE": "",
            "PAPERWIRE_REDIS_URL": broker.url(),
            "PAPERWIRE_BEAT_HEARTBEAT_FILE": str(heartbeat),
            "PAPERWIRE_BEAT_HEARTBEAT_SECONDS": "1",
            "PAPERWIRE_LOG_FORMAT": "json",
        }
        with beat(tmp_path, env) as log_path:
            wait_until(heartbeat.exists, timeout=30, what="the heartbeat", log=log_path.read_text)
            first = heartbeat.stat().st_mtime
            wait_until(
                lambda: heartbeat.stat().st_mtime > first,
                timeout=10,
                what="a second heartbeat",
                log=log_path.read_text,
            )
            client: redis.Redis = broker.client()
            try:
                # What beat handed over waits in the queue: no worker runs here.
                assert client.llen("celery") >= 2
            finally:
                client.close()

            broker.kill()
            time.sleep(1.5)  # a publish under way when Redis died may still end
            stalled = heartbeat.stat().st_mtime
            time.sleep(4)
            assert heartbeat.stat().st_mtime == stalled  # no broker: no heartbeat

            broker.restart()
            wait_until(
                lambda: heartbeat.stat().st_mtime > stalled,
                timeout=60,
                what="the heartbeat once Redis is back",
                log=log_path.read_text,
            )
        text = log_path.read_text()

    lines = json_lines(text)  # beat's lines are JSON too, with no banner
    assert any(line["logger"].startswith("celery.beat") for line in lines)
