"""What building and handing over one digest costs, by the hand-written way and by the library's.

Run from the project root:

    .venv/bin/python -m bench.mail_build [--digests 300]

The figures behind three pieces of hand-written code in `service/mail/`:
- `wire.multipart_alternative`, the MIME writer, against the stdlib's `EmailMessage` (its
  default encoding, and 8bit) built from the same text and HTML and serialized with `as_bytes`;
- `inlining.InlineCss`, CSS moved into the template once, against running css-inline over each
  rendered message of a template that keeps its `<style>`;
- `smtp._data_section`, against the two regular-expression passes aiosmtplib's `data()` makes
  over every message (line ends, leading dots).

The first row is the whole of `compose.compose_digest` (its links, 👍/👎 ones included, both
parts, the MIME bytes), for scale.

Each figure is CPU time (`time.process_time`) per digest, the best of five rounds over
`--digests` realistic digests (10 papers of the sample corpus, as a subscriber gets them).
"""

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import css_inline
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.mail.compose import compose_digest, digest_context, digest_links
from service.mail.smtp import _data_section
from service.mail.wire import MailHeaders, multipart_alternative
from service.models import Digest, ScoredPaper, Subscriber, SubscriptionStatus
from service.settings import TEMPLATES_DIR, Settings
from service.sources.jsonl import read_papers_file
from service.templating import template_environment
from tests.support.factories import make_settings

SAMPLE_PAPERS = TEMPLATES_DIR.parent / "service" / "sample_data" / "papers.jsonl"
ROUNDS = 5
NOW = datetime(2026, 11, 25, 7, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digests", type=int, default=300, help="digests per round")
    arguments = parser.parse_args()
    settings = make_settings()
    digests = [_digest(number) for number in range(arguments.digests)]
    contexts = [_context(digest, settings) for digest in digests]
    texts = [_render("email/digest.txt", context) for context in contexts]
    htmls = [_render("email/digest.html", context) for context in contexts]
    plain_env = _environment_without_inlining()
    wires = [
        multipart_alternative(_headers(c), text=t, html=h)
        for c, t, h in zip(contexts, texts, htmls, strict=True)
    ]

    def whole_compose(i: int) -> object:
        return compose_digest(digests[i], settings=settings, now=NOW)

    def pre_inlined(i: int) -> object:
        return _render("email/digest.html", contexts[i])

    def inlined_each_time(i: int) -> object:
        return css_inline.inline(plain_env.get_template("email/digest.html").render(contexts[i]))

    def by_hand(i: int) -> object:
        return multipart_alternative(_headers(contexts[i]), text=texts[i], html=htmls[i])

    def stdlib(i: int) -> object:
        return _stdlib_message(contexts[i], texts[i], htmls[i], cte=None)

    def stdlib_8bit(i: int) -> object:
        return _stdlib_message(contexts[i], texts[i], htmls[i], cte="8bit")

    def data_section(i: int) -> object:
        return _data_section(wires[i])

    def aiosmtplib_passes(i: int) -> object:
        return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(wires[i])) + b".\r\n"

    rows: list[tuple[str, Callable[[int], object]]] = [
        ("compose_digest: links, render, MIME", whole_compose),
        ("render HTML, CSS pre-inlined (InlineCss)", pre_inlined),
        ("render HTML with <style>, then css-inline", inlined_each_time),
        ("MIME: wire.multipart_alternative", by_hand),
        ("MIME: stdlib EmailMessage, default encoding", stdlib),
        ("MIME: stdlib EmailMessage, 8bit", stdlib_8bit),
        ("DATA: smtp._data_section", data_section),
        ("DATA: aiosmtplib's line-end and dot passes", aiosmtplib_passes),
    ]
    size = sum(len(wire) for wire in wires) / len(wires)
    print(f"{arguments.digests} digests a round, {size / 1024:.1f} KiB each on the wire")
    print(f"{'what':<48} {'ms per digest':>14}")
    for label, work in rows:
        print(f"{label:<48} {_best_ms(work, arguments.digests):>14.3f}")


def _best_ms(work: Callable[[int], object], count: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for index in range(count):
            work(index)
        best = min(best, time.process_time() - started)
    return best / count * 1000


def _digest(number: int) -> Digest:
    papers = read_papers_file(SAMPLE_PAPERS).papers
    chosen = [papers[(number * 7 + offset) % len(papers)] for offset in range(10)]
    subscriber = Subscriber(
        id=number + 1,
        email=f"reader{number}@example.org",
        status=SubscriptionStatus.CONFIRMED,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        link_key=f"key-{number}",
    )
    scored = tuple(
        ScoredPaper(paper=p, score=1.0, relevance=0.5, trending=0.5, why="Matches “diffusion”.")
        for p in chosen
    )
    return Digest(subscriber=subscriber, issue_date=NOW.date(), papers=scored)


def _context(digest: Digest, settings: Settings) -> dict[str, object]:
    links = digest_links(
        digest.subscriber,
        digest.issue_date,
        settings=settings,
        now=NOW,
        paper_ids=[scored.paper.id for scored in digest.papers],
    )
    return digest_context(digest, links=links) | {"to": digest.subscriber.email}


def _render(name: str, context: dict[str, object]) -> str:
    return template_environment().get_template(name).render(context)


def _environment_without_inlining() -> Environment:
    """The templates as they are written, `<style>` and all, for inlining each message."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _headers(context: dict[str, object]) -> MailHeaders:
    headers = MailHeaders()
    headers.add_mailbox("From", display_name="Paperwire", addr_spec="digest@paperwire.test")
    headers.add("To", str(context["to"]))
    headers.add_text("Subject", str(context["subject"]))
    headers.add("Date", "Wed, 25 Nov 2026 07:00:00 +0000")
    headers.add("Message-ID", "<digest-2026-11-25-1@paperwire.test>")
    return headers


def _stdlib_message(context: dict[str, object], text: str, html: str, *, cte: str | None) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = "Paperwire <digest@paperwire.test>"
    message["To"] = str(context["to"])
    message["Subject"] = str(context["subject"])
    message["Date"] = "Wed, 25 Nov 2026 07:00:00 +0000"
    message["Message-ID"] = "<digest-2026-11-25-1@paperwire.test>"
    if cte is None:
        message.set_content(text)
        message.add_alternative(html, subtype="html")
    else:
        message.set_content(text, cte=cte)
        message.add_alternative(html, subtype="html", cte=cte)
    return message.as_bytes()


if __name__ == "__main__":
    main()
