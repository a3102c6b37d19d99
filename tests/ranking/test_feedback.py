"""What a reader teaches the ranking: papers liked and disliked, authors followed, topics left
out; and the why-lines naming the signal that picked each paper."""

from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest

from service.models import Interests, Paper, ScoredPaper
from service.ranking import (
    CorpusStats,
    build_corpus_stats,
    prepare_candidates,
    rank_papers,
    rank_prepared,
)
from service.ranking.explain import MAX_WHY_LENGTH

TODAY = date(2025, 6, 2)
# The curly quotes around a liked paper's title in a why-line.
OPEN, CLOSE = "\u2018", "\u2019"

# Four topics of eight papers each, sharing their topic's words (as papers of one field do) and
# all of them "neural networks": a reader interested in neural networks matches every one.
TOPICS = {
    "protein": ("protein", "folding", "residues", "amino", "acids", "structure"),
    "weather": ("weather", "forecasting", "rainfall", "climate", "storms", "radar"),
    "robot": ("robot", "grasping", "manipulation", "grippers", "tactile", "objects"),
    "speech": ("speech", "recognition", "acoustic", "phonemes", "speakers", "audio"),
}


def make_paper(**overrides: Any) -> Paper:
    fields: dict[str, Any] = {
        "id": "paper",
        "title": "A paper",
        "abstract": "",
        "published_date": TODAY,
    }
    fields.update(overrides)
    return Paper(**fields)


def topic_papers(topic: str) -> list[Paper]:
    words = TOPICS[topic]
    papers = []
    for number in range(8):
        # Each paper uses five of its topic's six words, in turns: neighbours, not copies.
        # (A word describes a liked paper only when five stored papers hold it.)
        own = [words[(number + offset) % len(words)] for offset in range(5)]
        papers.append(
            make_paper(
                id=f"{topic}-{number}",
                title=f"{own[0].capitalize()} and {own[1]} with neural networks",
                abstract=(
                    f"We study {own[0]} {own[1]} and {own[2]}. Neural networks learn "
                    f"{own[3]} from data, and {own[4]} helps."
                ),
            )
        )
    return papers


CANDIDATES = [paper for topic in TOPICS for paper in topic_papers(topic)]
BY_ID = {paper.id: paper for paper in CANDIDATES}
READER = Interests(keywords=("neural networks",))
# Stored papers of other fields, so that "neural networks" says something.
OTHER_FIELDS = ("databases", "compilers", "cryptography", "networking", "economics", "geology")
BACKGROUND = [
    make_paper(id=f"background-{field}-{n}", title=f"A study of {field}, part {n}")
    for field in OTHER_FIELDS
    for n in range(1, 5)
]


def stats_for(candidates: Sequence[Paper]) -> CorpusStats:
    return build_corpus_stats([*BACKGROUND, *candidates])


def rank(
    interests: Interests,
    *,
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
    candidates: Sequence[Paper] = CANDIDATES,
    trending_weight: float = 0.0,
    limit: int = 10,
) -> list[ScoredPaper]:
    interests = interests.model_copy(update={"liked": tuple(liked), "disliked": tuple(disliked)})
    return rank_papers(
        candidates,
        interests,
        stats=stats_for(candidates),
        trending_weight=trending_weight,
        limit=limit,
        today=TODAY,
        liked=[BY_ID[paper_id] for paper_id in liked],
        disliked=[BY_ID[paper_id] for paper_id in disliked],
    )


def ids(ranked: Sequence[ScoredPaper]) -> list[str]:
    return [scored.paper.id for scored in ranked]


def test_liking_a_paper_ranks_its_near_neighbours_first() -> None:
    before = ids(rank(READER, limit=len(CANDIDATES)))

    after = ids(rank(READER, liked=["speech-0"], limit=5))

    assert set(after) <= {f"speech-{n}" for n in range(1, 8)}
    assert not all(paper.startswith("speech-") for paper in before[:5])


def test_a_liked_or_disliked_paper_is_never_recommended_again() -> None:
    ranked = ids(rank(READER, liked=["protein-0"], disliked=["robot-0"], limit=len(CANDIDATES)))

    assert "protein-0" not in ranked
    assert "robot-0" not in ranked
    assert len(ranked) == len(CANDIDATES) - 2


def test_a_disliked_papers_neighbours_go_down_but_stay() -> None:
    before = {s.paper.id: s for s in rank(READER, limit=len(CANDIDATES))}

    after = {s.paper.id: s for s in rank(READER, disliked=["protein-0"], limit=len(CANDIDATES))}

    def others_above(ranked: list[str], paper_id: str) -> set[str]:
        return {p for p in ranked[: ranked.index(paper_id)] if not p.startswith("protein-")}

    for number in range(1, 8):
        paper_id = f"protein-{number}"
        assert after[paper_id].score < before[paper_id].score
        assert others_above(list(after), paper_id) >= others_above(list(before), paper_id)
    assert any(
        others_above(list(after), f"protein-{n}") > others_above(list(before), f"protein-{n}")
        for n in range(1, 8)
    )
    # Papers on other topics share only the words every paper here has: they lose less.
    drops = {paper_id: before[paper_id].score - after[paper_id].score for paper_id in after}
    neighbours = [drop for paper_id, drop in drops.items() if paper_id.startswith("protein-")]
    others = [drop for paper_id, drop in drops.items() if not paper_id.startswith("protein-")]
    assert min(neighbours) > 2 * max(others)


def test_a_liked_only_profile_gets_the_liked_papers_topic() -> None:
    ranked = rank(Interests(), liked=["speech-0", "speech-1"], limit=6)

    assert {s.paper.id for s in ranked} == {f"speech-{n}" for n in range(2, 8)}
    assert all(
        s.why.startswith(f"Like {OPEN}") and s.why.endswith(f"{CLOSE} you liked") for s in ranked
    )


def test_liked_papers_need_not_be_candidates() -> None:
    old_favourite = make_paper(
        id="old-robot",
        title="Tactile grasping of objects by robot grippers",
        abstract="A robot learns manipulation of objects with tactile grippers.",
    )
    interests = Interests(liked=("old-robot", "never-stored"))

    ranked = rank_papers(
        CANDIDATES,
        interests,
        stats=stats_for([*CANDIDATES, old_favourite]),
        trending_weight=0.0,
        limit=3,
        today=TODAY,
        liked=[old_favourite],
    )

    assert all(s.paper.id.startswith("robot-") for s in ranked)
    assert ranked[0].why.startswith(
        f"Like {OPEN}Tactile grasping of objects by robot grippers{CLOSE}"
    )


@pytest.mark.parametrize("followed", ["J. Müller", "Jürgen Müller", "Jurgen Muller", "MULLER, J"])
def test_a_followed_author_lifts_their_paper(followed: str) -> None:
    by_muller = make_paper(
        id="off-topic-muller",
        title="Database indexing with B-trees",
        abstract="B-trees compared on write-heavy workloads.",
        authors=("Ada Lovelace", "Jürgen Müller"),
    )
    candidates = [*CANDIDATES, by_muller]
    interests = READER.model_copy(update={"authors": (followed,)})

    ranked = rank(interests, candidates=candidates, limit=3)

    assert "off-topic-muller" not in ids(rank(READER, candidates=candidates, limit=50))
    assert ranked[0].paper.id == "off-topic-muller"
    assert ranked[0].why == "By Jürgen Müller you follow"


def test_a_followed_author_lifts_a_paper_in_the_trending_digest() -> None:
    popular = make_paper(id="popular", title="Popular paper", upvotes=500)
    noted = make_paper(id="noted", title="Noted paper", upvotes=5)
    quiet = make_paper(id="quiet", title="Quiet paper", authors=("Grace Hopper",))
    candidates = [popular, noted, quiet]

    ranked = rank(Interests(authors=("g. hopper",)), candidates=candidates)

    assert ids(rank(Interests(), candidates=candidates)) == ["popular", "noted", "quiet"]
    assert ids(ranked) == ["popular", "quiet", "noted"]
    assert ranked[1].why == "By Grace Hopper you follow"
    assert ranked[0].why == "Trending: 500 upvotes"


@pytest.mark.parametrize("trending_weight", [0.0, 0.3, 1.0])
@pytest.mark.parametrize(
    "interests",
    [
        Interests(excluded=("weather forecasting",)),
        Interests(keywords=("neural networks", "weather"), excluded=("Weather forecasting",)),
        Interests(liked=("weather-1",), excluded=("weather forecasting",)),
        Interests(authors=("Jürgen Müller",), excluded=("weather forecasting",)),
    ],
)
def test_an_excluded_topic_never_appears_however_much_it_trends(
    interests: Interests, trending_weight: float
) -> None:
    hot = make_paper(
        id="hot-weather",
        title="Weather forecasting at scale with neural networks",
        abstract="Radar and rainfall data.",
        upvotes=10_000,
        authors=("Jürgen Müller",),
    )
    candidates = [hot, *CANDIDATES]
    liked = [BY_ID[paper_id] for paper_id in interests.liked]

    ranked = rank_papers(
        candidates,
        interests,
        stats=stats_for(candidates),
        trending_weight=trending_weight,
        limit=len(candidates),
        today=TODAY,
        liked=liked,
    )

    assert "hot-weather" not in ids(ranked)


def test_only_the_excluded_phrase_is_left_out() -> None:
    apart = make_paper(
        id="apart", title="Weather data for cities", abstract="Forecasting traffic by the hour."
    )
    near = make_paper(id="near", title="Forecasting the weather", abstract="Sun or rain.")
    plural = make_paper(id="plural", title="Weather forecasts for farmers")

    ranked = rank(
        Interests(excluded=("weather forecasting",)), candidates=[apart, near, plural], limit=5
    )

    assert ids(ranked) == ["apart", "near"]


def test_why_lines_name_the_signal_that_picked_the_paper() -> None:
    long_title = "Protein folding " + "and very long title words " * 8
    liked = make_paper(id="liked", title=long_title, abstract=BY_ID["protein-1"].abstract)
    candidates = [
        *CANDIDATES,
        make_paper(id="popular", title="Unrelated", upvotes=210),
        make_paper(id="by-hopper", title="Unrelated too", authors=("Grace Hopper",)),
    ]
    interests = Interests(
        keywords=("speech recognition",), authors=("Grace Hopper",), liked=("liked",)
    )

    ranked = rank_papers(
        candidates,
        interests,
        stats=stats_for([*candidates, liked]),
        trending_weight=0.0,
        limit=len(candidates),
        today=TODAY,
        liked=[liked],
    )
    trending = rank(Interests(), candidates=candidates, limit=1)

    why = {s.paper.id: s.why for s in ranked}
    assert why["by-hopper"] == "By Grace Hopper you follow"
    assert why["speech-0"].startswith("Matches “speech recognition”")
    liked_line = why["protein-2"]
    assert liked_line.startswith(f"Like {OPEN}Protein folding and very long")
    assert liked_line.endswith(f"…{CLOSE} you liked")
    assert len(liked_line) <= MAX_WHY_LENGTH
    assert trending[0].why == "Trending: 210 upvotes"


def test_batch_ranking_with_votes_matches_ranking_one_by_one() -> None:
    stats = stats_for(CANDIDATES)
    profiles = [
        (READER.model_copy(update={"liked": ("protein-0",)}), ["protein-0"], []),
        (Interests(liked=("robot-1", "speech-2")), ["robot-1", "speech-2"], []),
        (READER.model_copy(update={"disliked": ("weather-3",)}), [], ["weather-3"]),
    ]
    prepared = prepare_candidates(CANDIDATES, stats=stats, today=TODAY)

    # Twice: the second ranking from prepared candidates indexes every stem at once.
    for _ in range(2):
        for interests, liked, disliked in profiles:
            arguments: dict[str, Any] = {
                "trending_weight": 0.3,
                "limit": 7,
                "liked": [BY_ID[i] for i in liked],
                "disliked": [BY_ID[i] for i in disliked],
            }
            alone = rank_papers(CANDIDATES, interests, stats=stats, today=TODAY, **arguments)
            assert rank_prepared(prepared, interests, **arguments) == alone
