"""A day's digest end to end: store → rank → render → SMTP sink → ledger, on both backends."""

import asyncio
from datetime import date, datetime, timedelta
from email.message import EmailMessage

import pytest

from service.delivery.day_papers import LOOKBACK, DayPapersCache
from service.delivery.pipeline import (
    NotRecorded,
    RunSummary,
    preview_digest,
    retry_delay,
    run_day,
)
from service.models import DeliveryStatus, Frequency, Interests
from service.settings import Settings
from service.signup.return_addresses import digest_message_id
from service.store import Store
from tests.support.factories import BACKGROUND_PAPERS, NOW, TODAY, add_subscriber, make_paper
from tests.support.smtp_sink import DROP, RESET, SmtpCommand, SmtpSink

DIFFUSION_PAPERS = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(
        id="2511.00002",
        title="Discrete diffusion models for text",
        abstract="Diffusion models over discrete tokens generate text in parallel.",
        upvotes=3,
    ),
]
OFF_TOPIC = make_paper(
    id="2511.00003",
    title="A survey of database indexing",
    abstract="B-trees and LSM trees compared on write-heavy workloads.",
    upvotes=400,
)


@pytest.fixture(autouse=True)
def background_papers(store: Store) -> None:
    store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=60))


@pytest.fixture
def smtp_settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return settings.model_copy(update={"mail_url": smtp_sink.url})


def run(
    store: Store,
    settings: Settings,
    day: date = TODAY,
    *,
    dry_run: bool = False,
    later: timedelta = timedelta(0),
) -> RunSummary:
    at = datetime.combine(day, NOW.timetz()) + later
    return asyncio.run(
        run_day(store, issue_date=day, settings=settings, now=lambda: at, dry_run=dry_run)
    )


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_each_due_subscriber_gets_one_ranked_digest(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers([*DIFFUSION_PAPERS, OFF_TOPIC], now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    grace = add_subscriber(store, "grace@example.org", interests=Interests())
    add_subscriber(store, "bob@example.org", interests=Interests(keywords=("zymurgy",)))

    summary = run(store, smtp_settings)

    assert summary.outcomes == {DeliveryStatus.SENT: 2, DeliveryStatus.SKIPPED: 1}
    by_recipient = {m.rcpt_tos: m for m in smtp_sink.messages}
    assert set(by_recipient) == {("ada@example.org",), ("grace@example.org",)}
    assert smtp_sink.session_count == 1  # one connection served the whole run

    ada_delivery = store.get_delivery(ada.id, TODAY)
    assert ada_delivery is not None and ada_delivery.status is DeliveryStatus.SENT
    assert set(ada_delivery.paper_ids) == {"2511.00001", "2511.00002"}  # off-topic never sent
    received = by_recipient[("ada@example.org",)].message
    assert received["Message-ID"] == ada_delivery.message_id
    assert "Discrete diffusion models for text" in text_part(received)
    # With no interests, the plain trending digest: the most upvoted paper comes first.
    grace_delivery = store.get_delivery(grace.id, TODAY)
    assert grace_delivery is not None and grace_delivery.paper_ids[0] == OFF_TOPIC.id
    bob_delivery = store.get_delivery(3, TODAY)
    assert bob_delivery is not None and bob_delivery.status is DeliveryStatus.SKIPPED


def test_a_rerun_of_the_same_day_sends_nothing_new(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    add_subscriber(store, "ada@example.org")
    run(store, smtp_settings)

    again = run(store, smtp_settings)

    assert again.outcomes == {NotRecorded.ALREADY_HANDLED: 1}
    assert len(smtp_sink.messages) == 1


def test_the_next_issue_brings_only_papers_not_sent_before(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    run(store, smtp_settings)
    tomorrow = TODAY + timedelta(days=1)
    new_paper = make_paper(id="2511.00009", title="Diffusion models that sample in one step")
    store.upsert_papers([new_paper, *DIFFUSION_PAPERS], now=NOW + timedelta(hours=12))

    run(store, smtp_settings, tomorrow)
    day_after = run(store, smtp_settings, tomorrow + timedelta(days=1))

    second = store.get_delivery(ada.id, tomorrow)
    assert second is not None and second.paper_ids == ("2511.00009",)
    assert day_after.outcomes == {
        DeliveryStatus.SKIPPED: 1
    }  # nothing new: no mail, recorded as such
    assert len(smtp_sink.messages) == 2


def test_papers_older_than_the_lookback_are_not_news(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - LOOKBACK - timedelta(days=1))
    add_subscriber(store, "ada@example.org")
    assert run(store, smtp_settings).outcomes == {DeliveryStatus.SKIPPED: 1}
    assert smtp_sink.messages == []


def test_weekly_subscribers_get_an_issue_on_their_weekday_only(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    add_subscriber(
        store, "ada@example.org", frequency=Frequency.WEEKLY, weekday=(TODAY.weekday() + 1) % 7
    )
    assert run(store, smtp_settings).total == 0
    assert run(store, smtp_settings, TODAY + timedelta(days=1)).outcomes == {DeliveryStatus.SENT: 1}


def test_a_transient_refusal_is_retried_on_the_next_run(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    bob = add_subscriber(store, "bob@example.org")
    smtp_sink.fail_next("RCPT", "451 4.3.0 mailbox busy, try later")

    first = run(store, smtp_settings)

    assert first.outcomes == {DeliveryStatus.RETRY: 1, DeliveryStatus.SENT: 1}
    retry = store.get_delivery(ada.id, TODAY)
    assert retry is not None and retry.status is DeliveryStatus.RETRY
    assert "451" in (retry.last_error or "")
    assert [m.rcpt_tos for m in smtp_sink.messages] == [(bob.email,)]  # no 503 for the next one

    too_soon = run(store, smtp_settings, later=timedelta(seconds=10))
    assert too_soon.outcomes == {NotRecorded.ALREADY_HANDLED: 2}  # backoff: not yet
    second = run(store, smtp_settings, later=timedelta(hours=1))

    assert second.outcomes == {DeliveryStatus.SENT: 1, NotRecorded.ALREADY_HANDLED: 1}
    delivered = store.get_delivery(ada.id, TODAY)
    assert delivered is not None
    assert (delivered.status, delivered.attempts) == (DeliveryStatus.SENT, 2)
    assert sorted(m.rcpt_tos for m in smtp_sink.messages) == [(ada.email,), (bob.email,)]


def test_a_permanent_refusal_is_recorded_and_never_retried(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    smtp_sink.fail_next("RCPT", "550 5.1.1 no such user")

    assert run(store, smtp_settings).outcomes == {DeliveryStatus.REFUSED: 1}
    assert run(store, smtp_settings).outcomes == {NotRecorded.ALREADY_HANDLED: 1}
    refused = store.get_delivery(ada.id, TODAY)
    assert refused is not None and refused.status is DeliveryStatus.REFUSED
    assert smtp_sink.messages == []


def test_an_unreachable_relay_leaves_issues_to_retry(store: Store, settings: Settings) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    closed_port = settings.model_copy(
        update={"mail_url": "smtp://127.0.0.1:9", "mail_timeout_seconds": 2.0}
    )
    assert run(store, closed_port).outcomes == {DeliveryStatus.RETRY: 1}
    delivery = store.get_delivery(ada.id, TODAY)
    assert delivery is not None and delivery.status is DeliveryStatus.RETRY


def test_dry_run_and_preview_neither_send_nor_record(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")

    assert run(store, smtp_settings, dry_run=True).outcomes == {NotRecorded.WOULD_SEND: 1}
    digest, message = preview_digest(store, ada, TODAY, settings=smtp_settings)

    assert len(digest.papers) == 2
    assert message is not None and message["To"] == "ada@example.org"
    assert smtp_sink.messages == []
    assert store.list_deliveries() == []


def test_an_unsendable_address_fails_alone(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    broken = add_subscriber(store, "broken\r\nBcc: victim@example.org")
    add_subscriber(store, "ada@example.org")

    assert run(store, smtp_settings).outcomes == {DeliveryStatus.REFUSED: 1, DeliveryStatus.SENT: 1}
    refused = store.get_delivery(broken.id, TODAY)
    assert refused is not None and refused.status is DeliveryStatus.REFUSED
    assert [m.rcpt_tos for m in smtp_sink.messages] == [("ada@example.org",)]


def test_hostile_titles_and_interests_reach_the_inbox_harmless(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    hostile_title = 'Diffusion models <script>alert("x")</script>\r\nBcc: victim@example.org'
    store.upsert_papers(
        [make_paper(id="2511.00066", title=hostile_title, abstract="Diffusion models & <b>.")],
        now=NOW - timedelta(hours=3),
    )
    keyword = '<img src=x onerror="alert(1)"> diffusion models'
    add_subscriber(
        store, "ada@example.org", interests=Interests(keywords=(keyword, "diffusion models"))
    )

    assert run(store, smtp_settings).outcomes == {DeliveryStatus.SENT: 1}

    (received,) = smtp_sink.messages
    assert received.rcpt_tos == ("ada@example.org",)
    headers = received.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in headers and received.message["Bcc"] is None
    html_part = received.message.get_body(("html",))
    assert html_part is not None
    html = str(html_part.get_content())
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html
    assert "Bcc: victim@example.org" not in text_part(received.message).splitlines()[0]


def test_retry_delays_grow_exponentially_with_jitter_up_to_a_cap(settings: Settings) -> None:
    delays = [retry_delay(7, TODAY, attempt, settings=settings) for attempt in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay.total_seconds() <= ceiling
    assert delays[-1] <= timedelta(seconds=settings.retry_max_seconds)
    assert delays == [retry_delay(7, TODAY, a, settings=settings) for a in range(1, 10)]
    assert retry_delay(8, TODAY, 1, settings=settings) != delays[0]  # spread across issues


def test_a_relay_that_resets_during_data_gets_the_same_message_again(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    smtp_sink.fail_next("DATA", RESET)

    # A relay that resets the connection has not taken the message: it goes again at once,
    # on a new connection. Twice in a row, and the issue waits for a retry.
    assert run(store, smtp_settings).outcomes == {DeliveryStatus.SENT: 1}
    delivery = store.get_delivery(ada.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    (received,) = smtp_sink.messages
    assert received.message["Message-ID"] == delivery.message_id
    assert smtp_sink.session_count == 2

    bob = add_subscriber(store, "bob@example.org")
    smtp_sink.fail_next("DATA", RESET)
    smtp_sink.fail_next("DATA", RESET)
    assert run(store, smtp_settings).outcomes == {
        DeliveryStatus.RETRY: 1,
        NotRecorded.ALREADY_HANDLED: 1,
    }
    later = run(store, smtp_settings, later=timedelta(hours=1)).outcomes
    assert later == {DeliveryStatus.SENT: 1, NotRecorded.ALREADY_HANDLED: 1}
    delivery = store.get_delivery(bob.id, TODAY)
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)


@pytest.mark.parametrize("resends", [0, 1])
def test_a_connection_closed_after_the_final_dot_is_resent_later_while_resends_are_left(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink, resends: int
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org")
    settings = smtp_settings.model_copy(
        update={"in_doubt_resends": resends, "in_doubt_resend_after_seconds": 1800.0}
    )
    smtp_sink.fail_next("DATA", DROP)  # the whole message arrived; no reply, orderly close

    first = run(store, settings)
    too_soon = run(store, settings, later=timedelta(minutes=29))
    later = run(store, settings, later=timedelta(minutes=31))

    delivery = store.get_delivery(ada.id, TODAY)
    assert delivery is not None
    assert first.outcomes == {DeliveryStatus.IN_DOUBT: 1}
    assert too_soon.outcomes == {NotRecorded.ALREADY_HANDLED: 1}
    assert delivery.in_doubt_count == 1
    assert delivery.message_id == digest_message_id(
        store.get_subscriber(ada.id), TODAY, settings=settings
    )
    if resends:
        assert later.outcomes == {DeliveryStatus.SENT: 1}
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)
        (copy,) = smtp_sink.messages
        assert copy.message["Message-ID"] == delivery.message_id  # a receiver can drop it
    else:
        assert later.outcomes == {NotRecorded.ALREADY_HANDLED: 1}  # never resent by itself
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.IN_DOUBT, 1)
        assert smtp_sink.messages == []


def test_a_relay_that_caps_messages_per_connection_gets_them_all_without_503(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW - timedelta(hours=3))
    for number in range(12):
        add_subscriber(store, f"reader{number}@example.org")
    per_session: dict[int, int] = {}

    def five_per_connection(command: SmtpCommand) -> str | None:
        if command.verb != "MAIL":
            return None
        per_session[command.session_id] = per_session.get(command.session_id, 0) + 1
        return "421 4.7.0 too many messages" if per_session[command.session_id] > 5 else None

    smtp_sink.fault = five_per_connection
    uncapped = run(store, smtp_settings)
    # A 421 reconnects and resends at once; a 503 would have failed an issue.
    assert uncapped.outcomes == {DeliveryStatus.SENT: 12}

    capped = smtp_settings.model_copy(update={"mail_max_messages_per_connection": 5})
    for number in range(12, 24):
        add_subscriber(store, f"reader{number}@example.org")
    before = smtp_sink.session_count
    assert run(store, capped).outcomes == {DeliveryStatus.SENT: 12, NotRecorded.ALREADY_HANDLED: 12}
    assert smtp_sink.session_count - before == 3  # 5 + 5 + 2, never refused


def test_a_worker_analyses_the_day_once_until_the_papers_change(store: Store) -> None:
    cache = DayPapersCache()
    store.upsert_papers(DIFFUSION_PAPERS, now=NOW)
    first = cache.get(store, TODAY)
    assert cache.get(store, TODAY) is first
    assert {p.id for p in first.recent} == {p.id for p in DIFFUSION_PAPERS}

    # A new paper, and later a refreshed trending signal: each makes a new analysis.
    store.upsert_papers([OFF_TOPIC], now=NOW + timedelta(minutes=1))
    second = cache.get(store, TODAY)
    assert second is not first and OFF_TOPIC.id in {p.id for p in second.recent}
    store.upsert_papers(
        [OFF_TOPIC.model_copy(update={"upvotes": 999})], now=NOW + timedelta(minutes=2)
    )
    third = cache.get(store, TODAY)
    assert third is not second
    assert {p.id: p.upvotes for p in third.recent}[OFF_TOPIC.id] == 999
