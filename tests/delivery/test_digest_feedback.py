"""What a reader teaches the ranking reaches their next issues: store → rank with their votes,
authors and exclusions → render → SMTP sink, on both backends."""

import asyncio
from datetime import date, datetime, timedelta
from email.message import EmailMessage

import pytest

from service.delivery.pipeline import RunSummary, preview_digest, run_day
from service.models import DeliveryStatus, Interests, Paper, Vote
from service.settings import Settings
from service.store import Store
from tests.support.factories import BACKGROUND_PAPERS, NOW, TODAY, add_subscriber, make_paper
from tests.support.smtp_sink import SmtpSink

TOMORROW = TODAY + timedelta(days=1)
PROTEIN_WORDS = ("protein", "folding", "residues", "amino", "acids", "contacts")


def protein_paper(paper_id: str, number: int, **overrides: object) -> Paper:
    """Papers of one field: each holds five of the field's six words."""
    own = [PROTEIN_WORDS[(number + offset) % len(PROTEIN_WORDS)] for offset in range(5)]
    fields: dict[str, object] = {
        "id": paper_id,
        "title": f"{own[0].capitalize()} {own[1]} from {own[2]}",
        "abstract": f"We predict {own[3]} and {own[4]} of a {own[0]} from its {own[2]}.",
        "upvotes": None,
    }
    fields.update(overrides)
    return make_paper(**fields)


# Stored weeks ago, so the field's words are known to the corpus (a word describes a liked
# paper only when five stored papers hold it); never candidates.
OLDER_PROTEIN_PAPERS = [protein_paper(f"2409.0000{n}", n) for n in range(6)]
LIKED = protein_paper("2511.00010", 0, title="Protein folding from residue contacts")
NEIGHBOUR = protein_paper("2511.00020", 1, title="Amino acid contacts for protein folding")
DIFFUSION = [
    make_paper(id="2511.00001", title="Consistency models for fast diffusion sampling"),
    make_paper(
        id="2511.00002",
        title="Discrete diffusion models for text",
        abstract="Diffusion models over discrete tokens generate text in parallel.",
    ),
    make_paper(id="2511.00021", title="Diffusion models that sample in one step"),
]


def hot_weather_paper(paper_id: str) -> Paper:
    """A paper on the topic left out that would otherwise top the digest."""
    return make_paper(
        id=paper_id,
        title="Diffusion models for weather forecasting",
        abstract="Weather forecasting with diffusion models beats numerical prediction.",
        upvotes=5_000,
    )


@pytest.fixture
def smtp_settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return settings.model_copy(update={"mail_url": smtp_sink.url})


def run(store: Store, settings: Settings, day: date) -> RunSummary:
    at = datetime.combine(day, NOW.timetz())
    return asyncio.run(run_day(store, issue_date=day, settings=settings, now=lambda: at))


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def sent_ids(store: Store, subscriber_id: int, day: date) -> tuple[str, ...]:
    delivery = store.get_delivery(subscriber_id, day)
    assert delivery is not None and delivery.status is DeliveryStatus.SENT
    return delivery.paper_ids


def test_a_liked_papers_neighbour_comes_next_and_a_topic_left_out_never(
    store: Store, smtp_settings: Settings, smtp_sink: SmtpSink
) -> None:
    store.upsert_papers([*BACKGROUND_PAPERS, *OLDER_PROTEIN_PAPERS], now=NOW - timedelta(days=60))
    store.upsert_papers(
        [*DIFFUSION[:2], LIKED, hot_weather_paper("2511.00003")], now=NOW - timedelta(hours=3)
    )
    interests = Interests(keywords=("diffusion models",), excluded=("weather forecasting",))
    ada = add_subscriber(store, "ada@example.org", interests=interests)
    bob = add_subscriber(store, "bob@example.org")  # diffusion models, nothing left out

    run(store, smtp_settings, TODAY)
    # Ada likes a paper she found elsewhere; a paper never stored is ignored.
    store.set_paper_vote(ada.id, LIKED.id, Vote.LIKE)
    store.set_paper_vote(ada.id, "2501.99999", Vote.LIKE)
    store.upsert_papers(
        [NEIGHBOUR, DIFFUSION[2], hot_weather_paper("2511.00022")], now=NOW + timedelta(hours=12)
    )
    summary = run(store, smtp_settings, TOMORROW)

    assert summary.outcomes == {DeliveryStatus.SENT: 2}
    assert set(sent_ids(store, ada.id, TODAY)) == {"2511.00001", "2511.00002"}
    assert set(sent_ids(store, ada.id, TOMORROW)) == {NEIGHBOUR.id, "2511.00021"}
    # Bob liked nothing and left nothing out: no protein folding, the weather papers first.
    assert sent_ids(store, bob.id, TODAY)[0] == "2511.00003"
    assert sent_ids(store, bob.id, TOMORROW) == ("2511.00022", "2511.00021")
    ada_issue = [m.message for m in smtp_sink.messages if m.rcpt_tos == (ada.email,)][-1]
    text = text_part(ada_issue)
    assert "Amino acid contacts for protein folding" in text
    assert "Like \u2018Protein folding from residue contacts\u2019 you liked" in text
    assert "weather" not in text.lower()


def test_the_preview_ranks_with_the_readers_votes(store: Store, smtp_settings: Settings) -> None:
    store.upsert_papers([*BACKGROUND_PAPERS, *OLDER_PROTEIN_PAPERS], now=NOW - timedelta(days=60))
    store.upsert_papers([LIKED, NEIGHBOUR, *DIFFUSION], now=NOW - timedelta(hours=3))
    ada = add_subscriber(store, "ada@example.org", interests=Interests(liked=(LIKED.id,)))

    digest, message = preview_digest(store, ada, TODAY, settings=smtp_settings)

    assert [scored.paper.id for scored in digest.papers][:1] == [NEIGHBOUR.id]
    assert LIKED.id not in {scored.paper.id for scored in digest.papers}
    assert message is not None
