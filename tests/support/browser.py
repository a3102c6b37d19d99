"""A real browser for tests: Debian's Chromium driven by Playwright (sync API), on 127.0.0.1.

    def test_it_shows_the_page(
        new_page: BrowserPages, screenshots: Screenshots, static_server: ServeFolder
    ) -> None:
        server = static_server(folder)           # or start_server([...], url=...)
        page = new_page(PHONE)                   # a fresh context at 390x844
        page.goto(server.url("index.html"))
        screenshots(page, "signup")              # signup-390.png and signup-1280.png

Chromium is /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it), never a
browser downloaded by `playwright install`. Without Chromium or the playwright package the
browser fixtures skip with the reason, and fail when CI=true.

Every page runs with Chromium's background networking off, and a route that aborts any
request to a host other than 127.0.0.1 or localhost; `BrowserPages.blocked` lists them, and a
test fails at teardown if its pages asked for any. Screenshots go to
var/test-artifacts/screenshots/<test name>/<label>-<width>.png under the project root
(var/ is git-ignored), emptied at the start of each test so they show only its last run.
"""

import http.server
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import pytest

from tests.support.services import (
    HOST,
    PROJECT_ROOT,
    ServiceError,
    _Subprocess,
    free_port,
    wait_until,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    # Tests run as root in CI, where Chromium refuses its sandbox.
    "--no-sandbox",
    # No traffic of Chromium's own (updates, safe browsing, field trials): only 127.0.0.1.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-gpu",
    # Names other than localhost and 127.0.0.1 never resolve, so even a prefetch stays here.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
SCREENSHOTS_DIR = PROJECT_ROOT / "var" / "test-artifacts" / "screenshots"
LOCAL_HOSTS = frozenset({HOST, "localhost"})
# Waits of the browser itself (navigation, locators): short, every page is local.
BROWSER_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Viewport:
    label: str
    width: int
    height: int

    @property
    def size(self) -> "ViewportSize":
        return {"width": self.width, "height": self.height}


PHONE = Viewport("phone", 390, 844)
DESKTOP = Viewport("desktop", 1280, 900)
VIEWPORTS = (PHONE, DESKTOP)


def browser_unavailable(reason: str) -> NoReturn:
    """Skip, or fail in CI: CI must run the browser tests, never quietly pass over them."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator["Browser"]:
    """Headless Chromium for one test module; each test gets fresh contexts from `new_page`.

    Module scope: a launch costs under a second, and the browser is gone while the rest of
    the suite runs."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        browser_unavailable(
            f"the playwright package is not installed ({exc}): pip install -e '.[test]'"
        )
    if not os.access(CHROMIUM, os.X_OK):
        browser_unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
            )
        except Error as exc:
            browser_unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class BrowserPages:
    """Opens pages in contexts of their own and closes them after the test."""

    browser: "Browser"
    contexts: list["BrowserContext"] = field(default_factory=list)
    # Requests aborted for leaving 127.0.0.1, as (method, url).
    blocked: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, viewport: Viewport = PHONE, **context_options: Any) -> "Page":
        """A page in a new context (no cookies or storage shared with other pages)."""
        context = self.browser.new_context(
            viewport=viewport.size,
            service_workers="block",
            **context_options,
        )
        self.contexts.append(context)
        context.set_default_timeout(BROWSER_TIMEOUT_MS)
        context.route("**/*", self._only_local)
        return context.new_page()

    def _only_local(self, route: "Route") -> None:
        request = route.request
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            self.blocked.append((request.method, request.url))
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


@pytest.fixture
def new_page(chromium: "Browser") -> Iterator[BrowserPages]:
    """`new_page(PHONE)` or `new_page(DESKTOP)`: a fresh page at that viewport."""
    pages = BrowserPages(chromium)
    try:
        yield pages
    finally:
        pages.close()
    # After closing: a page that went off the machine is a bug in the page, or in the test.
    assert not pages.blocked, f"requests left 127.0.0.1 and were blocked: {pages.blocked}"


# ---------------------------------------------------------------------------------------------
# Screenshots


def save_screenshots(
    page: "Page",
    directory: Path,
    label: str,
    viewports: Sequence[Viewport] = VIEWPORTS,
) -> list[Path]:
    """Full-page screenshots of `page` as it is now, at each viewport's width, as
    `<directory>/<label>-<width>.png`; the page gets its own viewport back afterwards.

    The viewport is resized, not the page reloaded, so a form keeps what was typed in it."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise ValueError(f"screenshot label {label!r}: use letters, digits, '.', '_' and '-'")
    directory.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    paths = []
    try:
        for viewport in viewports:
            page.set_viewport_size(viewport.size)
            path = directory / f"{label}-{viewport.width}.png"
            page.screenshot(path=path, full_page=True, animations="disabled")
            paths.append(path)
    finally:
        if original is not None:
            page.set_viewport_size(original)
    return paths


class Screenshots(Protocol):
    def __call__(
        self, page: "Page", label: str, viewports: Sequence[Viewport] = VIEWPORTS
    ) -> list[Path]: ...


def screenshot_dir_for(node_name: str) -> Path:
    """The test's folder under SCREENSHOTS_DIR; `test_x[sqlite]` becomes `test_x-sqlite`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).strip("-.")
    return SCREENSHOTS_DIR / safe


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    """`screenshots(page, "signup")`: phone and desktop screenshots into this test's folder."""
    directory = screenshot_dir_for(request.node.name)
    # Only this run's pictures: a label a test no longer takes must not linger.
    shutil.rmtree(directory, ignore_errors=True)

    def take(page: "Page", label: str, viewports: Sequence[Viewport] = VIEWPORTS) -> list[Path]:
        return save_screenshots(page, directory, label, viewports)

    return take


# ---------------------------------------------------------------------------------------------
# Servers


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records each request line instead of printing it."""

    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        # Called once per request, and on errors; the request line is what tests look at.
        self.requests.append(self.requestline)

    def end_headers(self) -> None:
        # A test rewrites files between loads; never let the browser reuse an old copy.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class StaticServer:
    """An HTTP server on 127.0.0.1 (a free port) serving one folder, in a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        handler = type("Handler", (_QuietHandler,), {"requests": self.requests})
        self._server = http.server.ThreadingHTTPServer(
            (HOST, 0), partial(handler, directory=str(folder))
        )
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        # A short poll: shutdown() waits for the loop to look, 0.5 s by default.
        self._thread = threading.Thread(
            target=partial(self._server.serve_forever, poll_interval=0.05),
            name=f"static-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def url(self, path: str | Path = "") -> str:
        """The URL of a file in the folder, given relative to it."""
        return self.base_url + quote(Path(path).as_posix() if path else "")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


ServeFolder = Callable[[Path], StaticServer]


@pytest.fixture
def static_server() -> Iterator[ServeFolder]:
    """`static_server(folder)`: that folder over HTTP on 127.0.0.1, stopped after the test."""
    servers: list[StaticServer] = []

    def serve(folder: Path) -> StaticServer:
        server = StaticServer(folder)
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.stop()


def http_answers(url: str, *, timeout: float = 1.0) -> bool:
    """True once anything answers `url` over HTTP, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # a 404 or 500 still means the server is up
    except (OSError, ValueError):
        return False


@dataclass
class ServerProcess:
    """A server started by `start_server`, running in a process group of its own."""

    argv: list[str]
    url: str
    port: int
    log_path: Path
    _process: _Subprocess

    @property
    def running(self) -> bool:
        return self._process.running

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def answers_or_exited(self) -> bool:
        return http_answers(self.url) or not self.running

    def stop(self, *, timeout: float = 5.0) -> None:
        """SIGTERM for a clean shutdown, then SIGKILL to whatever of the group is left."""
        self._process.terminate(timeout=timeout)
        self._process.kill_group()


class StartServer(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        url: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30.0,
    ) -> ServerProcess: ...


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Starts a server subprocess, waits until `url` answers, and kills it after the test.

    `{port}` in `argv`, `url` and `env` values is replaced by a free port on 127.0.0.1, tried
    again with another port if the first was taken meanwhile:

        server = start_server(
            [PAPERWIRE, "serve", "--host", "127.0.0.1", "--port", "{port}"],
            url="http://127.0.0.1:{port}/healthz",
            env={"PAPERWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'paperwire.db'}"},
        )

    `env` is added to this process's environment; the server runs in `cwd` (default: the
    test's tmp_path, so no `.env` of the checkout is read) and logs to a file there, whose
    end is shown if it does not answer within `timeout` seconds."""
    started: list[ServerProcess] = []

    def start(
        argv: Sequence[str],
        *,
        url: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30.0,
    ) -> ServerProcess:
        for _ in range(3):
            port = free_port()
            args = [arg.replace("{port}", str(port)) for arg in argv]
            ready_url = url.replace("{port}", str(port))
            extra = {key: value.replace("{port}", str(port)) for key, value in (env or {}).items()}
            log_path = tmp_path / f"server-{len(started) + 1}-{port}.log"
            process = _Subprocess(
                args, log_path=log_path, cwd=cwd or tmp_path, env={**os.environ, **extra}
            )
            server = ServerProcess(args, ready_url, port, log_path, process)
            started.append(server)
            try:
                wait_until(
                    server.answers_or_exited,
                    timeout=timeout,
                    what=f"{args[0]} to answer {ready_url}",
                    log=server.log_text,
                )
            except ServiceError:
                server.stop()
                raise
            if process.running:
                return server
            if "address already in use" not in server.log_text().lower():
                raise ServiceError(
                    f"{' '.join(args)} exited with status {process.popen.returncode} before "
                    f"answering {ready_url}\n--- its log ---\n{server.log_text()[-3000:]}"
                )
        raise ServiceError(f"{argv[0]}: every port tried was taken")

    yield start
    for server in started:
        server.stop()


def run_command(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion, failing the test with its output if it exits non-zero."""
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result
