"""The thesaurus that maps a reader's lay words to the field's headings."""

import pytest

from service.models import Interests, Paper
from service.ranking import build_corpus_stats, rank_papers
from service.ranking.terms import analyse_interests
from service.ranking.text import analyse_text
from service.ranking.thesaurus import (
    GENERIC_WORDS,
    THESAURUS_FILE,
    check_entries,
    headings,
    map_phrase,
    read_thesaurus,
)
from tests.support.factories import TODAY, make_paper


def test_the_thesaurus_file_reads_whole() -> None:
    found = headings()
    assert len(found) >= 80
    labels = [heading.label for heading in found]
    assert len(set(labels)) == len(labels)
    for heading in found:
        assert heading.terms and heading.entries, heading.label
        assert all(analyse_text(term) for term in heading.terms), heading.label
        for entry in heading.entries:
            assert frozenset(analyse_text(entry)) - GENERIC_WORDS, (heading.label, entry)
    assert THESAURUS_FILE.read_text(encoding="utf-8").count("\n  papers: ") == len(found)


@pytest.mark.parametrize(
    ("phrase", "heading"),
    [
        ("robots that learn to grasp objects", "robot learning"),
        ("translating text between languages", "machine translation"),
        ("predicting stock prices", "finance"),
        ("sharpening blurry photos", "image restoration"),
        ("chatbots", "large language models"),
        ("turning speech into text", "speech recognition"),
        ("Why did the model decide that? Explain decisions of AI", "interpretability"),
        ("Suggesting products people might buy", "recommender systems"),
    ],
)
def test_lay_phrases_lead_to_their_heading(phrase: str, heading: str) -> None:
    assert heading in [mapped.heading.label for mapped in map_phrase(phrase)]


def test_a_phrase_of_generic_words_leads_nowhere() -> None:
    assert map_phrase("learning") == ()
    assert map_phrase("new deep learning models for data") == ()
    assert map_phrase("") == ()


def test_the_mapping_names_the_entry_and_the_phrase() -> None:
    (mapped,) = [m for m in map_phrase("agents that learn by trial and error")]
    assert (mapped.heading.label, mapped.entry) == ("reinforcement learning", "trial error")
    assert mapped.phrase == "agents that learn by trial and error"


def test_a_malformed_or_generic_thesaurus_is_refused() -> None:
    with pytest.raises(ValueError, match="needs papers and readers"):
        read_thesaurus("object detection\n  papers: detector\n")
    with pytest.raises(ValueError, match="expected papers: or readers:"):
        read_thesaurus("  readers: photos\n")
    with pytest.raises(ValueError, match="too generic"):
        check_entries(read_thesaurus("x\n  papers: x\n  readers: learning by doing\n"))


def _papers() -> list[Paper]:
    return [
        make_paper(
            id="2511.10001",
            title="Real-time object detection with sparse queries",
            abstract="A detector that predicts bounding boxes for every object in a frame.",
        ),
        make_paper(
            id="2511.10002",
            title="Scaling laws for protein language models",
            abstract="Protein language models improve with scale on structure prediction.",
        ),
        make_paper(
            id="2511.10003",
            title="Weather forecasting with graph networks",
            abstract="Medium-range forecasts of temperature and wind from reanalysis data.",
        ),
    ]


def test_lay_words_find_the_field_s_papers_and_the_why_line_says_how() -> None:
    papers = _papers()
    interests = Interests(keywords=("software that spots things in photos",))
    ranked = rank_papers(
        papers,
        interests,
        stats=build_corpus_stats(papers),
        trending_weight=0.0,
        limit=5,
        today=TODAY,
    )
    assert [scored.paper.id for scored in ranked] == ["2511.10001"]
    assert ranked[0].why.startswith("Matches “object detection” for your “software that spots")


def test_the_reader_s_own_words_outweigh_a_heading_reached_through_the_thesaurus() -> None:
    papers = _papers()
    # "weather" leads to the weather heading; "protein language models" is what they wrote.
    interests = Interests(keywords=("protein language models",), text="and the weather")
    ranked = rank_papers(
        papers,
        interests,
        stats=build_corpus_stats(papers),
        trending_weight=0.0,
        limit=5,
        today=TODAY,
    )
    assert [scored.paper.id for scored in ranked][:2] == ["2511.10002", "2511.10003"]


def test_interests_without_lay_words_get_no_heading_clauses() -> None:
    clauses = analyse_interests(Interests(keywords=("diffusion models",)))
    assert [clause.via for clause in clauses] == [""]
