"""The test services themselves: a real redis-server and Celery workers, killed and restarted."""

from pathlib import Path

import pytest

from tests.support.services import (
    REDIS_BINARY_VARIABLE,
    CeleryWorker,
    CeleryWorkerFactory,
    RedisServer,
    ServiceError,
    celery_client,
    find_redis_server,
    pid_alive,
)


def test_redis_comes_back_empty_on_the_same_port_after_sigkill(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A server of its own, so killing it disturbs no other test.
    with RedisServer(tmp_path, binary=redis_server.binary) as server:
        client = server.client()
        try:
            client.set("paper", "2511.00001")
            port, pid = server.port, server.pid
            assert pid is not None

            server.kill()

            assert not pid_alive(pid)
            assert not server.ping()
            server.restart()
            assert server.port == port
            assert server.pid != pid
            # The same client reconnects, and finds nothing: the server keeps nothing on disk.
            assert client.get("paper") is None
            assert client.ping()
        finally:
            client.close()


def test_each_test_gets_an_empty_session_redis(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == redis_server.url()
    client = redis_server.client()
    try:
        assert client.dbsize() == 0
        client.set("left-behind", "1")
    finally:
        client.close()


def test_a_redis_that_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, binary=tmp_path / "no-redis-server")

    with pytest.raises(ServiceError, match=r"cannot run .*no-redis-server"):
        server.start()


def test_the_redis_binary_can_be_named_explicitly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(REDIS_BINARY_VARIABLE, str(tmp_path / "redis-server"))

    assert find_redis_server() == tmp_path / "redis-server"


def test_a_worker_answers_ping_and_runs_a_builtin_task(
    celery_worker_factory: CeleryWorkerFactory, redis_url: str
) -> None:
    worker = celery_worker_factory()

    with celery_client(redis_url) as client:
        registered = client.control.inspect(destination=[worker.hostname], timeout=2).registered()
        # celery.accumulate is built in and returns its arguments: a round trip with no app task.
        sent = client.send_task("celery.accumulate", args=[1, 2])

    assert "paperwire.run_digest_day" in registered[worker.hostname]
    worker.wait_for_log(f"Task celery.accumulate[{sent.id}] succeeded")
    assert "(1, 2)" in worker.log_text()


def test_a_killed_worker_leaves_no_process_and_another_can_start(
    celery_worker_factory: CeleryWorkerFactory,
) -> None:
    first = celery_worker_factory(concurrency=2)
    processes = first.pids()
    assert len(processes) == 3  # the main process and two pool children
    assert sorted(first.child_pids()) == sorted(set(processes) - {first.pid})

    first.kill()

    assert not [pid for pid in processes if pid_alive(pid)]
    assert not first.ping(timeout=0.5)
    second = celery_worker_factory()
    assert second.hostname != first.hostname
    assert second.ping()


def test_a_worker_reconnects_to_a_restarted_redis(
    celery_worker_factory: CeleryWorkerFactory, redis_server: RedisServer, redis_url: str
) -> None:
    worker = celery_worker_factory()

    redis_server.kill()
    redis_server.restart()

    # Celery retries the broker every two seconds at first.
    worker.wait_ready(timeout=15)
    with celery_client(redis_url) as client:
        sent = client.send_task("celery.accumulate", args=["after restart"])
    worker.wait_for_log(f"Task celery.accumulate[{sent.id}] succeeded")


def test_a_stopped_worker_shuts_down_warmly_and_leaves_no_process(
    celery_worker_factory: CeleryWorkerFactory,
) -> None:
    worker = celery_worker_factory()
    processes = worker.pids()

    worker.stop()

    assert not [pid for pid in processes if pid_alive(pid)]
    assert "warm shutdown" in worker.log_text().lower()


def test_a_worker_that_cannot_start_fails_fast_with_its_log(redis_url: str, tmp_path: Path) -> None:
    worker = CeleryWorker(broker_url=redis_url, directory=tmp_path, app="tests.no_such_module")
    worker.start()
    try:
        with pytest.raises(ServiceError, match="exited with status") as error:
            worker.wait_ready(timeout=20)
        assert "no_such_module" in str(error.value)
    finally:
        worker.kill()
