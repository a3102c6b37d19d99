"""A scripted HTTP server on 127.0.0.1 standing in for the paper sources.

Each route is a path plus the query parameters it must carry, with a sequence of replies: the
first request gets the first reply, and so on; the last reply repeats. A route can answer a
status with headers, a body from `tests/fixtures/`, or nothing for a while (a hang).
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    # Seconds to wait before answering: longer than the client's timeout makes a hang.
    delay: float = 0.0


def fixture_reply(name: str, *, content_type: str = "application/json") -> Reply:
    return Reply(body=(FIXTURES / name).read_bytes(), headers=(("Content-Type", content_type),))


@dataclass
class _Route:
    path: str
    params: dict[str, str]
    replies: list[Reply]
    served: int = 0


@dataclass
class PaperServer:
    url: str = ""
    routes: list[_Route] = field(default_factory=list)
    # (path, query parameters) of every request, in order.
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, *replies: Reply, **params: str) -> None:
        """Answer GET `path` carrying `params` with `replies` in turn (the last one repeats)."""
        self.routes.insert(0, _Route(path, params, list(replies)))

    def reply_for(self, path: str, params: dict[str, str]) -> Reply:
        with self.lock:
            self.requests.append((path, params))
            for route in self.routes:
                if route.path == path and route.params.items() <= params.items():
                    reply = route.replies[min(route.served, len(route.replies) - 1)]
                    route.served += 1
                    return reply
        return Reply(status=404, body=b"no scripted reply")

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)


def _handler(server: PaperServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            reply = server.reply_for(parts.path, params)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout tests)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def paper_server() -> Iterator[PaperServer]:
    server = PaperServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    httpd.block_on_close = False  # a hanging reply must not hold up the end of a test
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutting down waits for one poll, at the end of every test.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()
    thread.join()
