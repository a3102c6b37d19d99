"""SMTP: one connection for many messages, the DATA phase written by hand so that a loss
before the relay has the whole message is told apart from one after it."""

import asyncio
import logging
import re
import ssl
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from service.mail.sending import BeforeData, DeliveryError, check_envelope, is_permanent
from service.mail.wire import OutgoingMail
from service.observability.logs import RelayOutage

log = logging.getLogger(__name__)
# Said once per outage and per process, not once per message (see RelayOutage).
RELAY_OUTAGE = RelayOutage(log)

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool
    username: str | None
    password: str | None
    timeout: float
    local_hostname: str
    # PEM file of the CA(s) to trust instead of the system's, for a relay with a private CA.
    cafile: Path | None = None


def smtp_config(url: str, *, timeout: float, local_hostname: str) -> SmtpConfig:
    """Parse smtp://[user:pass@]host[:port][?starttls=1][&cafile=ca.pem] or smtps://…[?cafile=…];
    ValueError if unclear."""
    parts = urlsplit(url)
    shown = redact_url(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"mail_url {shown!r} has an invalid port") from exc
    if not parts.hostname:
        raise ValueError(f"mail_url {shown!r} has no host: use smtp://host:port")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"mail_url {shown!r}: an SMTP URL has no path")
    query = parse_qs(parts.query, keep_blank_values=True)
    if unknown := set(query) - {"starttls", "cafile"}:
        raise ValueError(
            f"mail_url {shown!r}: unknown option(s) {', '.join(sorted(unknown))}; "
            "the options are starttls and cafile"
        )
    flag = query.get("starttls", ["0"])[-1].lower()
    if flag not in _TRUE + _FALSE:
        raise ValueError(f"mail_url {shown!r}: starttls must be 1 or 0")
    start_tls = flag in _TRUE
    use_tls = parts.scheme.lower() == "smtps"
    if use_tls and start_tls:
        raise ValueError(f"mail_url {shown!r}: smtps:// is already TLS; drop ?starttls")
    cafile = query.get("cafile", [None])[-1]
    if cafile is not None:
        if not cafile:
            raise ValueError(f"mail_url {shown!r}: cafile needs a path, e.g. cafile=/etc/ca.pem")
        # Refused rather than ignored: a CA file must not suggest that plain SMTP is secured.
        if not (use_tls or start_tls):
            raise ValueError(
                f"mail_url {shown!r}: cafile applies to TLS only; add starttls=1 or use smtps://"
            )
    return SmtpConfig(
        hostname=parts.hostname,
        port=port or (465 if use_tls else 587 if start_tls else 25),
        use_tls=use_tls,
        start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
        local_hostname=local_hostname,
        cafile=Path(cafile) if cafile else None,
    )


def client_tls_context(cafile: Path | None) -> ssl.SSLContext:
    """A context that verifies the relay's certificate and host name: against the system's CAs,
    or only against those in `cafile`. Verification is never switched off."""
    try:
        return ssl.create_default_context(cafile=cafile)
    except OSError as exc:  # ssl.SSLError included: a file that holds no PEM certificate
        raise ValueError(f"mail_url cafile {str(cafile)!r} cannot be loaded: {exc}") from exc


class _ServerGone(Exception):
    """The connection closed before this message was handed over: safe to retry it."""


class SmtpTransport:
    """One SMTP connection, opened on the first send and reused for every later message."""

    def __init__(self, config: SmtpConfig, *, max_messages_per_connection: int = 0) -> None:
        self._config = config
        # Relays cap messages per session (often 100, then 421); reconnecting first is
        # cheaper than a refused message. 0 means no cap.
        self._max_messages = max_messages_per_connection
        self._sent_on_connection = 0
        # Built once, here: a bad cafile is a configuration error at start, not at each send.
        self._tls_context = (
            client_tls_context(config.cafile) if config.use_tls or config.start_tls else None
        )
        self._client: aiosmtplib.SMTP | None = None
        # One transaction at a time: MAIL/RCPT/DATA of two messages must not interleave.
        self._lock = asyncio.Lock()

    async def send(self, mail: OutgoingMail, *, before_data: BeforeData | None = None) -> None:
        check_envelope(mail)
        async with self._lock:
            try:
                try:
                    await self._attempt(mail, retry_allowed=True, before_data=before_data)
                except _ServerGone:
                    # Typically an idle connection the server closed (or a 421): nothing of
                    # this message was accepted, so one retry on a fresh connection is safe.
                    await self._attempt(mail, retry_allowed=False, before_data=before_data)
            except DeliveryError as exc:
                if exc.unreachable:
                    RELAY_OUTAGE.failed(str(exc))
                else:
                    RELAY_OUTAGE.answered()
                raise
            RELAY_OUTAGE.answered()
            self._sent_on_connection += 1
            if self._max_messages and self._sent_on_connection >= self._max_messages:
                await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        connection = client.transport  # quit() forgets it
        if client.is_connected:
            with suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        _hang_up(client, connection)

    async def _attempt(
        self, mail: OutgoingMail, *, retry_allowed: bool, before_data: BeforeData | None
    ) -> None:
        sender, recipients = mail.sender, mail.recipients
        client = await self._connected()
        data, options = _payload(client, mail)
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        stage = "MAIL FROM"
        try:
            await client.mail(sender, options=options, encoding=encoding)
            stage = "RCPT TO"
            refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    if exc.code == 421 or not client.is_connected:
                        raise
                    refused[recipient] = exc
            if refused:
                # Checked here, not left to a return value: DATA goes out only if every
                # recipient was accepted, so a retry never duplicates mail to the others.
                await self._reset(client)
                raise _refusal(refused)
            stage = "DATA"
            if before_data is not None:
                try:
                    before_data()
                except Exception:
                    # The caller called the message off: end the transaction cleanly, so the
                    # connection stays usable for the next one.
                    await self._reset(client)
                    raise
            reply = await client.execute_command(b"DATA")
            if reply.code != 354:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
            # Written here, not by client.data(): that would normalise line ends and quote
            # dots with regular expressions over the whole message, which the composed bytes
            # do not need, and could not tell a loss before the message went out from one
            # after it.
            stage = "the message"
            protocol = client.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            protocol.write(_data_section(data))
            stage = "the end of the message"
            reply = await protocol.read_response(timeout=self._config.timeout)
            if reply.code != 250:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        except aiosmtplib.SMTPResponseException as exc:
            # The relay answered, so whatever it said, nothing is in doubt.
            if exc.code == 421 or not client.is_connected:
                self._discard()
                if retry_allowed:
                    # It is closing this connection; nothing of this message was taken.
                    raise _ServerGone() from exc
            else:
                await self._reset(client)
            raise DeliveryError(
                f"SMTP {exc.code} {exc.message} (at {stage}, to {', '.join(recipients)})",
                permanent=is_permanent(exc.code),
                smtp_code=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._connection_lost(stage, exc, retry_allowed=retry_allowed)

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        self._discard()
        config = self._config
        client = aiosmtplib.SMTP(
            hostname=config.hostname,
            port=config.port,
            local_hostname=config.local_hostname,
            timeout=config.timeout,
            use_tls=config.use_tls,
            # False, not None: aiosmtplib's None upgrades whenever the server offers STARTTLS.
            start_tls=config.start_tls,
            tls_context=self._tls_context,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if config.username is not None:
                # Not left to connect(): a refused login would close the connection in there,
                # out of reach of _hang_up.
                password = config.password if config.password is not None else ""
                await client.login(config.username, password)
        except (aiosmtplib.SMTPException, OSError) as exc:
            _hang_up(client)
            # Transient even for a 5xx: a refused login or greeting is about this service's
            # set-up, not about the message, which must not be marked undeliverable.
            raise DeliveryError(
                f"cannot open SMTP session with {config.hostname}:{config.port}: "
                + _session_failure(config, exc),
                permanent=False,
                smtp_code=getattr(exc, "code", None),
                unreachable=True,
            ) from exc
        self._client = client
        self._sent_on_connection = 0
        return client

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """End a refused transaction so the next message is not answered 503."""
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._discard()  # the next send reconnects instead

    def _connection_lost(self, stage: str, exc: Exception, *, retry_allowed: bool) -> NoReturn:
        self._discard()
        # A relay takes a message only at its final dot: a loss before the whole message was
        # written is safe to retry. After it, the relay may have queued the message and died
        # before answering; resending could deliver it twice, unless the relay reset the
        # connection, which a relay with our data still unread does.
        if stage == "the end of the message" and not _was_reset(exc):
            raise DeliveryError(
                f"SMTP connection ended after the message went out, without a reply; the "
                f"relay may have the message: {exc}",
                permanent=False,
                in_doubt=True,
            ) from exc
        if retry_allowed:
            raise _ServerGone() from exc
        raise DeliveryError(
            f"SMTP connection lost at {stage}: {exc}",
            permanent=False,
            smtp_code=getattr(exc, "code", None),
            unreachable=True,
        ) from exc

    def _discard(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _hang_up(client)


def _data_section(data: bytes) -> bytes:
    """`data` as sent after DATA: CRLF line ends, a dot doubled at the start of a line
    (RFC 5321 4.5.2), then the final dot."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = _LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _was_reset(exc: BaseException) -> bool:
    """True when the peer reset the connection: a server that aborts a transaction with our
    data still unread resets it, and has not accepted the message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionResetError | BrokenPipeError):
            return True
        cause = cause.__cause__
    return False


def _hang_up(client: aiosmtplib.SMTP, connection: asyncio.BaseTransport | None = None) -> None:
    """Close the connection now, socket included. aiosmtplib's close() of a TLS connection only
    starts the TLS shutdown, which waits on the server; if the event loop ends first the socket
    is left open. SMTP needs no TLS close_notify: QUIT has been answered, or the session is
    being abandoned (stdlib smtplib does not send one either)."""
    if connection is None:
        connection = client.transport
    client.close()
    if isinstance(connection, asyncio.WriteTransport):
        connection.abort()


def _session_failure(config: SmtpConfig, exc: Exception) -> str:
    """What went wrong opening the session, in terms of the mail_url to fix."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"authentication as {config.username!r} refused ({exc.code} {exc.message})"
    # aiosmtplib wraps the implicit-TLS handshake error in SMTPConnectError: look beneath.
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        hint = (
            "" if config.cafile else "; a relay with a private CA needs cafile=ca.pem in mail_url"
        )
        return f"TLS certificate verify failed ({cause.verify_message}){hint}"
    return str(exc)


def _payload(client: aiosmtplib.SMTP, mail: OutgoingMail) -> tuple[bytes, list[str]]:
    """The bytes as composed. aiosmtplib's `data()` would run two regular-expression passes
    over every message (0.26 ms a digest against 0.07 ms for `_data_section`: `python -m
    bench.mail_build`)."""
    eight_bit = client.supports_extension("8bitmime")
    data = mail.data if eight_bit else mail.seven_bit_data()
    options = []
    if client.supports_extension("size"):
        options.append(f"SIZE={len(data)}")
    if eight_bit and not data.isascii():
        options.append("BODY=8BITMIME")
    if not all(address.isascii() for address in (mail.sender, *mail.recipients)):
        if not client.supports_extension("smtputf8"):
            raise DeliveryError("the relay does not take non-ASCII addresses", permanent=True)
        options.append("SMTPUTF8")
    return data, options


def _refusal(refused: dict[str, aiosmtplib.SMTPRecipientRefused]) -> DeliveryError:
    details = "; ".join(f"{to}: {exc.code} {exc.message}" for to, exc in refused.items())
    codes = [exc.code for exc in refused.values()]
    return DeliveryError(
        f"SMTP recipient refused ({details})",
        permanent=all(is_permanent(code) for code in codes),
        smtp_code=codes[0],
    )


def redact_url(url: str) -> str:
    """`url` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
