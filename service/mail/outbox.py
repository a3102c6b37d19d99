"""The outbox folder: each message as a .eml file (and its HTML part), with an index page to
read them in a browser; for development and demos."""

import asyncio
import hashlib
import os
import re
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.mail.sending import BeforeData, check_envelope
from service.mail.wire import OutgoingMail
from service.templating import template_environment


def outbox_path(url: str) -> Path:
    """file://var/outbox is relative to the current folder, file:///srv/outbox absolute."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"mail_url {url!r}: a file:// URL takes no query")
    raw = unquote(parts.netloc + parts.path)
    if not raw:
        raise ValueError(f"mail_url {url!r} names no folder: use file://var/outbox")
    return Path(raw).absolute()


class OutboxTransport:
    """Writes each message into a folder as `<stem>.eml` plus `<stem>.html` (its HTML part),
    and on close an `index.html` listing every message there, to read in a browser."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, mail: OutgoingMail, *, before_data: BeforeData | None = None) -> None:
        check_envelope(mail)  # the same checks as SMTP, so the outbox fails where SMTP would
        if before_data is not None:
            before_data()
        await asyncio.to_thread(self._write, mail)

    async def close(self) -> None:
        await asyncio.to_thread(write_outbox_index, self.directory)

    def _write(self, mail: OutgoingMail) -> None:
        stem = outbox_stem(mail.message_id, mail.data)
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.directory / f"{stem}.eml", mail.data)
        html = mail.as_email_message().get_body(preferencelist=("html",))
        if html is not None:
            _write_atomic(self.directory / f"{stem}.html", html.get_content().encode("utf-8"))


def outbox_stem(message_id: str, data: bytes) -> str:
    """A file name stem that depends only on the Message-ID, so a resend replaces its file."""
    if not message_id:
        return "message." + hashlib.sha256(data).hexdigest()[:12]
    local = message_id.strip("<>").partition("@")[0]
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", local)[:80].strip("_") or "message"
    # Different ids can look alike once made safe; the hash keeps their files apart.
    return f"{readable}.{hashlib.sha256(message_id.encode('utf-8')).hexdigest()[:8]}"


@dataclass(frozen=True)
class OutboxEntry:
    eml_name: str
    html_name: str | None
    sent_at: datetime
    recipient: str
    subject: str


def write_outbox_index(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    entries = sorted(
        (_outbox_entry(path) for path in directory.glob("*.eml")),
        key=lambda entry: (entry.sent_at, entry.eml_name),
        reverse=True,
    )
    page = template_environment().get_template("outbox/index.html").render(entries=entries)
    _write_atomic(directory / "index.html", page.encode("utf-8"))


def _outbox_entry(path: Path) -> OutboxEntry:
    with path.open("rb") as file:
        headers = BytesParser(policy=policy.default).parse(file, headersonly=True)
    sent_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    with suppress(AttributeError, TypeError, ValueError):
        dated = headers["Date"].datetime
        if isinstance(dated, datetime):
            sent_at = dated.astimezone(UTC) if dated.tzinfo else dated.replace(tzinfo=UTC)
    html = path.with_suffix(".html")
    return OutboxEntry(
        eml_name=path.name,
        html_name=html.name if html.exists() else None,
        sent_at=sent_at,
        recipient=str(headers.get("To", "")),
        subject=str(headers.get("Subject", "")),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
