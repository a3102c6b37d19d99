"""An SMTP sink for tests: a real aiosmtpd server on 127.0.0.1 recording what it receives.

    def test_it_delivers(smtp_sink: SmtpSink) -> None:
        ...send to smtp_sink.url...
        assert smtp_sink.messages[0].rcpt_tos == ("alice@example.org",)

Faults: `smtp_sink.fail_next("RCPT", "451 4.3.0 try later")` answers the next RCPT with that
reply instead of accepting it. The reply `DROP` closes the connection without answering,
`RESET` aborts it with a TCP reset; a `421` reply is sent and then the connection is closed,
as a server shutting down would. At MAIL or RCPT, `HANG` never answers and `delay(seconds)`
answers as usual, late.
For anything more, set `smtp_sink.fault` to a function of the `SmtpCommand` being answered.

DATA is answered once the whole message has arrived, so a fault at DATA acts after the final
dot. To act while the message is still coming in, answer the pseudo-command `DATA_START`
(asked for once a DATA command is about to be answered 354): `DROP` or `RESET` send the 354
and then close or reset the connection before reading any of the message; `DROP_MID_DATA` and
`RESET_MID_DATA` do so once the message's header section has been read.

The header sections of messages cut short are kept in `smtp_sink.interrupted`.
Every reply the sink writes is kept in `smtp_sink.replies`, e.g. to check that none was a
503 (command out of sequence); each message records when it arrived (`received_at`).

TLS: the `tls_certificates` fixture makes a throwaway CA and a certificate for 127.0.0.1.
`SmtpSink(smtp_kwargs={"tls_context": ..., "require_starttls": True})` offers STARTTLS;
`SmtpSink(implicit_tls=...)` speaks TLS from the first byte (its `url` is then smtps://).
`accept_logins({"user": "password"})` is an aiosmtpd `authenticator`.
"""

import asyncio
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, AnyStr

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"
# Given explicitly: without it aiosmtpd calls socket.getfqdn(), which can stall on DNS.
SERVER_HOSTNAME = "sink.paperwire.test"
DROP = "drop"
# Abort with a TCP reset, as a server that crashes mid-transaction does: the client can tell
# that its message was not taken. DROP at DATA, an orderly close after the final dot with no
# reply, leaves the client in doubt instead.
RESET = "reset"
# Never answer (for HANG_SECONDS): a relay that stalls, to make a sender hit its time limit.
HANG = "hang"
HANG_SECONDS = 60.0
# `delay(0.2)` answers MAIL or RCPT as usual, but that many seconds late: a slow relay.
DELAY_PREFIX = "delay:"


def delay(seconds: float) -> str:
    return f"{DELAY_PREFIX}{seconds}"


# Asked for when a DATA command is about to be answered 354, before any of the message is
# read; its reply may be DROP, RESET, DROP_MID_DATA or RESET_MID_DATA (None: as usual).
DATA_START = "DATA-START"
# Send the 354, read the message's header section, then close (or reset) the connection: a
# relay that dies while the message is coming in. After a close the client may see an orderly
# end, since the sink has by then buffered whatever of the message had arrived; a relay that
# dies with the rest unread resets the connection instead, as RESET_MID_DATA does.
DROP_MID_DATA = "drop-mid-data"
RESET_MID_DATA = "reset-mid-data"
_DATA_FAULTS = (DROP, RESET, DROP_MID_DATA, RESET_MID_DATA)
FAULT_VERBS = ("MAIL", "RCPT", DATA_START, "DATA")


@dataclass(frozen=True)
class SmtpCommand:
    """A command the sink is about to answer. DATA is seen once the message has arrived;
    DATA_START (no argument) when the DATA command itself has, before the 354."""

    session_id: int
    verb: str
    argument: str


@dataclass(frozen=True)
class ReceivedMessage:
    session_id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    # The TLS version the message travelled over ("TLSv1.3"), None if in the clear.
    tls_version: str | None = None
    # The user the client authenticated as, None without AUTH.
    login: str | None = None
    # time.monotonic() when the final dot arrived, just before the message was accepted.
    received_at: float = 0.0


@dataclass(frozen=True)
class SentReply:
    """A reply line the sink wrote, e.g. to check that no command met "503 bad sequence"."""

    session_id: int
    reply: str


Fault = Callable[[SmtpCommand], str | None]


@dataclass
class SmtpSink:
    """Records sessions (one per connection), commands and accepted messages."""

    smtp_kwargs: dict[str, Any] = field(default_factory=dict)
    # A server-side context makes the sink an implicit-TLS (smtps) server.
    implicit_tls: ssl.SSLContext | None = None
    fault: Fault | None = None
    # EHLO keywords to leave out, e.g. {"8BITMIME"} to play an old relay.
    hidden_extensions: set[str] = field(default_factory=set)
    messages: list[ReceivedMessage] = field(default_factory=list)
    ehlo_hostnames: list[str] = field(default_factory=list)
    commands: list[SmtpCommand] = field(default_factory=list)
    replies: list[SentReply] = field(default_factory=list)
    # Messages cut short by DROP_MID_DATA or RESET_MID_DATA: their header section only.
    interrupted: list[ReceivedMessage] = field(default_factory=list)
    _scripted: list[tuple[str, str]] = field(default_factory=list)
    _servers: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: "_FreePortController | None" = None

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls is not None else "smtp"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def session_count(self) -> int:
        return len(self.ehlo_hostnames)

    def fail_next(self, verb: str, reply: str) -> None:
        """Answer the next `verb` (MAIL, RCPT, DATA_START or DATA) with `reply`; queued faults
        run in order."""
        if verb not in FAULT_VERBS:
            raise ValueError(f"faults apply to {FAULT_VERBS}, not {verb!r}")
        with self._lock:
            self._scripted.append((verb, reply))

    def disconnect_all(self) -> None:
        """Close every open connection from the server side, as an idle timeout would."""

        async def close_all() -> None:
            for server in self._servers:
                if server.transport is not None:
                    server.transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), self._running().loop).result(timeout=5)

    def start(self) -> None:
        self._controller = _FreePortController(
            _Handler(self),
            hostname=HOST,
            port=0,
            server_hostname=SERVER_HOSTNAME,
            ready_timeout=5.0,
            ssl_context=self.implicit_tls,
            **self.smtp_kwargs,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _running(self) -> "_FreePortController":
        if self._controller is None:
            raise RuntimeError("the SMTP sink is not running: call start() first")
        return self._controller

    def _reply_for(self, command: SmtpCommand) -> str | None:
        with self._lock:
            self.commands.append(command)
            for index, (verb, reply) in enumerate(self._scripted):
                if verb == command.verb:
                    del self._scripted[index]
                    return reply
        return self.fault(command) if self.fault is not None else None


class _FreePortController(Controller):
    """Listens on port 0 so the OS picks a free port; asyncio creates the socket itself
    (a socket made by hand can lose TCP_NODELAY and stall each session ~40 ms)."""

    def factory(self) -> SMTP:
        return _SinkServer(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Runs once the server listens: learn the port before the controller connects to it.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class _SinkServer(SMTP):
    """aiosmtpd's protocol, one per connection, with the two hooks its handler API lacks:
    every reply is recorded, and DATA can fail after the 354, before the final dot."""

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if self.transport is not None and not self.transport.is_closing():
            # Not the reply a dropped connection "sends": that never reaches the client.
            sink = self._sink
            with sink._lock:
                sink.replies.append(SentReply(_session_id(self), text))
        await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        # Only a DATA that aiosmtpd would answer 354 (after EHLO, AUTH if needed, a recipient,
        # no argument) can fail mid-message; anything else gets aiosmtpd's own reply.
        ready = (
            self.session is not None
            and self.session.host_name
            and not (self._auth_required and not self.session.authenticated)
            and self.envelope is not None
            and self.envelope.rcpt_tos
            and not arg
        )
        reply = (
            self._sink._reply_for(SmtpCommand(_session_id(self), DATA_START, "")) if ready else None
        )
        if reply is None:
            await super().smtp_DATA(arg)
            return
        if reply not in _DATA_FAULTS:
            raise ValueError(f"{DATA_START} takes one of {_DATA_FAULTS}, not {reply!r}")
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        if reply in (DROP_MID_DATA, RESET_MID_DATA):
            # The header section ends at the first empty line; the body is left unread.
            lines = [await self._reader.readuntil(b"\r\n")]
            while lines[-1] != b"\r\n":
                lines.append(await self._reader.readuntil(b"\r\n"))
            # Kept, so a test can tell which message was cut short (its Message-ID).
            cut_short = _received(self, self.session, self.envelope, b"".join(lines))
            sink = self._sink
            with sink._lock:
                sink.interrupted.append(cut_short)
        _close(self, reset=reply in (RESET, RESET_MID_DATA))
        # The connection's loss cancels this handler on the next loop turn; until then it
        # must not go on to read the rest of the message as commands.
        await asyncio.sleep(HANG_SECONDS)

    @property
    def _sink(self) -> SmtpSink:
        handler = self.event_handler
        assert isinstance(handler, _Handler)
        return handler._sink


class _Handler:
    """aiosmtpd hooks: `handle_<VERB>(server, session, envelope, ...)`.

    `server` is aiosmtpd's protocol object, one per connection; `session` is not a stable
    key, because aiosmtpd starts a fresh one after STARTTLS (RFC 3207 §4.2)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if not hasattr(server, "sink_id"):
            with self._sink._lock:
                server.sink_id = len(self._sink.ehlo_hostnames)
                self._sink.ehlo_hostnames.append(hostname)
                self._sink._servers.append(server)
        hidden = {keyword.upper() for keyword in self._sink.hidden_extensions}
        kept = [line[4:] for line in responses if line[4:].split(" ")[0].upper() not in hidden]
        return [f"250-{line}" for line in kept[:-1]] + [f"250 {kept[-1]}"]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> Any:
        return await self._slow_or_stalled(server, self._answer(server, "MAIL", address))

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> Any:
        return await self._slow_or_stalled(server, self._answer(server, "RCPT", address))

    async def _slow_or_stalled(self, server: Any, reply: Any) -> Any:
        if reply == HANG:
            await asyncio.sleep(HANG_SECONDS)
            server.transport.abort()
        if isinstance(reply, str) and reply.startswith(DELAY_PREFIX):
            await asyncio.sleep(float(reply.removeprefix(DELAY_PREFIX)))
            return MISSING
        return reply

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> Any:
        with self._sink._lock:
            self._sink.commands.append(SmtpCommand(_session_id(server), "RSET", ""))
        return MISSING

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self._answer(server, "DATA", "")
        if reply is not MISSING:
            return str(reply)
        received = _received(server, session, envelope, envelope.original_content)
        with self._sink._lock:
            self._sink.messages.append(received)
        return f"250 2.0.0 OK queued as {len(self._sink.messages)}"

    def _answer(self, server: Any, verb: str, argument: str) -> Any:
        """The fault reply for this command, or MISSING to let aiosmtpd carry on as usual."""
        reply = self._sink._reply_for(SmtpCommand(_session_id(server), verb, argument))
        if reply is None:
            return MISSING
        if reply in (DROP, RESET):
            _close(server, reset=reply == RESET)
            return "421 4.4.2 connection dropped"  # never reaches the client
        if reply.startswith("421"):
            # Closed on the next loop turn, after the reply is written.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply


def _received(server: Any, session: Any, envelope: Any, raw: bytes) -> ReceivedMessage:
    login = getattr(session, "login_data", None)
    return ReceivedMessage(
        session_id=_session_id(server),
        mail_from=envelope.mail_from,
        rcpt_tos=tuple(envelope.rcpt_tos),
        mail_options=tuple(envelope.mail_options),
        raw=raw,
        message=_parse(raw),
        tls_version=_tls_version(server),
        login=login.decode("utf-8") if isinstance(login, bytes) else None,
        received_at=time.monotonic(),
    )


def _close(server: Any, *, reset: bool) -> None:
    """Close the connection at once, without a reply; with `reset`, by a TCP reset."""
    if reset:
        # Linger on with a zero timeout: close() then sends RST instead of FIN.
        sock = server.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.transport.abort()


def _session_id(server: Any) -> int:
    return int(getattr(server, "sink_id", -1))


def _tls_version(server: Any) -> str | None:
    """Read from the connection itself, so both STARTTLS and implicit TLS are seen (aiosmtpd
    sets `session.ssl` only after STARTTLS)."""
    ssl_object = server.transport.get_extra_info("ssl_object")
    return ssl_object.version() if isinstance(ssl_object, ssl.SSLObject) else None


def _parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def accept_logins(users: dict[str, str]) -> Callable[..., AuthResult]:
    """An aiosmtpd `authenticator` accepting exactly these user/password pairs."""
    expected = {user.encode("utf-8"): password.encode("utf-8") for user, password in users.items()}

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and expected.get(data.login) == data.password
        # handled=False: aiosmtpd itself answers 235, or 535 on failure.
        return AuthResult(success=ok, handled=False, auth_data=data)

    return authenticator


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@dataclass(frozen=True)
class TlsCertificates:
    """A throwaway CA, a server certificate it signed for 127.0.0.1, and an unrelated CA."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    other_ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the 127.0.0.1 certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


# Only the extensions asked for here: a system openssl.cnf can add defaults of its own.
_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@pytest.fixture(scope="session")
def tls_certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsCertificates:
    """Made with the openssl command-line tool, so the tests need no extra Python package."""
    openssl = shutil.which("openssl")
    if openssl is None:
        message = "the openssl command is needed to make test certificates"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("tls")
    config = folder / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    # OPENSSL_CONF too: `openssl x509` reads the default configuration file otherwise.
    env = {**os.environ, "OPENSSL_CONF": str(config)}

    def run(*args: str | Path) -> None:
        subprocess.run(
            [openssl, *map(str, args)], check=True, capture_output=True, env=env, timeout=30
        )

    def make_ca(name: str) -> tuple[Path, Path]:
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        run("req", "-x509", "-config", config, "-extensions", "ca", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", cert, "-days", "2", "-subj", f"/CN=Paperwire {name}")  # fmt: skip
        return cert, key

    ca_cert, ca_key = make_ca("test-ca")
    other_ca, _ = make_ca("other-ca")
    server_cert, server_key, request = (
        folder / name for name in ("server.pem", "server.key", "server.csr")
    )
    run("req", "-new", "-config", config, "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", server_key,
        "-out", request, "-subj", f"/CN={HOST}")  # fmt: skip
    run("x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-set_serial", "2",
        "-days", "2", "-extfile", config, "-extensions", "server", "-out", server_cert)  # fmt: skip
    return TlsCertificates(
        ca_file=ca_cert, server_cert=server_cert, server_key=server_key, other_ca_file=other_ca
    )
