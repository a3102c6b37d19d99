from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pytest

from service.models import Interests, Paper, ScoredPaper
from service.ranking import MIN_RELEVANCE, CorpusStats, build_corpus_stats, rank_papers

TODAY = date(2025, 6, 2)

# Background papers so document frequencies look like a real corpus: "learning", "model" and
# "neural" are everywhere; "diffusion", "sheaf" and "forgetting" are not.
BACKGROUND = tuple(
    {"title": title, "abstract": abstract}
    for title, abstract in [
        ("Learning to rank with neural models", "We train a neural model for learning to rank."),
        ("Scaling laws of language models", "Larger models trained on more data improve."),
        ("Robust learning under label noise", "A neural learning method robust to noisy labels."),
        ("Efficient transformers", "We make transformer models faster with sparse attention."),
        ("Vision models for robotics", "Neural models map camera images to robot actions."),
        ("Reinforcement learning for games", "An agent learns strategies by trial and error."),
    ]
)


def make_paper(**overrides: Any) -> Paper:
    fields: dict[str, Any] = {
        "id": "paper-alice",
        "title": "A study of something",
        "abstract": "We study something and report what we found.",
        "published_date": TODAY,
    }
    fields.update(overrides)
    return Paper(**fields)


def interests_in(*keywords: str, text: str = "") -> Interests:
    return Interests(keywords=keywords, text=text)


def background_papers() -> list[Paper]:
    return [make_paper(id=f"background-{index}", **text) for index, text in enumerate(BACKGROUND)]


def stats_for(candidates: Sequence[Paper]) -> CorpusStats:
    return build_corpus_stats([*background_papers(), *candidates])


def rank(
    candidates: Sequence[Paper],
    interests: Interests,
    *,
    trending_weight: float = 0.0,
    limit: int = 10,
    exclude_ids: frozenset[str] = frozenset(),
    stats: CorpusStats | None = None,
) -> list[ScoredPaper]:
    return rank_papers(
        candidates,
        interests,
        stats=stats or stats_for(candidates),
        trending_weight=trending_weight,
        limit=limit,
        today=TODAY,
        exclude_ids=exclude_ids,
    )


def ids(ranked: Sequence[ScoredPaper]) -> list[str]:
    return [scored.paper.id for scored in ranked]


DIFFUSION = interests_in("diffusion models")

INTACT = make_paper(
    id="intact",
    title="Faster sampling for diffusion models",
    abstract="We speed up sampling of diffusion models with a learned step schedule.",
)
SCATTERED = make_paper(
    id="scattered",
    title="Faster sampling for models of diffusion",
    abstract="We speed up sampling of models where heat diffusion appears, with a schedule.",
)
# Shares only the common word "models" with the interest "diffusion models".
OFF_TOPIC = make_paper(
    id="off-topic",
    title="Language models for spreadsheet formulas",
    abstract="We collect spreadsheet formulas written by accountants and test models on them.",
    upvotes=5000,
)


def test_intact_phrase_beats_the_same_words_scattered() -> None:
    ranked = rank([SCATTERED, INTACT], DIFFUSION)

    assert ids(ranked) == ["intact", "scattered"]
    assert ranked[0].relevance > ranked[1].relevance * 1.2


@pytest.mark.parametrize("trending_weight", [0.0, 0.5, 1.0])
def test_off_topic_paper_is_left_out_however_much_it_trends(trending_weight: float) -> None:
    ranked = rank([OFF_TOPIC, INTACT], DIFFUSION, trending_weight=trending_weight)

    assert ids(ranked) == ["intact"]
    assert all(scored.relevance >= MIN_RELEVANCE for scored in ranked)


RELEVANT_QUIET = make_paper(
    id="relevant-quiet",
    title="Consistency distillation of diffusion models",
    abstract="Diffusion models distilled into one-step diffusion models generators.",
    upvotes=1,
)
RELEVANT_LOUD = make_paper(
    id="relevant-loud",
    title="A video generation system",
    abstract="Our system generates videos; its decoder is one of several diffusion models.",
    upvotes=400,
)


@pytest.mark.parametrize(
    ("trending_weight", "expected"),
    [
        (0.0, ["relevant-quiet", "relevant-loud"]),
        (1.0, ["relevant-loud", "relevant-quiet"]),
    ],
)
def test_trending_weight_moves_from_relevance_to_trending(
    trending_weight: float, expected: list[str]
) -> None:
    ranked = rank([RELEVANT_LOUD, RELEVANT_QUIET], DIFFUSION, trending_weight=trending_weight)

    assert ids(ranked) == expected


def test_score_blends_relevance_and_trending_by_the_weight() -> None:
    (scored,) = rank([RELEVANT_LOUD], DIFFUSION, trending_weight=0.25)

    assert 0.0 < scored.relevance <= 1.0
    assert 0.0 < scored.trending <= 1.0
    assert scored.score == pytest.approx(0.75 * scored.relevance + 0.25 * scored.trending)


def test_empty_interests_give_the_trending_digest() -> None:
    papers = [
        make_paper(id="unvoted-last-week", published_date=TODAY - timedelta(days=6)),
        make_paper(id="popular", upvotes=120, published_date=TODAY - timedelta(days=2)),
        make_paper(id="unvoted-today", published_date=TODAY),
        make_paper(id="liked", upvotes=8, published_date=TODAY - timedelta(days=2)),
        make_paper(id="undated", published_date=None),
        OFF_TOPIC,
    ]

    ranked = rank(papers, interests_in(), trending_weight=0.0)

    # Papers nobody voted on yet follow by date, the undated last.
    assert ids(ranked) == [
        "off-topic",
        "popular",
        "liked",
        "unvoted-today",
        "unvoted-last-week",
        "undated",
    ]
    assert all(scored.relevance == 0.0 for scored in ranked)


def test_interests_of_only_stop_words_count_as_empty() -> None:
    ranked = rank([INTACT, OFF_TOPIC], interests_in("the", "and of"))

    assert ids(ranked) == ["off-topic", "intact"]


def test_already_sent_papers_are_excluded() -> None:
    ranked = rank([INTACT, SCATTERED], DIFFUSION, exclude_ids=frozenset({"intact"}))

    assert ids(ranked) == ["scattered"]


def test_ties_are_broken_by_paper_id() -> None:
    twins = [
        make_paper(id=paper_id, title=INTACT.title, abstract=INTACT.abstract)
        for paper_id in ["charlie", "alice", "bob"]
    ]

    ranked = rank(twins, DIFFUSION, trending_weight=0.3)

    assert ids(ranked) == ["alice", "bob", "charlie"]
    assert len({scored.score for scored in ranked}) == 1


def test_limit_keeps_the_best() -> None:
    ranked = rank([SCATTERED, INTACT, RELEVANT_QUIET], DIFFUSION, limit=2)

    assert ids(ranked) == ["relevant-quiet", "intact"]


@pytest.mark.parametrize(
    ("paper", "interests", "expected_why"),
    [
        (
            make_paper(id="p", title=INTACT.title, abstract=INTACT.abstract, upvotes=53),
            DIFFUSION,
            "Matches “diffusion models” · trending: 53 upvotes",
        ),
        (
            INTACT,
            interests_in("Diffusion Models", "fast sampling"),
            "Matches “Diffusion Models”; words: sampling",
        ),
        (
            SCATTERED.model_copy(update={"comments": 1, "github_stars": 1200}),
            DIFFUSION,
            "Matches words: diffusion, models · trending: 1 comment, 1,200 GitHub stars",
        ),
    ],
)
def test_why_line_names_matches_as_typed_and_known_signals(
    paper: Paper, interests: Interests, expected_why: str
) -> None:
    (scored,) = rank([paper], interests)

    assert scored.why == expected_why


def test_why_line_stays_short_with_many_matches() -> None:
    keywords = tuple(f"diffusion models variant{index}" for index in range(12))
    abstract = " ".join(f"diffusion models variant{index}." for index in range(12))
    paper = make_paper(title="Many diffusion models", abstract=abstract, upvotes=7)

    (scored,) = rank([paper], interests_in("diffusion models", *keywords))

    assert len(scored.why) <= 120
    assert scored.why.startswith("Matches “")
    assert scored.why.endswith(" · trending: 7 upvotes")
    assert len(scored.matched_terms) == 13


def test_why_line_stays_short_with_a_long_keyword_and_every_signal() -> None:
    keyword = "diffusion models " + " ".join(f"qualifier{index}" for index in range(7))
    paper = make_paper(
        abstract=f"We study {keyword}.", upvotes=12345, comments=6789, github_stars=123456
    )

    (scored,) = rank([paper], interests_in(keyword))

    assert len(scored.why) <= 120
    assert scored.why.startswith("Matches “diffusion models qualifier0")
    assert scored.why.endswith(" · trending: 12,345 upvotes, 6,789 comments, 123,456 GitHub stars")
    assert scored.matched_terms == (keyword,)


def test_matched_terms_list_intact_phrases_then_words() -> None:
    interests = interests_in("diffusion models", "sampling schedule")
    schedules = make_paper(id="schedules", title="Train schedules", abstract="A schedule.")
    stats = build_corpus_stats([*background_papers(), INTACT, schedules])

    (scored,) = rank([INTACT], interests, stats=stats)

    # The rarer word first: "schedule" is in two papers of the corpus, "sampling" in one.
    assert scored.matched_terms == ("diffusion models", "sampling", "schedule")


@pytest.mark.parametrize(
    ("keyword", "text"),
    [
        ("score-based models", "We study score based models."),
        ("GNNs", "A GNN for molecules."),
        ("recommender systems", "Systems that recommend items."),
    ],
)
def test_keywords_match_after_stemming_and_splitting(keyword: str, text: str) -> None:
    paper = make_paper(title="A paper", abstract=text)

    ranked = rank([paper], interests_in(keyword))

    assert ids(ranked) == ["paper-alice"]


def test_rare_words_in_the_corpus_weigh_more_than_common_ones() -> None:
    common = make_paper(id="common", title="A neural method", abstract="A neural method.")
    rare = make_paper(id="rare", title="A sheaf method", abstract="A sheaf method.")
    interests = interests_in("neural", "sheaf")

    ranked = rank([common, rare], interests)

    assert ids(ranked) == ["rare", "common"]


def test_statistics_come_from_the_corpus_given() -> None:
    common = make_paper(id="common", title="A neural method", abstract="A neural method.")
    rare = make_paper(id="rare", title="A sheaf method", abstract="A sheaf method.")
    interests = interests_in("neural", "sheaf")
    sheaf_corpus = [
        make_paper(id=f"sheaf-{index}", title="Sheaf theory", abstract="Sheaves and sheaf maps.")
        for index in range(10)
    ]

    ranked = rank([common, rare], interests, stats=build_corpus_stats([common, *sheaf_corpus]))

    # Now "sheaf" is the common word, so the "neural" paper comes first (if "sheaf" counts at all).
    assert ids(ranked)[0] == "common"


def test_corpus_stats_count_documents_not_occurrences() -> None:
    stats = build_corpus_stats(
        [
            make_paper(id="a", title="Sheaf sheaf sheaf", abstract="Sheaf."),
            make_paper(id="b", title="Graph", abstract="Graphs of sheaf maps."),
            make_paper(id="c", title="Graph", abstract="Another graph."),
        ]
    )

    assert stats.doc_count == 3
    assert stats.document_frequencies["sheaf"] == 2
    assert stats.document_frequencies["graph"] == 2
    assert stats.avg_title_length == pytest.approx(5 / 3)


@pytest.mark.parametrize("trending_weight", [-0.1, 1.5])
def test_trending_weight_outside_zero_to_one_is_refused(trending_weight: float) -> None:
    with pytest.raises(ValueError, match="trending_weight"):
        rank([INTACT], DIFFUSION, trending_weight=trending_weight)
