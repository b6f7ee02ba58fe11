"""The single writer of the vector index: applies the ledger's index events from a cursor.

The index is derived data. Workers never touch it; they append events in the same
transaction that publishes a version, so the index can lag but never disagree for long,
and ``rebuild`` recreates it from the ledger without re-embedding.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from sleepd import defaults
from sleepd.index import Point, VectorIndex
from sleepd.ledger import Ledger
from sleepd.schema import RecordRow

__all__ = ["Indexer", "point_for"]

log = logging.getLogger("sleepd.indexer")

#: events applied per round trip; bounded so a huge first pass does not hold the lock long
BATCH = 512
#: applied events are deleted every this many syncs (history nobody reads again)
COMPACT_EVERY = 50


def point_for(row: RecordRow) -> Point:
    import json

    return Point(
        id=row.id,
        vector=np.frombuffer(row.embedding, dtype=np.float32).tolist(),
        payload={"access": json.loads(row.access), "source": row.source, "item_id": row.item_id,
                 "kind": row.kind, "version": row.version},
    )


class Indexer:
    def __init__(self, ledger: Ledger, index: VectorIndex) -> None:
        self.ledger = ledger
        self.index = index
        self._lock = threading.Lock()
        self._syncs = 0
        #: the ledger's cursor, read once: this indexer is its only writer (the index folder is
        #: locked to one process), so a query's sync costs one read, not two
        self._cursor: int | None = None
        self.last_error: str | None = None

    def sync(self) -> int:
        """Apply every event after the cursor. Returns the number of events applied."""
        applied = 0
        with self._lock:
            cursor = self._cursor if self._cursor is not None else self.ledger.index_cursor()
            while True:
                events = self.ledger.events_after(cursor, BATCH)
                if not events:
                    break
                # the last event for an id wins: an upsert then a delete is a delete
                final: dict[str, str] = {}
                for ev in events:
                    final[ev.record_id] = ev.op
                upserts = [rid for rid, op in final.items() if op == "upsert"]
                deletes = [rid for rid, op in final.items() if op == "delete"]
                if deletes:
                    self.index.delete(deletes)
                rows = self.ledger.records_by_id(upserts)  # a record gone since is skipped
                if rows:
                    self.index.upsert([point_for(r) for r in rows])
                last = events[-1].seq
                assert last is not None
                cursor = last
                self.ledger.set_index_cursor(cursor)
                applied += len(events)
            self._cursor = cursor
            self._syncs += 1
            if applied and self._syncs % COMPACT_EVERY == 0:
                self.ledger.compact_events(cursor)
        return applied

    def remove(self, record_ids: Sequence[str]) -> int:
        """Remove points now (purge); returns how many were in the index."""
        with self._lock:
            return self.index.delete(list(record_ids)) if record_ids else 0

    def rebuild(self) -> int:
        """Recreate the index from the ledger's records. Returns the number of points."""
        with self._lock:
            seq = self.ledger.last_event_seq()
            self.index.clear()
            total = 0
            for rows in self.ledger.iter_records(BATCH):
                self.index.upsert([point_for(r) for r in rows])
                total += len(rows)
            # events up to seq are reflected in the records just read; later ones replay safely
            self.ledger.set_index_cursor(seq)
            self._cursor = seq
            return total

    def run(self, stop: threading.Event, tick: float = defaults.INDEXER_TICK) -> None:
        while not stop.is_set():
            try:
                self.sync()
                self.last_error = None
            except Exception as exc:  # the ledger may be down for a while: keep going
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("indexer sync failed")
            stop.wait(tick)
