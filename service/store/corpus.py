"""The corpus statistics the ranker weighs terms by (document frequencies and field lengths of
every stored paper), kept in the store and changed by each paper added or edited.

Counting them from the papers themselves costs a pass over everything ever stored: 13 s and a
gigabyte per worker process after a year of papers. Kept here, a day's run reads one row per
distinct stem instead, however long the store has been filling.

They are counted again from the papers when they cannot be trusted: counted with another
version of the text analysis (`ANALYSIS_VERSION`), never counted (a store just upgraded to
0013), or counting a different number of papers than are stored (papers written around the
store, by hand or by a bulk load)."""

from collections.abc import Sequence

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from service.ranking.terms import ANALYSIS_VERSION, CorpusCounts, CorpusStats, ranked_text
from service.store.database import Database, insert_with_conflicts
from service.store.tables import CorpusTermRow, CorpusTotalsRow, PaperRow

TOTALS_ID = 1

# Stems per statement when counts are written: well within either database's bound
# parameters (two per stem).
STEMS_PER_STATEMENT = 5_000

# Papers read per round trip when everything is counted again.
PAPERS_PER_FETCH = 2_000


class CorpusStore(Database):
    """The stored corpus statistics: read for each day's ranking, counted again when stale."""

    def corpus_stats(self) -> CorpusStats:
        """The statistics of every stored paper, as `ranking.build_corpus_stats` would count
        them from the papers."""
        if self.corpus_counts_stale():
            self.recount_corpus()
        with self._session() as session:
            # A paper import committing between the two reads would leave the totals and the
            # terms a paper apart: the import's lock on the totals row waits for this one.
            totals = session.scalar(_totals_query().with_for_update(read=True))
            terms = session.execute(
                select(CorpusTermRow.stem, CorpusTermRow.papers).where(CorpusTermRow.papers > 0)
            )
            counts = CorpusCounts()
            counts.frequencies.update({stem: papers for stem, papers in terms})
            if totals is not None:
                counts.papers = totals.papers
                counts.title_terms = totals.title_terms
                counts.abstract_terms = totals.abstract_terms
            return counts.stats()

    def recount_corpus(self) -> None:
        """Count the statistics again from every stored paper, replacing what was kept."""
        with self._session() as session:
            locked_corpus_totals(session)
            session.execute(delete(CorpusTermRow))
            session.execute(
                update(CorpusTotalsRow)
                .where(CorpusTotalsRow.id == TOTALS_ID)
                .values(
                    analysis_version=ANALYSIS_VERSION, papers=0, title_terms=0, abstract_terms=0
                )
            )
            counts = CorpusCounts()
            fields = select(PaperRow.title, PaperRow.abstract, PaperRow.keywords)
            for title, abstract, keywords in session.execute(
                fields.execution_options(yield_per=PAPERS_PER_FETCH)
            ):
                counts.count(*ranked_text(title, abstract, keywords or ()))
            write_corpus_counts(session, counts)

    def corpus_counts_stale(self) -> bool:
        """Whether the kept counts cannot be trusted (see the module's docstring)."""
        with self._session() as session:
            totals = session.scalar(_totals_query())
            stored = session.scalar(select(func.count()).select_from(PaperRow)) or 0
        return (
            totals is None or totals.analysis_version != ANALYSIS_VERSION or totals.papers != stored
        )


def locked_corpus_totals(session: Session) -> None:
    """Lock the totals row until the transaction ends (making it first if it is missing):
    every change to the counts takes this lock first, so imports and recounts never
    interleave."""
    session.execute(
        insert_with_conflicts(session, CorpusTotalsRow)
        .values(id=TOTALS_ID, analysis_version=0, papers=0, title_terms=0, abstract_terms=0)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    session.execute(_totals_query().with_for_update())


def write_corpus_counts(session: Session, counts: CorpusCounts) -> None:
    """Add these counts (negative for papers counted out) to the kept ones; the caller holds
    `locked_corpus_totals`."""
    if counts.papers or counts.title_terms or counts.abstract_terms:
        session.execute(
            update(CorpusTotalsRow)
            .where(CorpusTotalsRow.id == TOTALS_ID)
            .values(
                papers=CorpusTotalsRow.papers + counts.papers,
                title_terms=CorpusTotalsRow.title_terms + counts.title_terms,
                abstract_terms=CorpusTotalsRow.abstract_terms + counts.abstract_terms,
            )
        )
    changed = sorted((stem, papers) for stem, papers in counts.frequencies.items() if papers)
    for start in range(0, len(changed), STEMS_PER_STATEMENT):
        _add_term_counts(session, changed[start : start + STEMS_PER_STATEMENT])


def _add_term_counts(session: Session, changed: Sequence[tuple[str, int]]) -> None:
    statement = insert_with_conflicts(session, CorpusTermRow).values(
        [{"stem": stem, "papers": papers} for stem, papers in changed]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["stem"],
            set_={"papers": CorpusTermRow.papers + statement.excluded.papers},
        )
    )


def _totals_query() -> Select[CorpusTotalsRow]:
    return select(CorpusTotalsRow).where(CorpusTotalsRow.id == TOTALS_ID)
