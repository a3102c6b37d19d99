"""The store's corpus statistics: always what counting every stored paper would give, however
the papers came in (imports, edits, two imports at once, rows written around the store)."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text, update

from service.models import Paper
from service.ranking import CorpusStats, build_corpus_stats
from service.sources.jsonl import read_papers_file
from service.store import Store
from service.store.tables import CorpusTermRow, CorpusTotalsRow, PaperRow
from tests.support.factories import make_paper

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
SAMPLE_PAPERS = Path(__file__).parents[2] / "service" / "sample_data" / "papers.jsonl"


def sample_papers(count: int) -> list[Paper]:
    return read_papers_file(SAMPLE_PAPERS).papers[:count]


def counted_from_papers(store: Store) -> CorpusStats:
    return build_corpus_stats(store.list_papers())


def assert_same_stats(kept: CorpusStats, counted: CorpusStats) -> None:
    assert kept.doc_count == counted.doc_count
    assert dict(kept.document_frequencies) == dict(counted.document_frequencies)
    assert kept.avg_title_length == counted.avg_title_length
    assert kept.avg_abstract_length == counted.avg_abstract_length


def test_an_empty_store_has_empty_statistics(store: Store) -> None:
    store.upgrade()
    assert not store.corpus_counts_stale()
    stats = store.corpus_stats()
    assert (stats.doc_count, dict(stats.document_frequencies)) == (0, {})
    assert stats.avg_title_length == 0.0


def test_imports_keep_the_statistics_counted(store: Store) -> None:
    papers = sample_papers(60)
    store.upsert_papers(papers[:40], now=NOW)
    store.upsert_papers(papers[30:], now=NOW + timedelta(hours=1))
    stats = store.corpus_stats()
    assert stats.doc_count == 60
    assert_same_stats(stats, counted_from_papers(store))
    # Nothing was counted again: the kept counts were right as written.
    with store.engine.connect() as connection:
        version = connection.execute(text("SELECT analysis_version FROM corpus_totals")).scalar()
    assert version != 0


def test_an_edited_paper_counts_its_new_words_only(store: Store) -> None:
    store.upsert_papers(
        [make_paper(id="p1", title="Sheaf cohomology of graphs", keywords=("sheaves",))],
        now=NOW,
    )
    store.upsert_papers([make_paper(id="p2", title="Graphs of sheaves")], now=NOW)
    before = store.corpus_stats()
    assert before.document_frequencies["cohomolog"] == 1
    store.upsert_papers(
        [
            make_paper(id="p1", title="Tropical geometry of graphs", abstract="", keywords=()),
            # The same paper twice in one import: the later listing wins, counted once.
            make_paper(id="p2", title="Graphs of sheaves, revised"),
            make_paper(id="p2", title="Graphs of sheaves, final"),
        ],
        now=NOW + timedelta(hours=1),
    )
    after = store.corpus_stats()
    assert "cohomolog" not in after.document_frequencies
    assert after.document_frequencies["tropic"] == 1
    assert after.document_frequencies["final"] == 1
    assert "revis" not in after.document_frequencies
    assert_same_stats(after, counted_from_papers(store))


def test_two_imports_at_once_are_both_counted(store: Store) -> None:
    papers = sample_papers(80)
    halves = [papers[0::2], papers[1::2]]
    failures: list[BaseException] = []

    def import_half(half: list[Paper]) -> None:
        try:
            for start in range(0, len(half), 5):
                store.upsert_papers(half[start : start + 5], now=NOW)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=import_half, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert_same_stats(store.corpus_stats(), counted_from_papers(store))


def test_papers_written_around_the_store_are_counted_again(store: Store) -> None:
    store.upsert_papers(sample_papers(10), now=NOW)
    store.corpus_stats()
    with store.engine.begin() as connection:
        connection.execute(
            insert(PaperRow),
            [
                {
                    "id": f"bulk-{number}",
                    "title": f"Bulk loaded paper on quasicrystal lattices {number}",
                    "abstract": "Written by a bulk load, not by an import.",
                    "authors": [],
                    "source": "import",
                    "first_seen_at": NOW,
                    "updated_at": NOW,
                    "keywords": [],
                    "categories": [],
                    "summary": "",
                }
                for number in range(3)
            ],
        )
    stats = store.corpus_stats()
    assert stats.doc_count == 13
    assert stats.document_frequencies["quasicryst"] == 3
    assert_same_stats(stats, counted_from_papers(store))


def test_counts_from_another_analysis_version_are_counted_again(store: Store) -> None:
    store.upsert_papers(sample_papers(20), now=NOW)
    with store.engine.begin() as connection:
        # Counts left by an older analysis: wrong, and marked as counted by version 0.
        connection.execute(update(CorpusTermRow).values(papers=CorpusTermRow.papers + 7))
        connection.execute(update(CorpusTotalsRow).values(analysis_version=0))
    assert_same_stats(store.corpus_stats(), counted_from_papers(store))


def test_the_papers_version_changes_with_every_import(store: Store) -> None:
    empty = store.papers_version()
    store.upsert_papers(sample_papers(3), now=NOW)
    added = store.papers_version()
    store.upsert_papers(sample_papers(4), now=NOW)
    another_at_the_same_time = store.papers_version()
    store.upsert_papers(
        [sample_papers(1)[0].model_copy(update={"upvotes": 1000})], now=NOW + timedelta(hours=1)
    )
    refreshed = store.papers_version()
    assert empty == (0, None)
    assert added == (3, NOW)
    assert another_at_the_same_time == (4, NOW)
    assert refreshed == (4, NOW + timedelta(hours=1))


def test_a_missing_totals_row_is_made_again(store: Store) -> None:
    store.upsert_papers(sample_papers(5), now=NOW)
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM corpus_totals"))
    assert_same_stats(store.corpus_stats(), counted_from_papers(store))
    store.upsert_papers(sample_papers(8), now=NOW + timedelta(hours=1))
    assert_same_stats(store.corpus_stats(), counted_from_papers(store))


def test_migration_0013_counts_the_papers_already_stored(tmp_path: Path) -> None:
    old = Store(f"sqlite:///{tmp_path / 'old.db'}")
    old.upgrade("0012")
    with old.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO papers (id, title, abstract, authors, source, first_seen_at,"
                " updated_at, summary, keywords, categories) VALUES ('p1', 'Old paper on"
                " sheaves', '', '[]', 'import', '2026-11-01 00:00:00', '2026-11-01 00:00:00',"
                " '', '[\"cohomology\"]', '[]')"
            )
        )
    old.upgrade()
    # Counted by the upgrade itself, not left to the first digest run.
    assert not old.corpus_counts_stale()
    stats = old.corpus_stats()
    counted = counted_from_papers(old)
    old.close()
    assert stats.doc_count == 1 and stats.document_frequencies["cohomolog"] == 1
    assert_same_stats(stats, counted)
