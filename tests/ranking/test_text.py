import random
from pathlib import Path

from service.ranking.text import (
    analyse_text,
    content_words,
    normalise_word,
    stem_word,
    words_as_written,
)
from service.sources.jsonl import read_papers_file

SAMPLE_PAPERS = Path(__file__).parents[2] / "service" / "sample_data" / "papers.jsonl"


def test_content_words_are_the_normalised_words_as_written() -> None:
    """`content_words` does in one pass what `normalise_word` over `words_as_written` does."""
    chooser = random.Random(11)
    pieces = ["GNNs", "LLMs", "CNNs", "RNN", "Ss", "SS", "ss", "AIs", "3Ds", "ViTs", "GPUs"]
    pieces += ["the", "The", "of", "e.g.", "don't", "naïve", "Straße", "ÅS", "İs", "ǅs", "_x_"]
    pieces += ["diffusion-based", "models'", "x2s", "A1s", " ", "\n", ",", "—", "数据s"]
    papers = read_papers_file(SAMPLE_PAPERS).papers
    texts = [paper.title for paper in papers] + [paper.abstract for paper in papers]
    texts += [
        "".join(chooser.choice(pieces) + chooser.choice(["", " ", "-"]) for _ in range(30))
        for _ in range(2000)
    ]
    for text in texts:
        expected = [normalise_word(word) for word in words_as_written(text)]
        assert content_words(text) == expected, text
        assert analyse_text(text) == tuple(stem_word(word) for word in expected)
