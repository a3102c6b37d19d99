"""An issue's sections: each profile ranked with its own interests and number of papers, each
paper once, in the section where it ranks best."""

from datetime import timedelta

import pytest

from service.delivery.day_papers import build_digest, load_day_papers
from service.delivery.sections import Ranker, pick_sections
from service.models import (
    InterestProfile,
    Interests,
    ReadingHistory,
    ScoredPaper,
    Subscriber,
    SubscriptionStatus,
)
from service.store import Store
from tests.support.factories import BACKGROUND_PAPERS, NOW, TODAY, make_paper


def scored(paper_id: str) -> ScoredPaper:
    return ScoredPaper(
        paper=make_paper(id=paper_id), score=1.0, relevance=1.0, trending=0.0, why=""
    )


def ranker(rankings: list[str], asked: list[tuple[int, int]]) -> Ranker:
    """Rankings written as strings of one-letter paper ids, best first."""

    def rank(number: int, limit: int) -> list[ScoredPaper]:
        asked.append((number, limit))
        return [scored(paper_id) for paper_id in rankings[number][:limit]]

    return rank


@pytest.mark.parametrize(
    ("rankings", "sizes", "expected"),
    [
        # One profile: its ranking as it is.
        (["abcd"], [3], ["abc"]),
        # No overlap: each its own.
        (["ab", "cd"], [2, 2], ["ab", "cd"]),
        # "b" is 2nd for the first profile and 1st for the second: it goes to the second,
        # and the first fills its place from further down.
        (["abc", "bd"], [2, 2], ["ac", "bd"]),
        # Equal positions: the earlier profile.
        (["ab", "ac"], [2, 2], ["ab", "c"]),
        # A full section leaves a paper it would rank lower to the next one.
        (["abx", "yzx"], [2, 3], ["ab", "yzx"]),
        # A profile finding nothing has an empty section.
        (["ab", ""], [2, 2], ["ab", ""]),
        # Everything the second wants, the first ranks better: it gets what is left.
        (["abcde", "abcz"], [3, 3], ["abc", "z"]),
    ],
)
def test_each_paper_goes_where_it_ranks_best(
    rankings: list[str], sizes: list[int], expected: list[str]
) -> None:
    asked: list[tuple[int, int]] = []
    sections = pick_sections(sizes, ranker(rankings, asked))
    assert ["".join(s.paper.id for s in section) for section in sections] == expected
    shown = [s.paper.id for section in sections for s in section]
    assert len(shown) == len(set(shown))


def test_without_overlaps_each_profile_is_ranked_once() -> None:
    asked: list[tuple[int, int]] = []
    pick_sections([2, 3], ranker(["abc", "defg"], asked))
    assert asked == [(0, 2), (1, 3)]


def subscriber_with(*profiles: InterestProfile) -> Subscriber:
    return Subscriber(
        id=1,
        email="alice@example.org",
        status=SubscriptionStatus.CONFIRMED,
        created_at=NOW - timedelta(days=30),
        profiles=profiles,
    )


def test_build_digest_makes_a_section_per_profile_with_its_own_size(sqlite_store: Store) -> None:
    diffusion = [
        make_paper(id=f"2511.0000{n}", title=f"Diffusion models for images {n}", upvotes=None)
        for n in range(4)
    ]
    graphs = [
        make_paper(id=f"2511.0010{n}", title=f"Graph neural networks for molecules {n}")
        for n in range(4)
    ]
    both = make_paper(
        id="2511.00200",
        title="Graph neural networks meet diffusion models",
        abstract="Diffusion models on graphs.",
    )
    sqlite_store.upsert_papers(BACKGROUND_PAPERS, now=NOW - timedelta(days=30))
    sqlite_store.upsert_papers([*diffusion, *graphs, both], now=NOW)
    subscriber = subscriber_with(
        InterestProfile(
            id=7, name="Diffusion", interests=Interests(keywords=("diffusion",)), papers_per_issue=3
        ),
        InterestProfile(
            id=3, name="Graphs", interests=Interests(keywords=("graph neural networks",))
        ),
        InterestProfile(id=9, name="Nothing", interests=Interests(keywords=("zebra finches",))),
    )
    digest = build_digest(
        subscriber,
        load_day_papers(sqlite_store, TODAY),
        issue_date=TODAY,
        history=ReadingHistory(),
        limit=30,
    )
    assert [(s.name, s.profile_id) for s in digest.sections] == [("Diffusion", 7), ("Graphs", 3)]
    assert digest.ranked_for == ("Diffusion", "Graphs", "Nothing")
    first, second = digest.sections
    assert len(first.papers) == 3
    assert {s.paper.id for s in second.papers} <= {p.id for p in [*graphs, both]}
    ids = [s.paper.id for s in digest.papers]
    assert len(ids) == len(set(ids))
    assert both.id in ids
    # The operator's cap bounds every section.
    capped = build_digest(
        subscriber,
        load_day_papers(sqlite_store, TODAY),
        issue_date=TODAY,
        history=ReadingHistory(),
        limit=2,
    )
    assert [len(section.papers) for section in capped.sections] == [2, 2]
