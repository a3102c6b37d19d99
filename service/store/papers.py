"""The store's papers: imports that add or refresh them, each observation of their trending
signals, and the reads the digest and the CLI make."""

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select

from service.models import Paper, SignalObservation
from service.ranking.terms import CorpusCounts, ranked_text
from service.store.corpus import TOTALS_ID, locked_corpus_totals, write_corpus_counts
from service.store.database import Database
from service.store.rows import TRENDING_FIELDS, paper_row, refresh_paper_row, signal_row, to_paper
from service.store.tables import CorpusTotalsRow, PaperRow, PaperSignalRow

# The words of a title: letters and digits, without the underscore (a LIKE wildcard).
_TITLE_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class UpsertCounts:
    new: int
    updated: int


class PaperStore(Database):
    """Papers and their trending signals."""

    def upsert_papers(self, papers: Iterable[Paper], *, now: datetime) -> UpsertCounts:
        """Insert new papers; for known ids refresh trending signals and given metadata.

        All of it is one transaction, with the signals observed `now`: a failure leaves no
        paper half-written, and the corpus statistics (`store.corpus`) change with it."""
        new = updated = 0
        observed: dict[str, Paper] = {}
        counts = CorpusCounts()
        with self._session() as session:
            locked_corpus_totals(session)
            for chunk in _chunks(list(papers), 500):
                ids = [paper.id for paper in chunk]
                existing = {
                    row.id: row
                    for row in session.scalars(select(PaperRow).where(PaperRow.id.in_(ids)))
                }
                for paper in chunk:
                    row = existing.get(paper.id)
                    if row is None:
                        row = paper_row(paper, now=now)
                        session.add(row)
                        existing[paper.id] = row
                        counts.count(*_ranked_text_of(row))
                        new += 1
                    else:
                        before = _ranked_text_of(row)
                        refresh_paper_row(row, paper, now=now)
                        after = _ranked_text_of(row)
                        if after != before:
                            counts.count(*before, times=-1)
                            counts.count(*after)
                        updated += 1
                    if any(getattr(paper, name) is not None for name in TRENDING_FIELDS):
                        observed[paper.id] = paper
            if observed:
                # The papers first, for the foreign key; an observation at the same time (the
                # same paper twice in one fetch) is replaced, the later one winning.
                session.flush()
                session.execute(
                    delete(PaperSignalRow).where(
                        PaperSignalRow.paper_id.in_(list(observed)),
                        PaperSignalRow.observed_at == now,
                    )
                )
                session.add_all(signal_row(paper, now=now) for paper in observed.values())
            write_corpus_counts(session, counts)
        return UpsertCounts(new=new, updated=updated)

    def paper_signals(self, paper_id: str) -> list[SignalObservation]:
        """Every observation of a paper's trending signals, oldest first."""
        query = (
            select(PaperSignalRow)
            .where(PaperSignalRow.paper_id == paper_id)
            .order_by(PaperSignalRow.observed_at)
        )
        with self._session() as session:
            return [
                SignalObservation(
                    paper_id=row.paper_id,
                    observed_at=row.observed_at,
                    upvotes=row.upvotes,
                    comments=row.comments,
                    github_stars=row.github_stars,
                )
                for row in session.scalars(query)
            ]

    def get_paper(self, paper_id: str) -> Paper | None:
        with self._session() as session:
            row = session.get(PaperRow, paper_id)
            return None if row is None else to_paper(row)

    def get_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        query = select(PaperRow).where(PaperRow.id.in_(list(paper_ids)))
        with self._session() as session:
            return {row.id: to_paper(row) for row in session.scalars(query)}

    def find_papers_by_title(self, title: str, *, limit: int = 20) -> list[Paper]:
        """Papers whose title holds the words of `title` in order, whatever the case, the
        shortest titles first: the few a typed title is then compared with exactly."""
        words = _TITLE_WORD.findall(title)
        if not words:
            return []
        pattern = "%" + "%".join(words) + "%"
        query = (
            select(PaperRow)
            .where(PaperRow.title.ilike(pattern))
            .order_by(func.length(PaperRow.title), PaperRow.id)
            .limit(limit)
        )
        with self._session() as session:
            return [to_paper(row) for row in session.scalars(query)]

    def list_papers(
        self,
        *,
        seen_since: datetime | None = None,
        seen_before: datetime | None = None,
        limit: int | None = None,
    ) -> list[Paper]:
        """Papers newest-first by when Paperwire first saw them, optionally within a window."""
        query = select(PaperRow).order_by(PaperRow.first_seen_at.desc(), PaperRow.id)
        if seen_since is not None:
            query = query.where(PaperRow.first_seen_at >= seen_since)
        if seen_before is not None:
            query = query.where(PaperRow.first_seen_at < seen_before)
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [to_paper(row) for row in session.scalars(query)]

    def papers_version(self) -> tuple[int, datetime | None]:
        """Changes whenever a paper is added or refreshed: how many there are (as the corpus
        totals count them) and the latest refresh. Two index probes, cheap enough to ask before
        every batch however many papers are stored."""
        counted = select(CorpusTotalsRow.papers).where(CorpusTotalsRow.id == TOTALS_ID)
        query = select(counted.scalar_subquery(), func.max(PaperRow.updated_at))
        with self.engine.connect() as connection:
            count, latest = connection.execute(query).one()
        return int(count or 0), latest

    def count_papers(self) -> int:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(PaperRow)) or 0


def _ranked_text_of(row: PaperRow) -> tuple[str, str]:
    return ranked_text(row.title, row.abstract, row.keywords)


def _chunks(items: Sequence[Paper], size: int) -> Iterator[Sequence[Paper]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
