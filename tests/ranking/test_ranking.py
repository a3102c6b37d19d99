import random
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.models import DEFAULT_TRENDING_WEIGHT, Interests, Paper, ScoredPaper
from service.ranking import (
    CorpusStats,
    build_corpus_stats,
    prepare_candidates,
    rank_papers,
    rank_prepared,
    relevance_scores,
)
from service.ranking.terms import analyse_paper
from service.ranking.topk import MIN_RELEVANCE, ON_TOPIC_RELEVANCE, blend
from service.sources.jsonl import read_papers_file
from tests.support.factories import draw_title_phrases, title_phrases
from tests.support.ranking_reference import (
    rank_by_reference,
    reference_clauses,
    reference_relevance,
)

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
    on_topic = min(1.0, scored.relevance / ON_TOPIC_RELEVANCE)
    assert scored.score == pytest.approx(
        0.75 * scored.relevance + 0.25 * scored.trending * on_topic
    )


def test_trending_cannot_carry_a_barely_relevant_paper_past_a_clearly_relevant_one() -> None:
    # At the default mix: a paper just past the floor with the most upvotes of the day, against
    # a quiet one half as relevant as a perfect match.
    barely_but_loud = blend(0.15, 1.0, DEFAULT_TRENDING_WEIGHT)
    relevant_but_quiet = blend(ON_TOPIC_RELEVANCE, 0.0, DEFAULT_TRENDING_WEIGHT)
    assert barely_but_loud < relevant_but_quiet
    # Among papers on topic, trending still decides.
    assert blend(0.6, 1.0, DEFAULT_TRENDING_WEIGHT) > blend(0.7, 0.0, DEFAULT_TRENDING_WEIGHT)
    # The slider's "trending" end ranks the papers past the floor by trending alone.
    assert blend(0.15, 0.9, 1.0) == 0.9


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


def test_a_keywords_common_words_found_together_do_not_make_a_paper_relevant() -> None:
    # "neural models" stands intact in the abstract, but the keyword's distinctive word
    # ("evidential") is missing: the pair counts only as much as the words it holds.
    passing = make_paper(
        id="passing",
        title="Ranking spreadsheets",
        abstract="We rank spreadsheet formulas with neural models trained on neural models.",
    )
    whole = make_paper(
        id="whole",
        title="Evidential neural models",
        abstract="Evidential neural models say how sure they are.",
    )

    ranked = rank([passing, whole], interests_in("evidential neural models"))

    assert ids(ranked) == ["whole"]


@pytest.mark.parametrize(
    ("keyword", "other_text"),
    [
        ("continual learning", "Continuous control of a robot arm, learning from pixels."),
        ("experiment design", "Learning from experience: the design of replay buffers."),
    ],
)
def test_words_a_stemmer_conflates_are_kept_apart(keyword: str, other_text: str) -> None:
    own_word = keyword.split()[0]
    own = make_paper(id="own", title="A paper", abstract=f"We study {own_word} systems.")
    other = make_paper(id="other", title="Another paper", abstract=other_text)

    ranked = rank([own, other], interests_in(own_word))

    assert ids(ranked) == ["own"]


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


# The batch API must rank exactly as scoring each paper on its own, straight from the
# definitions (tests/support/ranking_reference.py: the scoring rank_papers did before
# candidates were prepared in batches).

SAMPLE_PAPERS = Path(__file__).parents[2] / "service" / "sample_data" / "papers.jsonl"
# The day after the newest sample paper, so freshness still tells papers apart.
SAMPLE_TODAY = date(2025, 10, 25)


@pytest.fixture(scope="module")
def sample_papers() -> list[Paper]:
    papers = read_papers_file(SAMPLE_PAPERS).papers
    # A paper listed twice counts once, as its first listing.
    relisted = papers[3].model_copy(update={"title": "Diffusion models, relisted", "upvotes": 999})
    return [*papers, relisted]


@pytest.fixture(scope="module")
def sample_stats(sample_papers: list[Paper]) -> CorpusStats:
    return build_corpus_stats(sample_papers)


VARIED_INTERESTS = {
    "one phrase": interests_in("diffusion models"),
    "two phrases": interests_in("graph neural networks", "recommender systems"),
    "long phrase": interests_in("reinforcement learning from human feedback"),
    "common word": interests_in("learning"),
    "rare word": interests_in("hypernetworks"),
    "absent word": interests_in("sheafification"),
    "repeated word": interests_in("learning to learn"),
    "acronyms and hyphens": interests_in("GNNs", "LLMs", "score-based models"),
    "sentence": interests_in(text="Agents that learn from trial and error."),
    "phrases and sentence": interests_in(
        "continual learning", text="Catastrophic forgetting when training neural networks."
    ),
    "many phrases": interests_in(
        "diffusion models",
        "consistency models",
        "vision transformers",
        "mixture of experts",
        "speech recognition",
        "federated learning",
        "preference optimization",
        "robot learning",
    ),
    "empty": interests_in(),
    "stop words only": interests_in("the", "of and"),
}


def assert_same_ranking(actual: Sequence[ScoredPaper], expected: Sequence[ScoredPaper]) -> None:
    assert ids(actual) == ids(expected)
    assert [(s.why, s.matched_terms) for s in actual] == [
        (s.why, s.matched_terms) for s in expected
    ]
    for got, want in zip(actual, expected, strict=True):
        assert got.score == pytest.approx(want.score, rel=0, abs=1e-12)
        assert got.relevance == pytest.approx(want.relevance, rel=0, abs=1e-12)
        assert got.trending == pytest.approx(want.trending, rel=0, abs=1e-12)


@pytest.mark.parametrize("interests", VARIED_INTERESTS.values(), ids=VARIED_INTERESTS.keys())
def test_batch_ranking_matches_scoring_each_paper(
    interests: Interests, sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    prepared = prepare_candidates(sample_papers, stats=sample_stats, today=SAMPLE_TODAY)
    for trending_weight in (0.0, 0.3, 1.0):
        everything = rank_by_reference(
            sample_papers,
            interests,
            stats=sample_stats,
            trending_weight=trending_weight,
            limit=len(sample_papers),
            today=SAMPLE_TODAY,
        )
        # Leaving out the best papers lets the next ones in, as if never candidates.
        sent = frozenset(ids(everything)[:3])
        everything_unsent = [scored for scored in everything if scored.paper.id not in sent]
        for limit in (1, 10, len(sample_papers)):
            ranked = rank_prepared(
                prepared, interests, trending_weight=trending_weight, limit=limit
            )
            assert_same_ranking(ranked, everything[:limit])
            ranked = rank_prepared(
                prepared,
                interests,
                trending_weight=trending_weight,
                limit=limit,
                exclude_ids=sent,
            )
            assert_same_ranking(ranked, everything_unsent[:limit])


def test_rank_papers_matches_scoring_each_paper(
    sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    for interests in VARIED_INTERESTS.values():
        ranked = rank_papers(
            sample_papers,
            interests,
            stats=sample_stats,
            trending_weight=0.3,
            limit=10,
            today=SAMPLE_TODAY,
            exclude_ids=["8d3b9b2bfaa0"],
        )
        expected = rank_by_reference(
            sample_papers,
            interests,
            stats=sample_stats,
            trending_weight=0.3,
            limit=10,
            today=SAMPLE_TODAY,
            exclude_ids=["8d3b9b2bfaa0"],
        )
        assert_same_ranking(ranked, expected)


def test_relevance_scores_match_scoring_each_paper(
    sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    interests = VARIED_INTERESTS["phrases and sentence"]
    clauses = reference_clauses(interests, sample_stats)

    scores = relevance_scores(sample_papers[:-1], interests, stats=sample_stats)

    assert scores == {
        paper.id: pytest.approx(
            reference_relevance(clauses, analyse_paper(paper), sample_stats), rel=0, abs=1e-12
        )
        for paper in sample_papers[:-1]
    }


def test_prepared_candidates_rank_alike_before_and_after_indexing_everything(
    sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    # Candidates no other test uses, so their index starts empty: the first ranking indexes
    # only its own words, the second indexes every word.
    last = sample_papers[-2]
    candidates = [*sample_papers[:-2], last.model_copy(update={"title": last.title + " (v2)"})]
    prepared = prepare_candidates(candidates, stats=sample_stats, today=SAMPLE_TODAY)
    interests = VARIED_INTERESTS["two phrases"]

    first = rank_prepared(prepared, interests, trending_weight=0.3, limit=10)
    for other in VARIED_INTERESTS.values():
        rank_prepared(prepared, other, trending_weight=0.5, limit=10)

    assert rank_prepared(prepared, interests, trending_weight=0.3, limit=10) == first
    assert ids(first) == ids(
        rank_by_reference(
            candidates,
            interests,
            stats=sample_stats,
            trending_weight=0.3,
            limit=10,
            today=SAMPLE_TODAY,
        )
    )


def test_batch_ranking_matches_scoring_each_paper_for_title_phrases(
    sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    # Subscribers as the speed benchmark draws them: phrases of consecutive title words, many
    # of them common ("learning", "neural networks"), which is where bounds prune most.
    chooser = random.Random(3)
    titles = title_phrases(sample_papers)
    prepared = prepare_candidates(sample_papers, stats=sample_stats, today=SAMPLE_TODAY)
    for _ in range(40):
        interests = interests_in(*draw_title_phrases(chooser, titles))
        trending_weight = chooser.choice((0.0, 0.1, 0.3, 0.5, 0.8, 1.0))

        ranked = rank_prepared(prepared, interests, trending_weight=trending_weight, limit=10)

        assert_same_ranking(
            ranked,
            rank_by_reference(
                sample_papers,
                interests,
                stats=sample_stats,
                trending_weight=trending_weight,
                limit=10,
                today=SAMPLE_TODAY,
            ),
        )


def test_first_listing_of_a_paper_counts(
    sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    prepared = prepare_candidates(sample_papers, stats=sample_stats, today=SAMPLE_TODAY)

    assert len(prepared.papers) == len(sample_papers) - 1
    assert sample_papers[3] in prepared.papers


@pytest.mark.parametrize("limit", [0, -1])
def test_no_room_gives_no_papers(
    limit: int, sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    prepared = prepare_candidates(sample_papers, stats=sample_stats, today=SAMPLE_TODAY)

    assert rank_prepared(prepared, DIFFUSION, trending_weight=0.3, limit=limit) == []


@pytest.mark.parametrize("trending_weight", [-0.1, 1.5])
def test_batch_refuses_trending_weight_outside_zero_to_one(
    trending_weight: float, sample_papers: list[Paper], sample_stats: CorpusStats
) -> None:
    prepared = prepare_candidates(sample_papers, stats=sample_stats, today=SAMPLE_TODAY)

    with pytest.raises(ValueError, match="trending_weight"):
        rank_prepared(prepared, DIFFUSION, trending_weight=trending_weight, limit=10)


def test_a_sources_keywords_count_as_extra_ranking_text() -> None:
    tagged = make_paper(
        id="tagged",
        title="Stable routing at long context",
        abstract="We propose a load-balancing loss that stays stable at 128k tokens.",
        keywords=("mixture-of-experts", "routing collapse"),
    )
    untagged = tagged.model_copy(update={"id": "untagged", "keywords": ()})
    ranked = rank([untagged, tagged], interests_in("mixture of experts"))
    assert ids(ranked) == ["tagged"]
