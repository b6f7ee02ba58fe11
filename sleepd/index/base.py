"""What every vector index backend shares: the :class:`VectorIndex` protocol, its :class:`Point`
and :class:`Hit`, the search settings, and the small helpers both backends use (filters, vector
checks, batches). The backends are :mod:`sleepd.index.edge` and :mod:`sleepd.index.server`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from sleepd.sparse import SparseVector

__all__ = ["BATCH", "EXACT", "SCROLL_PAGE", "Hit", "Point", "VectorIndex", "as_floats", "batches", "filter_terms",
           "in_use"]

#: exact (brute-force) search: the same candidates in every home built from the same records, whatever
#: the segment layout (issue 12). 100k random 384-dim points, half matching the filter, limit 64, 2
#: busy cores: on the unoptimized edge shard (what sleepd writes) p50 37.2 ms without, 39.8 ms with,
#: identical hits; once optimized (1,318 s), HNSW p50 4.8 ms but recall@64 0.20 of the exact hits,
#: hnsw_ef=512 8.0 ms and 0.66, exact 25.0 ms with the same hits as before the graph. The edge backend
#: scans int8 codes first and lets the engine score only the ids that can be among its exact hits
#: (:mod:`sleepd.index.scan`): the same hits, at a third of the CPU
EXACT = True
#: points per write (and per id look-up) sent to the engine at once
BATCH = 256
#: points per page when scrolling through every id
SCROLL_PAGE = 1024
#: what each engine says when another handle holds the folder lock


@dataclass(frozen=True)
class Point:
    """One record's vector and the payload searches filter on.

    ``id`` must be a canonical (lowercase, hyphenated) UUID string: the engines store UUIDs, and
    ``ids()``/``search`` hand them back in that form.
    """

    id: str
    vector: Sequence[float]
    #: at least "access" (list[str]), "source" (str), "item_id" (int), "kind" (str), "version" (int)
    payload: dict[str, object]
    #: the record's words (:func:`sleepd.sparse.document_vector`); None: found by its vector alone
    sparse: SparseVector | None = None


@dataclass(frozen=True)
class Hit:
    """A search result: a point id and its cosine similarity (higher is better)."""

    id: str
    score: float


class VectorIndex(Protocol):
    """What the daemon needs from a vector index.

    ``delete`` returns how many of the ids were present. ``search`` returns the nearest points
    first; ``access=None`` applies no access filter (admin), otherwise a point must share at least
    one "access" value with it; ``sources`` restricts the "source" values and ``items`` the
    "item_id" values. An empty ``access``, ``sources`` or ``items`` matches nothing. ``clear``
    removes every point and leaves the index usable; ``close`` releases the folder lock.
    ``set_access`` overwrites the "access" payload of every point of ``items`` in place, by filter
    (an access change: no vector is sent again); ``payloads`` reads points' payloads back.
    ``search_sparse`` is ``search`` by the sparse vector (score: the IDF-weighted sum over shared
    terms). ``warm`` starts making what makes searches fast (the edge shard's dense first stage),
    waits up to ``wait`` seconds for it and says whether it is in place (searches are exact either
    way). ``upgraded`` is True when opening found an index without sparse vectors and recreated
    it empty: whoever owns the ledger must rebuild it.
    """

    upgraded: bool

    def upsert(self, points: Sequence[Point]) -> None: ...
    def delete(self, ids: Sequence[str]) -> int: ...
    def search(
        self,
        vector: Sequence[float],
        limit: int,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        items: Sequence[int] | None = None,
    ) -> list[Hit]: ...
    def search_sparse(
        self,
        vector: SparseVector,
        limit: int,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        items: Sequence[int] | None = None,
    ) -> list[Hit]: ...
    def set_access(self, access: Sequence[str], items: Sequence[int]) -> None: ...
    def warm(self, wait: float = 0.0) -> bool: ...
    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, object]]: ...
    def count(self) -> int: ...
    def ids(self) -> set[str]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


def filter_terms(
    access: Sequence[str] | None, sources: Sequence[str] | None, items: Sequence[int] | None = None
) -> list[tuple[str, list[str] | list[int]]] | None:
    """(field, any-of values) conditions that must all hold; None when nothing can match."""
    terms: list[tuple[str, list[str] | list[int]]] = []
    if access is not None:
        terms.append(("access", list(access)))
    if sources is not None:
        terms.append(("source", list(sources)))
    if items is not None:
        terms.append(("item_id", list(items)))
    return None if any(not values for _, values in terms) else terms


def as_floats(vector: Sequence[float], dim: int) -> list[float]:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise ValueError(f"expected a vector of {dim} floats, got shape {array.shape}")
    floats: list[float] = array.tolist()  # plain Python floats, which both engines take
    return floats


def batches(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(items))  # a repeated id is one point, counted once
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def in_use(path: Path) -> str:
    return (
        f"vector index at {path} is in use by another process (the daemon?); "
        "stop it or go through it, the index folder cannot be opened twice"
    )
