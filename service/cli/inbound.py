"""`paperwire inbound` and `paperwire inbox [show ID]`: the receiver of bounces, complaints and
mailed unsubscribes, and the messages it kept for the operator because they changed nothing.

The messages kept are anybody's writing: what is printed of them is stripped of control
characters, so that none can move the cursor or retitle the terminal."""

import re
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from service.cli.common import counted, open_store, out, shorten
from service.errors import InvalidInput

# Every control character but the line feed and the tab.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
DEFAULT_LISTED = 50
MAX_LISTED = 500

app = typer.Typer(
    help="Messages `paperwire inbound` kept because they changed nothing.",
    invoke_without_command=True,
)


def inbound(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on; the inbound_host setting.")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on; the inbound_port setting."),
    ] = None,
) -> None:
    """Receive bounces, complaints and mailed unsubscribes: the MX of the bounce domain."""
    import asyncio
    import logging
    import signal

    from service.inbound.receiver import serve_until_stopped
    from service.settings import get_settings

    settings = get_settings()
    # Logging is set up for every command (service.cli.app), as text or JSON lines. One line
    # per message from the receiver; not aiosmtpd's line per command, nor flufl.bounce's per
    # detector and its traceback of a detector's error, which the receiver notes with the
    # message it keeps.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

    def listening(bound_host: str, bound_port: int) -> None:
        out.print(f"listening on smtp://{bound_host}:{bound_port}", markup=False)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop_signal, stop.set)
        await serve_until_stopped(
            store,
            settings,
            host=host or settings.inbound_host,
            port=port or settings.inbound_port,
            stop=stop,
            on_listening=listening,
        )

    with open_store(settings) as store:
        # A store without the schema fails here, in one line, not at the first message.
        store.inbound_messages(limit=1)
        try:
            asyncio.run(run())
        except OSError as exc:
            raise InvalidInput(f"cannot listen: {exc.strerror or exc}") from exc
    out.print("stopped")


@app.callback()
def inbox(
    context: typer.Context,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LISTED, help="How many, newest first.")
    ] = DEFAULT_LISTED,
) -> None:
    """Messages kept because they changed nothing (`paperwire inbox show ID` prints one)."""
    if context.invoked_subcommand is not None:
        return
    with open_store() as store:
        messages = store.inbound_messages(limit=limit)
    table = Table("id", "received (UTC)", "from", "to", "subject", "note", "bytes")
    for message in messages:
        # Text, not markup: a subject may hold "[bold]" or "[/x]".
        table.add_row(
            str(message.id),
            f"{message.received_at:%Y-%m-%d %H:%M}",
            Text(printable(shorten(message.mail_from or "<>", 40))),
            Text(printable(shorten(message.rcpt_to, 40))),
            Text(printable(shorten(message.subject, 40))),
            Text(printable(shorten(message.note, 60))),
            str(message.size),
        )
    table.title = f"{counted(len(messages), 'message')} kept"
    out.print(table)


@app.command("show")
def inbox_show(message_id: Annotated[int, typer.Argument(help="Its id, from the list.")]) -> None:
    """One kept message: what it is, then the message as received (its first 64 KiB)."""
    with open_store() as store:
        message = store.get_inbound_message(message_id)
    if message is None:
        raise InvalidInput(f"no kept message has id {message_id}: see `paperwire inbox`")
    for name, value in (
        ("received", f"{message.received_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("from", message.mail_from or "<>"),
        ("to", message.rcpt_to),
        ("subject", message.subject),
        ("note", message.note),
        ("size", f"{message.size} bytes"),
    ):
        out.print(f"{name}: {printable(value)}", markup=False, highlight=False)
    out.print("")
    text = message.data.decode("utf-8", "replace").replace("\r\n", "\n")
    out.print(printable(text), markup=False, highlight=False, soft_wrap=True)
    if len(message.data) < message.size:
        out.print(f"… ({message.size - len(message.data)} more bytes not kept)", markup=False)


def printable(text: str) -> str:
    return UNPRINTABLE.sub("\N{REPLACEMENT CHARACTER}", text)
