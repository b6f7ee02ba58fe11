"""The indexer's side: index events (the outbox of the vector index) and the records it reads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import false, true, update
from sqlmodel import col, select

from sleepd.ledger.engine import LedgerBase, count_index_lag, delete_where
from sleepd.schema import (
    IndexEventRow,
    RecordRow,
)

__all__ = ["IndexEventsMixin"]


class IndexEventsMixin(LedgerBase):
    """The indexer reads unapplied events and the records they name, and marks them applied."""

    def pending_events(self, limit: int) -> list[IndexEventRow]:
        """Events not applied yet, oldest first. Not "after a cursor": a lower seq can commit after
        a higher one (PostgreSQL hands out seqs at insert, not at commit), and must not be skipped.
        Events of one record are written under its item's row lock, so they commit in seq order."""
        with self.read() as s:
            return list(s.exec(select(IndexEventRow).where(col(IndexEventRow.applied) == false())
                               .order_by(col(IndexEventRow.seq)).limit(limit)).all())

    def mark_applied(self, seqs: Sequence[int]) -> None:
        with self.write() as s:
            s.exec(update(IndexEventRow).where(col(IndexEventRow.seq).in_(list(seqs)))  # type: ignore[call-overload]
                   .values(applied=True))

    def mark_all_applied(self) -> None:
        """Before a rebuild reads the records: every event committed by now is reflected in them;
        one still uncommitted stays unapplied and is replayed (replaying is harmless)."""
        with self.write() as s:
            s.exec(update(IndexEventRow).where(col(IndexEventRow.applied) == false())  # type: ignore[call-overload]
                   .values(applied=True))

    def index_lag(self) -> int:
        with self.read() as s:
            return count_index_lag(s)

    def records_by_id(self, ids: Sequence[str]) -> list[RecordRow]:
        if not ids:
            return []
        with self.read() as s:
            return list(s.exec(select(RecordRow).where(col(RecordRow.id).in_(list(ids)))).all())

    def iter_records(self, batch: int = 512) -> Iterator[list[RecordRow]]:
        last = ""
        while True:
            with self.read() as s:
                rows = list(s.exec(select(RecordRow).where(col(RecordRow.id) > last)
                                   .order_by(col(RecordRow.id)).limit(batch)).all())
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def compact_events(self) -> int:
        """Applied events are history nobody reads again; unapplied ones stay, whatever their seq.
        Returns the number deleted."""
        with self.write() as s:
            return delete_where(s, IndexEventRow, col(IndexEventRow.applied) == true())
