"""Delivery through a real SMTP server on 127.0.0.1, and into an outbox folder."""

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from service.mail.compose import compose_digest, render_digest
from service.mail.outbox import outbox_path
from service.mail.sending import DeliveryError, MailTransport, is_permanent
from service.mail.smtp import SmtpConfig, smtp_config
from service.mail.transport import open_transport
from service.mail.wire import OutgoingMail
from service.settings import Settings
from tests.support.factories import (
    HOSTILE_TITLES,
    NOW,
    deliver,
    make_digest,
    make_paper,
    make_settings,
)
from tests.support.smtp_sink import (
    DATA_START,
    DROP,
    RESET,
    RESET_MID_DATA,
    SmtpCommand,
    SmtpSink,
    TlsCertificates,
    accept_logins,
)


def message_for(subscriber_id: int = 42, email: str = "alice@example.org") -> OutgoingMail:
    digest = make_digest(subscriber_id=subscriber_id, email=email)
    return compose_digest(digest, settings=make_settings(), now=NOW)


def with_transport(settings: Settings, body: Callable[[MailTransport], Awaitable[None]]) -> None:
    async def run() -> None:
        async with open_transport(settings) as transport:
            await body(transport)

    asyncio.run(run())


def sink_settings(sink: SmtpSink, **overrides: Any) -> Settings:
    return make_settings(mail_url=sink.url, mail_timeout_seconds=5.0, **overrides)


def test_it_delivers_the_message_with_every_header_and_both_parts(smtp_sink: SmtpSink) -> None:
    sent = message_for()
    assert deliver(sink_settings(smtp_sink), sent) == [None]
    [received] = smtp_sink.messages
    assert re.fullmatch(r"bounces\+2026-11-25-42-[a-z2-7]{16}@paperwire\.test", received.mail_from)
    assert received.rcpt_tos == ("alice@example.org",)
    assert "BODY=8BITMIME" in received.mail_options
    assert f"SIZE={len(received.raw)}" in received.mail_options
    assert received.raw == sent.data  # the composed bytes, not serialized again
    message = received.message
    assert all(part.defects == [] for part in message.walk())
    assert message["From"] == "Paperwire <digest@paperwire.test>"
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == sent.as_email_message()["Subject"]
    assert message["Subject"].startswith("Your paper for Wed 25 Nov: “Consistency models")
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == sent.message_id
    assert sent.message_id.startswith("<digest-2026-11-25-42-")
    assert message["List-Id"] == "Paperwire digest <digest.paperwire.test>"
    unsubscribe = str(message["List-Unsubscribe"])
    assert unsubscribe.startswith("<https://paperwire.test/u/")
    assert re.search(
        r", <mailto:unsubscribe\+42-[a-z2-7]{16}@paperwire\.test\?subject=", unsubscribe
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert "Consistency models for fast diffusion sampling" in received.raw.decode("utf-8")
    # EHLO names the mail domain: the client never had to ask DNS for its own name.
    assert smtp_sink.ehlo_hostnames == ["paperwire.test"]


def test_one_connection_serves_many_messages(smtp_sink: SmtpSink) -> None:
    messages = [message_for(subscriber_id=n, email=f"s{n}@example.org") for n in range(5)]
    assert deliver(sink_settings(smtp_sink), *messages) == [None] * 5
    assert smtp_sink.session_count == 1
    assert [m.rcpt_tos for m in smtp_sink.messages] == [(f"s{n}@example.org",) for n in range(5)]


def test_no_connection_is_opened_before_the_first_message(smtp_sink: SmtpSink) -> None:
    assert deliver(sink_settings(smtp_sink)) == []
    assert smtp_sink.session_count == 0


@pytest.mark.parametrize("drop", [DROP, "421 4.3.2 shutting down"])
def test_it_reconnects_once_when_the_server_went_away(smtp_sink: SmtpSink, drop: str) -> None:
    def second_mail_fails(command: SmtpCommand) -> str | None:
        mails = [seen for seen in smtp_sink.commands if seen.verb == "MAIL"]
        return drop if command.verb == "MAIL" and len(mails) == 2 else None

    smtp_sink.fault = second_mail_fails  # the server went away while the connection was idle
    settings = sink_settings(smtp_sink)
    outcomes = deliver(settings, message_for(1, "a@example.org"), message_for(2, "b@example.org"))
    assert outcomes == [None, None]
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("a@example.org",), ("b@example.org",)]
    assert smtp_sink.session_count == 2


def test_it_reconnects_after_the_server_closed_an_idle_connection(smtp_sink: SmtpSink) -> None:
    async def body(transport: MailTransport) -> None:
        await transport.send(message_for(1, "a@example.org"))
        smtp_sink.disconnect_all()
        await transport.send(message_for(2, "b@example.org"))

    with_transport(sink_settings(smtp_sink), body)
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("a@example.org",), ("b@example.org",)]
    assert smtp_sink.session_count == 2


def test_it_gives_up_if_the_server_drops_the_retry_too(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next("MAIL", DROP)
    smtp_sink.fail_next("MAIL", DROP)
    [outcome] = deliver(sink_settings(smtp_sink), message_for())
    assert isinstance(outcome, DeliveryError)
    assert not outcome.permanent
    assert smtp_sink.messages == []


def test_a_drop_during_data_is_transient_and_not_resent(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next("DATA", DROP)
    outcomes = deliver(sink_settings(smtp_sink), message_for(1), message_for(2, "b@example.org"))
    assert isinstance(outcomes[0], DeliveryError) and not outcomes[0].permanent
    assert outcomes[1] is None  # the next message reconnects
    data_commands = [command for command in smtp_sink.commands if command.verb == "DATA"]
    assert len(data_commands) == 2
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("b@example.org",)]


@pytest.mark.parametrize(
    ("verb", "reply"),
    [
        ("MAIL", "451 4.3.0 try later"),
        ("RCPT", "451 4.3.0 try later"),
        ("RCPT", "452 4.2.2 mailbox full"),
        ("DATA", "451 4.3.0 try later"),
    ],
)
def test_a_4xx_is_transient_and_the_next_message_still_goes_through(
    smtp_sink: SmtpSink, verb: str, reply: str
) -> None:
    smtp_sink.fail_next(verb, reply)
    outcomes = deliver(sink_settings(smtp_sink), message_for(1), message_for(2, "b@example.org"))
    failure = outcomes[0]
    assert isinstance(failure, DeliveryError)
    assert failure.permanent is False
    assert failure.smtp_code == int(reply[:3])
    assert reply[4:] in str(failure)
    assert outcomes[1] is None  # not "503 bad sequence": the transaction was reset
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("b@example.org",)]
    assert smtp_sink.session_count == 1
    assert "RSET" in [command.verb for command in smtp_sink.commands]


@pytest.mark.parametrize(
    ("verb", "reply", "permanent"),
    [
        ("RCPT", "550 5.1.1 no such user", True),
        ("MAIL", "553 5.1.8 sender rejected", True),
        ("DATA", "554 5.7.1 message refused", True),
        ("RCPT", "552 5.2.2 mailbox over quota", False),
        ("DATA", "552 5.3.4 message too big for now", False),
    ],
)
def test_5xx_is_permanent_except_552(
    smtp_sink: SmtpSink, verb: str, reply: str, permanent: bool
) -> None:
    smtp_sink.fail_next(verb, reply)
    outcomes = deliver(sink_settings(smtp_sink), message_for(1), message_for(2, "b@example.org"))
    failure = outcomes[0]
    assert isinstance(failure, DeliveryError)
    assert failure.permanent is permanent
    assert failure.smtp_code == int(reply[:3])
    assert outcomes[1] is None


def test_a_refused_recipient_among_several_is_reported_and_nothing_is_sent(
    smtp_sink: SmtpSink,
) -> None:
    message = render_digest(make_digest(), settings=make_settings(), now=NOW)
    message["Cc"] = "bob@example.org"
    mail = OutgoingMail.from_message(message)
    assert mail.recipients == ("alice@example.org", "bob@example.org")
    smtp_sink.fault = lambda command: (
        "550 5.1.1 no such user" if command.argument == "bob@example.org" else None
    )
    [failure] = deliver(sink_settings(smtp_sink), mail)
    assert isinstance(failure, DeliveryError)
    assert failure.permanent and failure.smtp_code == 550
    assert "bob@example.org" in str(failure)
    assert smtp_sink.messages == []


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(mail_url=f"smtp://127.0.0.1:{port}", mail_timeout_seconds=2.0)
    [failure] = deliver(settings, message_for())
    assert isinstance(failure, DeliveryError)
    assert failure.permanent is False
    assert f"127.0.0.1:{port}" in str(failure)


def test_a_relay_without_8bitmime_gets_7bit_bodies(smtp_sink: SmtpSink) -> None:
    smtp_sink.hidden_extensions = {"8BITMIME"}
    sent = message_for()
    assert deliver(sink_settings(smtp_sink), sent) == [None]
    [received] = smtp_sink.messages
    assert received.raw.isascii()
    assert received.raw == sent.seven_bit_data()
    assert f"SIZE={len(received.raw)}" in received.mail_options
    assert "BODY=8BITMIME" not in received.mail_options
    assert all(part.defects == [] for part in received.message.walk())
    html = received.message.get_body(preferencelist=("html",))
    sent_html = sent.as_email_message().get_body(preferencelist=("html",))
    assert isinstance(html, EmailMessage) and isinstance(sent_html, EmailMessage)
    assert html.get_content().replace("\r\n", "\n") == sent_html.get_content()


def test_it_logs_in_when_the_url_has_credentials() -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (data.login, data.password) == (b"mailer", b"p@ss:word")
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    sink = SmtpSink(
        smtp_kwargs={
            "authenticator": authenticator,
            "auth_require_tls": False,
        }
    )
    sink.start()
    try:
        url = f"smtp://mailer:p%40ss%3Aword@127.0.0.1:{sink.port}"
        assert deliver(make_settings(mail_url=url), message_for()) == [None]
        wrong = f"smtp://mailer:nope@127.0.0.1:{sink.port}"
        settings = make_settings(mail_url=wrong, mail_timeout_seconds=5.0)
        [failure] = deliver(settings, message_for())
    finally:
        sink.stop()
    assert len(sink.messages) == 1
    assert isinstance(failure, DeliveryError) and failure.permanent is False
    assert failure.smtp_code == 535
    assert "nope" not in str(failure)


# TLS and AUTH against a real server: a throwaway CA signed the sink's 127.0.0.1 certificate.
LOGINS = {"digest": "s3cret", "lab+relay@paperwire.test": "p@ss:w0rd/%"}


@contextmanager
def running(sink: SmtpSink) -> Iterator[SmtpSink]:
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def starttls_sink(tls_certificates: TlsCertificates) -> Iterator[SmtpSink]:
    """A submission-style relay: STARTTLS before MAIL, AUTH offered only once under TLS."""
    sink = SmtpSink(
        smtp_kwargs={
            "tls_context": tls_certificates.server_context(),
            "require_starttls": True,
            "authenticator": accept_logins(LOGINS),
            "auth_require_tls": True,
        }
    )
    with running(sink):
        yield sink


@pytest.fixture
def smtps_sink(tls_certificates: TlsCertificates) -> Iterator[SmtpSink]:
    """An implicit-TLS relay (port 465 style): TLS from the first byte."""
    sink = SmtpSink(
        implicit_tls=tls_certificates.server_context(),
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this whole session is TLS.
        smtp_kwargs={"authenticator": accept_logins(LOGINS), "auth_require_tls": False},
    )
    with running(sink):
        yield sink


@pytest.fixture(params=["starttls", "smtps"])
def tls_sink(request: pytest.FixtureRequest) -> SmtpSink:
    """Each TLS flavour in turn."""
    sink = request.getfixturevalue(f"{request.param}_sink")
    assert isinstance(sink, SmtpSink)
    return sink


def tls_url(sink: SmtpSink, cafile: Path | None, userinfo: str = "") -> str:
    """The sink's URL, with `userinfo` ("user:pass@"), ?starttls=1 if it is not smtps://,
    and the CA file to trust."""
    scheme, rest = sink.url.split("://", 1)
    options = ["starttls=1"] if scheme == "smtp" else []
    if cafile is not None:
        options.append(f"cafile={cafile}")
    query = f"?{'&'.join(options)}" if options else ""
    return f"{scheme}://{userinfo}{rest}{query}"


def tls_settings(url: str) -> Settings:
    # Short: a failure must show up as an error well within the test's patience, never a hang.
    return make_settings(mail_url=url, mail_timeout_seconds=3.0)


def test_starttls_delivers_and_the_sink_sees_tls(
    starttls_sink: SmtpSink, tls_certificates: TlsCertificates
) -> None:
    url = tls_url(starttls_sink, tls_certificates.ca_file)
    assert url.startswith("smtp://127.0.0.1:") and "?starttls=1&cafile=/" in url
    assert deliver(tls_settings(url), message_for()) == [None]
    [received] = starttls_sink.messages  # the sink refuses MAIL before STARTTLS (530)
    assert received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert received.rcpt_tos == ("alice@example.org",)
    assert received.login is None
    # EHLO is sent again after STARTTLS; it is still one session, and named by the mail domain.
    assert starttls_sink.ehlo_hostnames == ["paperwire.test"]


def test_smtps_delivers_over_tls_from_the_first_byte(
    smtps_sink: SmtpSink, tls_certificates: TlsCertificates
) -> None:
    url = tls_url(smtps_sink, tls_certificates.ca_file)
    assert url.startswith("smtps://127.0.0.1:") and "?cafile=/" in url
    assert deliver(tls_settings(url), message_for()) == [None]
    [received] = smtps_sink.messages
    assert received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert smtps_sink.session_count == 1


def test_one_tls_connection_serves_many_messages(
    tls_sink: SmtpSink, tls_certificates: TlsCertificates
) -> None:
    messages = [message_for(subscriber_id=n, email=f"s{n}@example.org") for n in range(4)]
    settings = tls_settings(tls_url(tls_sink, tls_certificates.ca_file))
    assert deliver(settings, *messages) == [None] * 4
    assert tls_sink.session_count == 1
    assert [m.rcpt_tos for m in tls_sink.messages] == [(f"s{n}@example.org",) for n in range(4)]
    assert {(m.session_id, m.tls_version is not None) for m in tls_sink.messages} == {(0, True)}


def test_it_reconnects_over_tls_after_the_server_closed_the_connection(
    tls_sink: SmtpSink, tls_certificates: TlsCertificates
) -> None:
    async def body(transport: MailTransport) -> None:
        await transport.send(message_for(1, "a@example.org"))
        tls_sink.disconnect_all()
        await transport.send(message_for(2, "b@example.org"))

    with_transport(tls_settings(tls_url(tls_sink, tls_certificates.ca_file)), body)
    assert [m.rcpt_tos for m in tls_sink.messages] == [("a@example.org",), ("b@example.org",)]
    assert [m.session_id for m in tls_sink.messages] == [0, 1]
    assert all(m.tls_version is not None for m in tls_sink.messages)


@pytest.mark.parametrize("trusted", ["system CAs", "an unrelated CA"])
def test_the_relay_certificate_is_verified(
    tls_sink: SmtpSink, tls_certificates: TlsCertificates, trusted: str
) -> None:
    cafile = None if trusted == "system CAs" else tls_certificates.other_ca_file
    [failure] = deliver(tls_settings(tls_url(tls_sink, cafile)), message_for())
    assert isinstance(failure, DeliveryError)
    assert failure.permanent is False  # a configuration to fix, not an undeliverable message
    # The verification error itself, not a timeout: the client gave up at the handshake.
    assert "TLS certificate verify failed (unable to get local issuer certificate)" in str(failure)
    assert ("needs cafile=" in str(failure)) is (cafile is None)
    assert tls_sink.messages == []


def test_plain_smtp_never_upgrades_even_when_starttls_is_offered(
    tls_certificates: TlsCertificates,
) -> None:
    sink = SmtpSink(smtp_kwargs={"tls_context": tls_certificates.server_context()})
    with running(sink):
        assert deliver(sink_settings(sink), message_for()) == [None]
    [received] = sink.messages
    assert received.tls_version is None


def test_a_relay_requiring_starttls_refuses_plain_smtp_transiently(
    starttls_sink: SmtpSink,
) -> None:
    [failure] = deliver(tls_settings(starttls_sink.url), message_for())
    assert isinstance(failure, DeliveryError)
    assert failure.smtp_code == 530 and failure.permanent is False
    assert "STARTTLS" in str(failure)
    assert starttls_sink.messages == []


@pytest.mark.parametrize(
    ("userinfo", "login"),
    [
        ("digest:s3cret@", "digest"),
        ("lab%2Brelay%40paperwire.test:p%40ss%3Aw0rd%2F%25@", "lab+relay@paperwire.test"),
    ],
)
def test_it_logs_in_over_tls(
    tls_sink: SmtpSink, tls_certificates: TlsCertificates, userinfo: str, login: str
) -> None:
    url = tls_url(tls_sink, tls_certificates.ca_file, userinfo=userinfo)
    outcomes = deliver(tls_settings(url), message_for(), message_for(2, "b@example.org"))
    assert outcomes == [None, None]
    assert [(m.login, m.tls_version is not None) for m in tls_sink.messages] == [(login, True)] * 2
    assert tls_sink.session_count == 1  # logged in once for both messages


def test_a_refused_login_is_a_transient_authentication_error(
    tls_sink: SmtpSink, tls_certificates: TlsCertificates
) -> None:
    url = tls_url(tls_sink, tls_certificates.ca_file, userinfo="digest:wr0ng-pw@")
    [failure] = deliver(tls_settings(url), message_for())
    assert isinstance(failure, DeliveryError)
    # Transient: the password is this service's configuration, not a fault of the message.
    assert failure.permanent is False and failure.smtp_code == 535
    assert "authentication as 'digest' refused (535" in str(failure)
    assert "wr0ng-pw" not in str(failure)
    assert tls_sink.messages == []


def test_credentials_are_not_offered_before_starttls(starttls_sink: SmtpSink) -> None:
    # No ?starttls=1: the client must not upgrade by itself, so the relay never offers AUTH.
    url = starttls_sink.url.replace("smtp://", "smtp://digest:s3cret@")
    [failure] = deliver(tls_settings(url), message_for())
    assert isinstance(failure, DeliveryError) and failure.permanent is False
    assert "AUTH extension is not supported" in str(failure)
    assert starttls_sink.messages == []


def test_a_tls_mismatch_fails_within_the_timeout(smtp_sink: SmtpSink, smtps_sink: SmtpSink) -> None:
    # smtps:// to a plain server: the handshake fails on the server's plain-text greeting.
    plain_port = smtp_sink.url.rsplit(":", 1)[1]
    [failure] = deliver(tls_settings(f"smtps://127.0.0.1:{plain_port}"), message_for())
    assert isinstance(failure, DeliveryError) and failure.permanent is False
    # smtp:// to an implicit-TLS server: both sides wait for the other; the timeout ends it.
    settings = make_settings(
        mail_url=smtps_sink.url.replace("smtps", "smtp"), mail_timeout_seconds=0.5
    )
    [failure] = deliver(settings, message_for())
    assert isinstance(failure, DeliveryError) and failure.permanent is False
    assert "Timed out" in str(failure)
    assert smtp_sink.messages == [] and smtps_sink.messages == []


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_an_unusable_ca_file_is_a_configuration_error(tmp_path: Path, content: str | None) -> None:
    cafile = tmp_path / "ca.pem"
    if content is not None:
        cafile.write_text(content)
    # Refused when the transport is made, before any connection: port 1 is never tried.
    settings = make_settings(mail_url=f"smtps://127.0.0.1:1?cafile={cafile}")
    with pytest.raises(ValueError, match=re.escape(f"mail_url cafile '{cafile}' cannot be loaded")):
        deliver(settings, message_for())


def test_hostile_paper_data_reaches_the_sink_with_headers_intact(smtp_sink: SmtpSink) -> None:
    papers = [make_paper(id=f"p{i}", title=title) for i, title in enumerate(HOSTILE_TITLES)]
    digest = make_digest(papers, why="Why\r\nBcc: evil@x.test <script>")
    message = compose_digest(digest, settings=make_settings(), now=NOW)
    assert deliver(sink_settings(smtp_sink), message) == [None]
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ("alice@example.org",)
    assert "Bcc" not in received.message
    assert max(len(line) for line in received.raw.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.test", ("mail.test", 25, False, False, None, None)),
        ("smtp://mail.test:1025", ("mail.test", 1025, False, False, None, None)),
        ("smtp://mail.test?starttls=1", ("mail.test", 587, False, True, None, None)),
        ("smtp://u:p%2Fw@mail.test:2525?starttls=1", ("mail.test", 2525, False, True, "u", "p/w")),
        ("smtps://mail.test", ("mail.test", 465, True, False, None, None)),
        ("SMTPS://u@[::1]:4650", ("::1", 4650, True, False, "u", None)),
        ("smtp://a%2Bb:p%40s@m.test?starttls=1", ("m.test", 587, False, True, "a+b", "p@s")),
    ],
)  # fmt: skip
def test_smtp_urls_are_understood(url: str, expected: tuple[object, ...]) -> None:
    config = smtp_config(url, timeout=3.0, local_hostname="paperwire.test")
    assert isinstance(config, SmtpConfig)
    got = (config.hostname, config.port, config.use_tls, config.start_tls)
    assert (*got, config.username, config.password) == expected
    assert (config.timeout, config.local_hostname, config.cafile) == (3.0, "paperwire.test", None)


@pytest.mark.parametrize(
    ("url", "cafile"),
    [
        ("smtp://mail.test?starttls=1&cafile=/etc/paperwire/ca.pem", "/etc/paperwire/ca.pem"),
        ("smtps://mail.test?cafile=%2Fsrv%2Flab%20ca.pem", "/srv/lab ca.pem"),
        ("smtps://mail.test?cafile=relay-ca.pem", "relay-ca.pem"),
    ],
)
def test_a_private_ca_file_is_understood(url: str, cafile: str) -> None:
    config = smtp_config(url, timeout=3.0, local_hostname="paperwire.test")
    assert config.cafile == Path(cafile)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("smtp://mail.test:port", "invalid port"),
        ("smtp://:25", "no host"),
        ("smtp://mail.test/path", "no path"),
        ("smtp://mail.test?tls=1", r"unknown option\(s\) tls; the options are starttls and cafile"),
        ("smtps://mail.test?cafile=ca.pem&verify=0", r"unknown option\(s\) verify;"),
        ("smtp://mail.test?starttls=maybe", "starttls must be"),
        ("smtps://mail.test?starttls=1", "already TLS"),
        ("smtp://mail.test?cafile=/etc/ca.pem", "cafile applies to TLS only"),
        ("smtp://mail.test?starttls=0&cafile=/etc/ca.pem", "cafile applies to TLS only"),
        ("smtps://mail.test?cafile=", "cafile needs a path"),
    ],
)
def test_unclear_smtp_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        smtp_config(url, timeout=3.0, local_hostname="paperwire.test")


@pytest.mark.parametrize(
    "url", ["http://mail.test", "mail.test:25", "lmtp://mail.test", "smtp+ssl://u:secret@mail.test"]
)
def test_an_unknown_scheme_is_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported mail_url") as caught:
        deliver(make_settings(mail_url=url))
    assert "secret" not in str(caught.value)


def test_outbox_paths_are_relative_unless_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/tmp")
    assert outbox_path("file://var/outbox") == Path("/tmp/var/outbox")
    assert outbox_path("file:///srv/outbox") == Path("/srv/outbox")
    with pytest.raises(ValueError, match="names no folder"):
        outbox_path("file://")


def test_is_permanent_follows_the_reply_class() -> None:
    codes = (421, 451, 452, 530, 538, 550, 552, 553, 554)
    assert [is_permanent(code) for code in codes] == [
        False,
        False,
        False,
        False,
        False,
        True,
        False,
        True,
        True,
    ]


def outbox_settings(folder: Path) -> Settings:
    return make_settings(mail_url=f"file://{folder}")


def read_eml(path: Path) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_outbox_keeps_each_message_as_an_eml_file(tmp_path: Path) -> None:
    sent = message_for()
    assert deliver(outbox_settings(tmp_path), sent) == [None]
    [eml] = tmp_path.glob("*.eml")
    assert eml.name.startswith("digest-2026-11-25-42-")
    assert eml.read_bytes() == sent.data
    stored = read_eml(eml)
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe"):
        assert str(stored[header]) == str(sent.as_email_message()[header])
    html = eml.with_suffix(".html").read_text("utf-8")
    sent_html = sent.as_email_message().get_body(preferencelist=("html",))
    assert isinstance(sent_html, EmailMessage)
    assert html == sent_html.get_content()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_resending_a_message_id_replaces_its_file(tmp_path: Path) -> None:
    first, again = message_for(), message_for()
    other = message_for(subscriber_id=43, email="bob@example.org")
    assert deliver(outbox_settings(tmp_path), first, again, other) == [None, None, None]
    assert len(list(tmp_path.glob("*.eml"))) == 2
    assert len(list(tmp_path.glob("*.html"))) == 3  # two messages and the index


def test_the_outbox_index_lists_and_links_every_message(tmp_path: Path) -> None:
    hostile = make_digest([make_paper(title="<script>alert(1)</script>")], subscriber_id=7)
    messages = [message_for(), compose_digest(hostile, settings=make_settings(), now=NOW)]
    deliver(outbox_settings(tmp_path), messages[0])
    deliver(outbox_settings(tmp_path), messages[1])  # a later run still lists the first
    index = (tmp_path / "index.html").read_text("utf-8")
    for eml in tmp_path.glob("*.eml"):
        assert f'href="{eml.name}"' in index
        assert f'src="{eml.with_suffix(".html").name}"' in index
    assert "2 messages" in index
    assert "alice@example.org" in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index and "<script>" not in index
    assert "2026-11-25 07:00" in index


def test_the_outbox_refuses_a_message_without_recipients(tmp_path: Path) -> None:
    message = render_digest(make_digest(), settings=make_settings(), now=NOW)
    del message["To"]
    mail = OutgoingMail.from_message(message)
    assert mail.recipients == ()
    [failure] = deliver(outbox_settings(tmp_path), mail)
    assert isinstance(failure, DeliveryError) and failure.permanent
    assert "no recipients" in str(failure)
    assert list(tmp_path.glob("*.eml")) == []


@pytest.mark.parametrize(
    ("sender", "recipients", "error"),
    [("", ("alice@example.org",), "exactly one From"), ("d@x.test", (), "no recipients")],
)
def test_smtp_refuses_an_incomplete_envelope_before_connecting(
    smtp_sink: SmtpSink, sender: str, recipients: tuple[str, ...], error: str
) -> None:
    mail = OutgoingMail(
        sender=sender, recipients=recipients, message_id="", data=message_for().data
    )
    [failure] = deliver(sink_settings(smtp_sink), mail)
    assert isinstance(failure, DeliveryError) and failure.permanent
    assert error in str(failure)
    assert smtp_sink.session_count == 0


def test_any_email_message_can_be_sent_through_from_message(smtp_sink: SmtpSink) -> None:
    message = EmailMessage()
    message["From"] = "Paperwire <digest@paperwire.test>"
    message["To"] = "alice@example.org"
    message["Bcc"] = "audit@paperwire.test"
    message["Subject"] = "Grüße"
    message.set_content("Hello from a message built elsewhere.\n")
    assert deliver(sink_settings(smtp_sink), OutgoingMail.from_message(message)) == [None]
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ("alice@example.org", "audit@paperwire.test")
    assert "Bcc" not in received.message
    assert received.message["Subject"] == "Grüße"


@pytest.mark.parametrize(
    ("verb", "fault"),
    [
        (DATA_START, RESET),  # reset right after the 354: not a byte of the message left
        (DATA_START, RESET_MID_DATA),
        ("DATA", RESET),  # reset instead of a reply to the final dot: not taken either
        ("DATA", "421 4.3.2 shutting down"),  # an answer, not silence: nothing is in doubt
    ],
)
def test_a_message_the_relay_did_not_take_goes_again_at_once_on_a_new_connection(
    smtp_sink: SmtpSink, verb: str, fault: str
) -> None:
    smtp_sink.fail_next(verb, fault)
    outcomes = deliver(sink_settings(smtp_sink), message_for(1), message_for(2, "b@example.org"))
    assert outcomes == [None, None]
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("alice@example.org",), ("b@example.org",)]
    assert smtp_sink.session_count == 2


def test_lines_starting_with_a_dot_arrive_as_written(smtp_sink: SmtpSink) -> None:
    message = EmailMessage()
    message["From"] = "digest@paperwire.test"
    message["To"] = "alice@example.org"
    message["Subject"] = "dots"
    body = ".starts with a dot\n..two dots\n.\nbare CR\rand LF\nend without a line end"
    message.set_content(body, cte="8bit")
    assert deliver(sink_settings(smtp_sink), OutgoingMail.from_message(message)) == [None]
    [received] = smtp_sink.messages
    text = received.message.get_content().replace("\r\n", "\n")
    assert text.startswith(".starts with a dot\n..two dots\n.\nbare CR\nand LF\n")
    assert text.rstrip("\n").endswith("end without a line end")
