"""A first stage for the edge shard's exact dense search: every point's vector in one numpy matrix,
scanned by one matrix-vector product, to hand the engine a few ids to score instead of all of them.

Why: the engine's exact scan over 100k points cost 19-21 ms a query at 100k points (issue 12). The
engine still scores what it returns: the scan only names the ids the engine then searches among,
with the same filter and limit, so hits and scores are the engine's own, bit for bit.

Why it returns the same hits as the engine's full scan: the scan's score of a point and the
engine's differ by at most ``e``, the rounding of two float32 dot products of unit vectors of
``dim`` terms (at most ``dim * 2**-24`` each: 2.3e-5 at 384) and of two normalisations of the
same vector. Let ``t`` be the scan's ``limit``-th best score; each of the scan's top ``limit``
points has an engine score of at least ``t - e``, so the engine's ``limit``-th best is at least
``t - e``, and every point of the engine's top ``limit`` has a scan score of at least ``t - 2e``.
The scan names every point scoring at least ``t -`` :data:`MARGIN` (``MARGIN`` > ``2e``): a
superset of the engine's top ``limit``, among which the engine finds the same top ``limit``.
(Of points tied at the cut, which one the engine keeps is its choice either way; the query drops
them all, :func:`sleepd.ranking.settled`.)

The matrix is built from the engine's own stored vectors and payloads (a scroll) at the first
search, and kept in step by the index's writes (upsert, delete, access changes, clear); nothing
is stored, so a rebuild from the ledger rebuilds it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["MARGIN", "MIN_POINTS", "DenseScan"]

#: below the ``limit``-th best scan score, how far a point may score and still be named: more than
#: twice the rounding bound (4.6e-5 at 384 dimensions, see the module's docstring); the few extra
#: ids cost the engine nothing measurable
MARGIN = 1e-3
#: the scan pays only when the engine would read many vectors: with fewer points than this
#: (matching the filter), the engine scans them itself
MIN_POINTS = 4096
_GROW = 1024


class DenseScan:
    """Unit vectors and the filtered payload fields (access, source, item id) of every point, by row."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._access = np.zeros(0, dtype=np.int32)  # a code of the point's access list
        self._source = np.zeros(0, dtype=np.int32)  # a code of its source (-1: none)
        self._items = np.zeros(0, dtype=np.int64)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._free: list[int] = []
        self._access_codes: dict[frozenset[str], int] = {}
        self._source_codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._row)

    def _code(self, access: object) -> int:
        values = frozenset(str(v) for v in access) if isinstance(access, list | tuple) else frozenset()
        return self._access_codes.setdefault(values, len(self._access_codes))

    def _grow(self, rows: int) -> None:
        size = max(rows, 2 * len(self._alive), _GROW)
        self._vectors = np.concatenate([self._vectors, np.zeros((size - len(self._alive), self.dim), np.float32)])
        for name in ("_alive", "_access", "_source", "_items"):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros(size - len(old), dtype=old.dtype)]))

    def upsert(self, points: Iterable[tuple[str, Sequence[float], dict[str, object]]]) -> None:
        """Add or replace points: (id, vector, payload)."""
        for point_id, vector, payload in points:
            row = self._row.get(point_id)
            if row is None:
                if self._free:
                    row = self._free.pop()
                else:
                    row = len(self._ids)
                    self._ids.append(point_id)
                    if row >= len(self._alive):
                        self._grow(row + 1)
                self._ids[row] = point_id
                self._row[point_id] = row
            array = np.asarray(vector, dtype=np.float32)
            norm = np.linalg.norm(array)
            self._vectors[row] = array / norm if norm > 0 else array  # the engine's cosine normalises too
            self._alive[row] = True
            self._access[row] = self._code(payload.get("access"))
            source = payload.get("source")
            self._source[row] = self._source_codes.setdefault(source, len(self._source_codes)) \
                if isinstance(source, str) else -1
            item = payload.get("item_id")
            self._items[row] = item if isinstance(item, int) else -1

    def delete(self, ids: Iterable[str]) -> None:
        for point_id in ids:
            row = self._row.pop(point_id, None)
            if row is not None:
                self._alive[row] = False
                self._free.append(row)

    def set_access(self, access: Sequence[str], items: Sequence[int]) -> None:
        used = len(self._ids)
        rows = np.isin(self._items[:used], np.asarray(list(items), dtype=np.int64)) & self._alive[:used]
        self._access[:used][rows] = self._code(list(access))

    def candidates(self, vector: Sequence[float], limit: int, access: Sequence[str] | None,
                   sources: Sequence[str] | None) -> list[str] | None:
        """The ids among which the engine's best ``limit`` (with this filter) are, or None when the
        filter leaves fewer than :data:`MIN_POINTS` points (the engine then scans them alone)."""
        used = len(self._ids)
        keep = self._alive[:used].copy()
        if access is not None:
            wanted = set(access)
            allowed = np.fromiter((bool(values & wanted) for values in self._access_codes), dtype=bool,
                                  count=len(self._access_codes))
            keep &= allowed[self._access[:used]]
        if sources is not None:
            codes = [self._source_codes[s] for s in sources if s in self._source_codes]
            keep &= np.isin(self._source[:used], np.asarray(codes, dtype=np.int32))
        matching = int(np.count_nonzero(keep))
        if matching < max(MIN_POINTS, limit + 1):
            return None
        query = np.asarray(vector, dtype=np.float32)
        norm = np.linalg.norm(query)
        scores: npt.NDArray[np.float32] = self._vectors[:used] @ (query / norm if norm > 0 else query)
        np.putmask(scores, ~keep, -np.inf)
        cut = float(np.partition(scores, used - limit)[used - limit])
        return [self._ids[row] for row in np.flatnonzero(scores >= cut - MARGIN).tolist()]
