"""The embedded backend: a Qdrant Edge shard (``qdrant-edge-py``) kept in a folder of the home.

It writes a WAL, so an update is durable once ``upsert``/``delete`` returns; ``close`` flushes the
segments and releases the folder lock. A shard made before the sparse vector existed is recreated
empty at open (``upgraded``), for the indexer to rebuild from the ledger.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import qdrant_edge as edge

from sleepd import defaults
from sleepd.index.base import BATCH, EXACT, SCROLL_PAGE, Hit, Point, as_floats, batches, filter_terms, in_use
from sleepd.index.scan import DenseScan
from sleepd.sparse import SparseVector

__all__ = ["EdgeIndex"]

log = logging.getLogger("sleepd.index")

#: what each engine says when another handle holds the folder lock
_EDGE_LOCKED = ("WouldBlock", "Can't init WAL")


def _upsert(points: list[tuple[str, Sequence[float], dict[str, object]]], scan: DenseScan) -> None:
    scan.upsert(points)


class EdgeIndex:
    """An embedded Qdrant Edge shard stored in ``path``."""

    _FIELDS = {
        "access": edge.PayloadSchemaType.Keyword,
        "source": edge.PayloadSchemaType.Keyword,
        "item_id": edge.PayloadSchemaType.Integer,
    }

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.upgraded = False
        self._shard = self._open()
        self._closed = False
        #: the dense first stage (:mod:`sleepd.index.scan`), made in a thread from the first search
        #: over all items or :meth:`warm` on; until it is ready the engine scans every point (exact
        #: all the same)
        self._scan: DenseScan | None = None
        #: set once the first stage is settled: serving, or failed to be made (the engine scans)
        self._scan_ready = threading.Event()
        self._builder: threading.Thread | None = None
        #: writes made while the scan is being made, replayed on it before it serves
        self._journal: list[Callable[[DenseScan], None]] = []
        self._generation = 0  # a clear() while the scan is made discards it
        # a write and a two-stage search do not interleave: the stages see one state of the shard
        self._lock = threading.Lock()

    def _config(self, sparse: bool = True) -> edge.EdgeConfig:
        dense = edge.EdgeVectorParams(size=self.dim, distance=edge.Distance.Cosine)
        if not sparse:
            return edge.EdgeConfig(vectors=dense)
        params = edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)
        return edge.EdgeConfig(vectors=dense, sparse_vectors={defaults.SPARSE_VECTOR: params})

    def _load(self, config: edge.EdgeConfig) -> edge.EdgeShard:
        try:
            # load() with a config also initialises an empty folder and checks the dimension
            return edge.EdgeShard.load(str(self.path), config)
        except Exception as exc:
            if any(marker in str(exc) for marker in _EDGE_LOCKED):
                raise RuntimeError(in_use(self.path)) from exc
            raise

    def _open(self) -> edge.EdgeShard:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            shard = self._load(self._config())
        except RuntimeError:
            raise
        except Exception:
            # made before the sparse vector? Then it loads as it was made, and is recreated
            # (points cannot gain a vector storage in place); anything else is not ours to wipe
            self._load(self._config(sparse=False)).close()
            log.warning("index at %s has no sparse vectors: recreating it, to rebuild from the ledger", self.path)
            shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            shard = self._load(self._config())
            self.upgraded = True
        schema = shard.info().payload_schema
        for name, kind in self._FIELDS.items():
            if name not in schema:
                shard.update(edge.UpdateOperation.create_field_index(name, kind))
        return shard

    def upsert(self, points: Sequence[Point]) -> None:
        with self._lock:
            for start in range(0, len(points), BATCH):
                part = points[start : start + BATCH]
                self._shard.update(edge.UpdateOperation.upsert_points(
                    [edge.Point(p.id, self._vectors(p), dict(p.payload)) for p in part]))
                # batch by batch: a failed write leaves the two in step
                self._follow(partial(_upsert, [(p.id, p.vector, p.payload) for p in part]))

    def _vectors(self, point: Point) -> edge.Vector:
        dense = as_floats(point.vector, self.dim)
        if point.sparse is None:
            return dense
        return {"": dense, defaults.SPARSE_VECTOR: edge.SparseVector(list(point.sparse.indices),
                                                                     list(point.sparse.values))}

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._lock:
            for batch in batches(ids):
                present = self._shard.retrieve(list(batch), with_payload=False, with_vector=False)
                if present:
                    self._shard.update(edge.UpdateOperation.delete_points([r.id for r in present]))
                    removed += len(present)
            self._follow(lambda scan: scan.delete(list(ids)))
        return removed

    def _follow(self, write: Callable[[DenseScan], None]) -> None:
        """Apply a write to the scan (caller holds the lock), or keep it for the one being made."""
        if self._scan is not None:
            write(self._scan)
        elif self._builder is not None and self._builder.is_alive():
            self._journal.append(write)

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        items: Sequence[int] | None = None,
    ) -> list[Hit]:
        floats = as_floats(vector, self.dim)
        if items is not None:  # one item's points, or a few items': the payload index finds them at once
            return self._query(edge.Query.Nearest(floats), limit, access, sources, items)
        with self._lock:
            if self._scan is not None:
                among = self._scan.candidates(floats, limit, access, sources)
                return self._query(edge.Query.Nearest(floats), limit, access, sources, None, among)
            self._start_scan()
        return self._query(edge.Query.Nearest(floats), limit, access, sources, None)

    def _start_scan(self) -> None:
        """Make the dense first stage in a thread, unless it is made or being made (caller holds the lock)."""
        if self._builder is None and not self._closed:
            self._builder = threading.Thread(target=self._build_scan, args=(self._generation,),
                                             name="sleepd-index-scan", daemon=True)
            self._builder.start()

    def warm(self, wait: float = 0.0) -> bool:
        """Start making the dense first stage (the first search would), wait up to ``wait`` seconds
        for it, and say whether it is settled: serving searches, or failed (the engine then scans)."""
        with self._lock:
            self._start_scan()
        return self._scan_ready.wait(wait)

    def _build_scan(self, generation: int) -> None:
        """Make the scan from the shard (11 s for 100k points on 2 loaded cores: the scroll), outside
        the lock; then, under it, replay the writes made meanwhile and let it serve."""
        try:
            scan = self._load_scan()
            scan.pack()
        except Exception:  # the engine's own scan serves, exact all the same
            if not self._closed:  # closed meanwhile: nothing to say
                log.warning("could not make the dense first stage of %s", self.path, exc_info=True)
            self._scan_ready.set()  # as fast as it will be: warm() waits no more
            return
        with self._lock:
            if generation != self._generation or self._closed:
                return
            for write in self._journal:
                write(scan)
            self._journal = []
            self._scan = scan
            self._scan_ready.set()

    def _load_scan(self) -> DenseScan:
        """Every point's stored vector and filtered payload, into a :class:`DenseScan`."""
        scan = DenseScan(self.dim)
        offset: edge.PointId | None = None
        while True:
            request = edge.ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=list(self._FIELDS),
                                         with_vector=[""])
            records, offset = self._shard.scroll(request)
            scan.upsert((str(r.id), r.vector, dict(r.payload or {})) for r in records)  # type: ignore[misc]
            if offset is None:
                return scan

    def search_sparse(
        self,
        vector: SparseVector,
        limit: int,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        items: Sequence[int] | None = None,
    ) -> list[Hit]:
        if not vector.indices:
            return []
        query = edge.Query.Nearest(edge.SparseVector(list(vector.indices), list(vector.values)),
                                   using=defaults.SPARSE_VECTOR)
        return self._query(query, limit, access, sources, items)

    def _query(self, query: edge.Query, limit: int, access: Sequence[str] | None,
               sources: Sequence[str] | None, items: Sequence[int] | None,
               among: list[str] | None = None) -> list[Hit]:
        """The engine's search; ``among``: only these ids (the scan's first stage), None: all."""
        terms = filter_terms(access, sources, items)
        if terms is None or limit <= 0:
            return []
        conditions: list[edge.ConditionType] = [
            edge.FieldCondition(name, match=edge.MatchAny(values)) for name, values in terms
        ]
        if among is not None:
            conditions.append(edge.HasIdCondition(set(among)))
        request = edge.QueryRequest(
            limit=limit,
            query=query,
            filter=edge.Filter(must=conditions) if conditions else None,
            with_payload=False,
            with_vector=False,
            params=edge.SearchParams(exact=EXACT),
        )
        return [Hit(str(p.id), float(p.score)) for p in self._shard.query(request)]

    def set_access(self, access: Sequence[str], items: Sequence[int]) -> None:
        with self._lock:
            for start in range(0, len(items), BATCH):
                batch = list(items[start:start + BATCH])
                where = edge.Filter(must=[edge.FieldCondition("item_id", match=edge.MatchAny(batch))])
                self._shard.update(edge.UpdateOperation.set_payload_by_filter(where, {"access": list(access)}))
            self._follow(lambda scan: scan.set_access(list(access), list(items)))

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, object]]:
        found = self._shard.retrieve(list(ids), with_payload=True, with_vector=False)
        return {str(r.id): dict(r.payload or {}) for r in found}

    def count(self) -> int:
        return self._shard.count(edge.CountRequest(exact=True))

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset: edge.PointId | None = None
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, with_payload=False, with_vector=False
            )
            records, offset = self._shard.scroll(request)
            found.update(str(r.id) for r in records)
            if offset is None:
                return found

    def clear(self) -> None:
        # dropping the folder reclaims the disk at once; deleted points would linger in segments
        with self._lock:
            self._shard.close()
            shutil.rmtree(self.path)
            self._shard = self._open()
            self._scan, self._builder, self._journal = None, None, []
            self._scan_ready.clear()
            self._generation += 1

    def close(self) -> None:
        if not self._closed:  # flush() on a closed shard raises; close() twice should not
            self._closed = True
            self._shard.flush()
            self._shard.close()
