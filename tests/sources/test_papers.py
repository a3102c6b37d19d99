"""Reading papers files: the sample corpus, our own fields, and line-numbered rejections."""

import json
from pathlib import Path

import pytest

from service.errors import InvalidInput
from service.sources.jsonl import paper_url, read_papers_file

SAMPLE = Path(__file__).parents[2] / "service" / "sample_data" / "papers.jsonl"


def test_it_reads_every_record_of_the_sample_corpus() -> None:
    parsed = read_papers_file(SAMPLE)
    assert len(parsed.papers) == 375
    assert parsed.rejected == []
    assert all(paper.url and paper.url.startswith("https://") for paper in parsed.papers)


def test_it_maps_fields_and_derives_links(tmp_path: Path) -> None:
    records = [
        {
            "id": "arXiv:2501.01234v2",
            "title": "  A   title\n on two lines ",
            "abstract": "Text.",
            "authors": ["Ada Lovelace", "Grace Hopper"],
            "published": "2025-01-02",
            "upvotes": 53,
            "comments": 4,
            "github_stars": 120,
            "github_repo": "https://github.com/example/repo",
            "org": "ignored",
        },
        {
            "id": "abc123",
            "title": "No arXiv id",
            "published_inferred": "2024-03-16",
            # Not a code host's link: left out, the paper kept.
            "github_repo": "javascript:alert(1)",
        },
    ]
    path = tmp_path / "papers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    first, second = read_papers_file(path).papers

    assert first.id == "2501.01234v2"
    assert first.title == "A title on two lines"
    assert first.authors_count == 2
    assert (first.upvotes, first.comments, first.github_stars) == (53, 4, 120)
    assert first.url == "https://arxiv.org/abs/2501.01234v2"
    assert (first.github_repo, second.github_repo) == ("https://github.com/example/repo", None)
    assert str(second.published_date) == "2024-03-16"
    assert second.url == paper_url("abc123", "No arXiv id")
    assert "arxiv.org/search" in (second.url or "")


def test_it_rejects_bad_lines_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "papers.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "ok1", "title": "Fine"}),
                "{not json",
                json.dumps({"id": "no-title"}),
                "",
                json.dumps({"id": "neg", "title": "Bad", "upvotes": -3}),
                json.dumps({"id": "ok2", "title": "Also fine", "published": "not a date"}),
            ]
        )
    )
    parsed = read_papers_file(path)
    assert [p.id for p in parsed.papers] == ["ok1"]
    rejected = {line.entry: line.reason for line in parsed.rejected}
    assert sorted(rejected) == [f"{path}:{number}" for number in (2, 3, 5, 6)]
    assert "not JSON" in rejected[f"{path}:2"]
    assert "title" in rejected[f"{path}:3"]
    assert "upvotes" in rejected[f"{path}:5"]
    assert "published" in rejected[f"{path}:6"]


def test_a_later_line_for_the_same_id_wins(tmp_path: Path) -> None:
    path = tmp_path / "papers.jsonl"
    lines = [{"id": "p", "title": "T", "upvotes": 1}, {"id": "p", "title": "T", "upvotes": 9}]
    path.write_text("\n".join(json.dumps(r) for r in lines))
    assert [p.upvotes for p in read_papers_file(path).papers] == [9]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        read_papers_file(tmp_path / "nope.jsonl")
