"""What a subscriber has already had the chance to get from the week's papers (what was sent,
and whatever was first seen up to their last issue, to the second), and ranking only the rest."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from service.delivery.day_papers import DayPapers, voted_papers
from service.models import Interests, Paper, ReadingHistory, ScoredPaper, Vote
from service.ranking import PreparedCandidates, build_corpus_stats, rank_prepared
from service.sources.jsonl import read_papers_file
from service.store import Store
from tests.support.factories import NOW, TODAY, add_subscriber, make_paper

LAST_SENT = NOW - timedelta(days=1)


def week_papers() -> DayPapers:
    # Out of order on purpose: the store lists them newest first, a test need not.
    papers = [
        make_paper(id="at-last-issue", first_seen_at=LAST_SENT),
        make_paper(id="two-days-before", first_seen_at=LAST_SENT - timedelta(days=2)),
        make_paper(id="a-second-after", first_seen_at=LAST_SENT + timedelta(seconds=1)),
        make_paper(id="a-second-before", first_seen_at=LAST_SENT - timedelta(seconds=1)),
        make_paper(id="today", first_seen_at=NOW - timedelta(hours=1)),
        make_paper(id="undated", first_seen_at=None),
    ]
    stats = build_corpus_stats(papers)
    return DayPapers(recent=papers, stats=stats, today=TODAY)


def test_papers_first_seen_up_to_the_last_issue_count_as_seen() -> None:
    history = ReadingHistory(last_sent_at=LAST_SENT, sent_paper_ids=frozenset({"today"}))
    assert week_papers().seen_by(history) == {
        "today",
        "at-last-issue",
        "two-days-before",
        "a-second-before",
    }


def test_without_an_earlier_issue_only_what_was_sent_counts() -> None:
    history = ReadingHistory(last_sent_at=None, sent_paper_ids=frozenset({"undated"}))
    assert week_papers().seen_by(history) == {"undated"}


def test_an_issue_before_every_paper_leaves_them_all_new() -> None:
    history = ReadingHistory(last_sent_at=LAST_SENT - timedelta(days=3))
    assert week_papers().seen_by(history) == frozenset()


SAMPLE_PAPERS = Path(__file__).parents[2] / "service" / "sample_data" / "papers.jsonl"

# Interests of every kind a ranking takes: phrases, a sentence, authors followed, topics left
# out, liked papers, and none (the trending digest).
INTERESTS = [
    Interests(keywords=("diffusion models", "video generation")),
    Interests(text="Agents that learn from trial and error."),
    Interests(keywords=("language models",), excluded=("reinforcement learning",)),
    Interests(authors=("Yann LeCun", "Percy Liang"), keywords=("graph neural networks",)),
    Interests(),
]


def a_week_of_sample_papers() -> list[Paper]:
    """The sample papers spread over a week, some first seen at the same fetch."""
    papers = read_papers_file(SAMPLE_PAPERS).papers
    return [
        paper.model_copy(update={"first_seen_at": NOW - timedelta(hours=(number % 40) * 4)})
        for number, paper in enumerate(papers)
    ]


def ranked(
    interests: Interests,
    candidates: PreparedCandidates,
    exclude: frozenset[str],
    liked: list[Paper],
) -> list[ScoredPaper]:
    return rank_prepared(
        candidates,
        interests,
        trending_weight=0.3,
        limit=15,
        exclude_ids=exclude | frozenset(interests.liked),
        liked=liked,
    )


@pytest.mark.parametrize("days_since_last_issue", [None, 1, 3, 8])
def test_ranking_what_is_new_ranks_as_the_week_with_the_seen_left_out(
    days_since_last_issue: int | None,
) -> None:
    papers = a_week_of_sample_papers()
    day = DayPapers(recent=papers, stats=build_corpus_stats(papers), today=TODAY)
    last_sent = (
        None if days_since_last_issue is None else NOW - timedelta(days=days_since_last_issue)
    )
    yesterday = NOW - timedelta(hours=30)
    recent_ids = [paper.id for paper in papers if (paper.first_seen_at or NOW) > yesterday]
    history = ReadingHistory(last_sent_at=last_sent, sent_paper_ids=frozenset(recent_ids[::7]))
    for interests in [*INTERESTS, INTERESTS[0].model_copy(update={"liked": (papers[5].id,)})]:
        liked = [papers[5]] if interests.liked else []
        new_only = ranked(interests, day.candidates_for(history), history.sent_paper_ids, liked)
        whole_week = ranked(interests, day.prepared, day.seen_by(history), liked)
        assert new_only == whole_week
        assert new_only or not interests.keywords
    if days_since_last_issue == 1:
        # The point of it: a reader sent an issue yesterday is ranked from a day of papers.
        assert len(day.candidates_for(history).papers) < len(day.prepared.papers) / 3


def test_voted_papers_are_read_once_a_day_per_process(sqlite_store: Store) -> None:
    liked = make_paper(id="2511.00077", title="A liked paper", first_seen_at=NOW)
    sqlite_store.upsert_papers([liked, make_paper(id="2511.00078")], now=NOW)
    alice = add_subscriber(sqlite_store)
    sqlite_store.set_paper_vote(alice.id, liked.id, Vote.LIKE)
    sqlite_store.set_paper_vote(alice.id, "2511.00078", Vote.DISLIKE)
    alice = sqlite_store.get_subscribers([alice.id])[alice.id]
    day = DayPapers(recent=[], stats=build_corpus_stats([]), today=TODAY)

    assert set(voted_papers(sqlite_store, [alice], day)) == {liked.id, "2511.00078"}
    with sqlite_store.engine.begin() as connection:
        connection.execute(text("DELETE FROM papers WHERE id = '2511.00077'"))

    # A later batch of the same day takes them from the day's papers, not the store…
    assert voted_papers(sqlite_store, [alice], day)[liked.id].title == "A liked paper"
    # …and without the day's papers, the store answers.
    assert set(voted_papers(sqlite_store, [alice])) == {"2511.00078"}
