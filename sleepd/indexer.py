"""The single writer of the vector index: applies the ledger's index events from a cursor.

The index is derived data. Workers never touch it; they append events in the same
transaction that publishes a version, so the index can lag but never disagree for long,
and ``rebuild`` recreates it from the ledger without re-embedding. An access change is an
``item:<id>`` event: the item's points get their new list as payload, in place. Each event carries an
``applied`` flag rather than sitting behind a cursor, so one committed late is still applied.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from sleepd import defaults
from sleepd.access import event_item
from sleepd.index import Point, VectorIndex
from sleepd.ledger import Ledger
from sleepd.schema import RecordRow
from sleepd.sparse import TERMS_VERSION, document_vector

__all__ = ["Indexer", "point_for"]

log = logging.getLogger("sleepd.indexer")

#: events applied per round trip; bounded so a huge first pass does not hold the lock long
BATCH = 512
#: applied events are deleted every this many syncs (history nobody reads again)
COMPACT_EVERY = 50
#: the query log's retention is applied at most this often: one indexed DELETE an hour is plenty
PRUNE_SECONDS = 3600.0
#: the ledger's meta key for the :data:`~sleepd.sparse.TERMS_VERSION` the index's sparse vectors were made with
TERMS_META = "sparse_terms_version"


def point_for(row: RecordRow) -> Point:
    """A record's point: its stored embedding (no re-embedding) and the sparse vector of its words."""
    return Point(
        id=row.id,
        vector=np.frombuffer(row.embedding, dtype=np.float32).tolist(),
        payload={"access": json.loads(row.access), "source": row.source, "item_id": row.item_id,
                 "kind": row.kind, "version": row.version},
        sparse=document_vector(row.title, row.text),
    )


class Indexer:
    def __init__(self, ledger: Ledger, index: VectorIndex,
                 query_log_days: float = defaults.QUERY_LOG_DAYS,
                 maintenance: Callable[[], object] | None = None) -> None:
        self.ledger = ledger
        self.index = index
        #: the query log's retention, enforced from :meth:`run` (0: kept for ever)
        self.query_log_days = query_log_days
        #: more housekeeping run from :meth:`run` (the versions' retention; it paces itself)
        self.maintenance = maintenance
        self._lock = threading.Lock()
        #: syncs done by this indexer
        self.syncs = 0
        self._pruned_at: float | None = None
        self.last_error: str | None = None
        if index.upgraded:  # an index from before the sparse vectors, recreated empty at open
            log.info("rebuilt the upgraded index from the ledger: %d points", self.rebuild())
            index.upgraded = False
        made = ledger.get_meta(TERMS_META)
        if made != TERMS_VERSION:
            # its sparse vectors split words another way than queries now do: the exact name a
            # question quotes would find nothing (an empty index has nothing to rebuild)
            if index.count():
                log.info("rebuilt the index's sparse vectors (words split by version %s, were %s): %d points",
                         TERMS_VERSION, made or "1", self.rebuild())
            ledger.set_meta(TERMS_META, TERMS_VERSION)

    def sync(self) -> int:
        """Apply every event not applied yet. Returns the number of events applied."""
        applied = 0
        with self._lock:
            while True:
                events = self.ledger.pending_events(BATCH)
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
                self._rewrite_access([i for rid, op in final.items() if op == "access"
                                      and (i := event_item(rid)) is not None])
                # marked after the index has them: a crash in between replays them, harmlessly
                self.ledger.mark_applied([ev.seq for ev in events if ev.seq is not None])
                applied += len(events)
            self.syncs += 1
            if applied and self.syncs % COMPACT_EVERY == 0:
                self.ledger.compact_events()
        return applied

    def _rewrite_access(self, item_ids: Sequence[int]) -> None:
        """An access change: the items' points get the list their records carry now, in place."""
        if not item_ids:
            return
        for access, items in self.ledger.access_of_items(item_ids).items():
            self.index.set_access(json.loads(access), items)

    def remove(self, record_ids: Sequence[str]) -> int:
        """Remove points now (purge); returns how many were in the index."""
        with self._lock:
            return self.index.delete(list(record_ids)) if record_ids else 0

    def rebuild(self) -> int:
        """Recreate the index from the ledger's records. Returns the number of points."""
        with self._lock:
            # first: what is committed now is in the records read below; what commits later
            # (even with a lower seq) stays unapplied and is replayed by the next sync
            self.ledger.mark_all_applied()
            self.index.clear()
            total = 0
            for rows in self.ledger.iter_records(BATCH):
                self.index.upsert([point_for(r) for r in rows])
                total += len(rows)
            return total

    def prune_query_log(self) -> int:
        """Apply the query log's retention, at most once per PRUNE_SECONDS. Returns rows deleted."""
        now = time.monotonic()
        if self.query_log_days <= 0 or (self._pruned_at is not None and now - self._pruned_at < PRUNE_SECONDS):
            return 0
        pruned = self.ledger.prune_query_log(time.time() - self.query_log_days * 86_400)
        self._pruned_at = now  # after it worked: a ledger that was down is tried again next round
        return pruned

    def run(self, stop: threading.Event, tick: float = defaults.INDEXER_TICK) -> None:
        while not stop.is_set():
            try:
                self.sync()
                self.prune_query_log()
                if self.maintenance is not None:
                    self.maintenance()
                self.last_error = None
            except Exception as exc:  # the ledger may be down for a while: keep going
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("indexer sync failed")
            stop.wait(tick)
