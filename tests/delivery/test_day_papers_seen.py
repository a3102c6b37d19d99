"""What a subscriber has already had the chance to get from the week's papers: what was sent,
and whatever was first seen up to their last issue, to the second."""

from datetime import timedelta

from service.delivery.day_papers import DayPapers
from service.models import ReadingHistory
from service.ranking import build_corpus_stats, prepare_candidates
from tests.support.factories import NOW, TODAY, make_paper

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
    return DayPapers(recent=papers, prepared=prepare_candidates(papers, stats=stats, today=TODAY))


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
