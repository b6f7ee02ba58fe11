"""The vector index: derived data, rebuildable from the SQL ledger at any time.

Two backends share the :class:`VectorIndex` protocol:

* :class:`EdgeIndex`, an embedded Qdrant Edge shard (``qdrant-edge-py``) kept in a folder. It
  writes a WAL, so an update is durable once ``upsert``/``delete`` returns; ``close`` flushes the
  segments and releases the folder lock. Edge runs no background optimizer, so segments stay
  unindexed (exact scan) unless ``EdgeShard.optimize`` is called; the payload indexes on
  ``access``/``source``/``item_id`` keep filtered search fast regardless. Searches ask for an
  exact scan all the same (:data:`EXACT`): an HNSW graph, once some process optimizes the shard,
  would make the candidates depend on the graph, and the graph on the order and timing of writes.
* :class:`QdrantServerIndex`, a Qdrant server through ``qdrant-client`` (or its local mode, which
  the tests use in place of a server).

Point ids are UUID strings; vectors arrive L2-normalised and are compared by cosine similarity.
Beside the dense vector each point may carry a sparse one (:data:`~sleepd.defaults.SPARSE_VECTOR`,
BM25 term-frequency saturation per hashed term, :mod:`sleepd.sparse`); the engine weighs its terms
by IDF (the IDF modifier). An index made before the sparse vector existed is recreated empty at
open and says so (``upgraded``): the :class:`~sleepd.indexer.Indexer` then rebuilds it from the ledger.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import qdrant_edge as edge
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from sleepd import defaults
from sleepd.sparse import SparseVector

__all__ = ["EdgeIndex", "Hit", "Point", "QdrantServerIndex", "VectorIndex", "open_index"]

log = logging.getLogger("sleepd.index")

#: exact (brute-force) search: the same candidates in every home built from the same records, whatever
#: the segment layout (issue 12). 100k random 384-dim points, half matching the filter, limit 64, 2
#: busy cores: on the unoptimized edge shard (what sleepd writes) p50 37.2 ms without, 39.8 ms with,
#: identical hits; once optimized (1,318 s), HNSW p50 4.8 ms but recall@64 0.20 of the exact hits,
#: hnsw_ef=512 8.0 ms and 0.66, exact 25.0 ms with the same hits as before the graph
EXACT = True
#: points per write (and per id look-up) sent to the engine at once
BATCH = 256
#: points per page when scrolling through every id
_SCROLL_PAGE = 1024
#: what each engine says when another handle holds the folder lock
_EDGE_LOCKED = ("WouldBlock", "Can't init WAL")
_LOCAL_LOCKED = ("already accessed by another instance",)


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
    ``search_sparse`` is ``search`` by the sparse vector (score: the IDF-weighted sum over shared
    terms). ``upgraded`` is True when opening found an index without sparse vectors and recreated
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
    def count(self) -> int: ...
    def ids(self) -> set[str]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


def _filter_terms(
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


def _as_floats(vector: Sequence[float], dim: int) -> list[float]:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise ValueError(f"expected a vector of {dim} floats, got shape {array.shape}")
    floats: list[float] = array.tolist()  # plain Python floats, which both engines take
    return floats


def _batches(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(items))  # a repeated id is one point, counted once
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def _in_use(path: Path) -> str:
    return (
        f"vector index at {path} is in use by another process (the daemon?); "
        "stop it or go through it, the index folder cannot be opened twice"
    )


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
                raise RuntimeError(_in_use(self.path)) from exc
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
        for start in range(0, len(points), BATCH):
            batch = [edge.Point(p.id, self._vectors(p), dict(p.payload)) for p in points[start : start + BATCH]]
            self._shard.update(edge.UpdateOperation.upsert_points(batch))

    def _vectors(self, point: Point) -> edge.Vector:
        dense = _as_floats(point.vector, self.dim)
        if point.sparse is None:
            return dense
        return {"": dense, defaults.SPARSE_VECTOR: edge.SparseVector(list(point.sparse.indices),
                                                                     list(point.sparse.values))}

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for batch in _batches(ids):
            present = self._shard.retrieve(list(batch), with_payload=False, with_vector=False)
            if present:
                self._shard.update(edge.UpdateOperation.delete_points([r.id for r in present]))
                removed += len(present)
        return removed

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        items: Sequence[int] | None = None,
    ) -> list[Hit]:
        return self._query(edge.Query.Nearest(_as_floats(vector, self.dim)), limit, access, sources, items)

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
               sources: Sequence[str] | None, items: Sequence[int] | None) -> list[Hit]:
        terms = _filter_terms(access, sources, items)
        if terms is None or limit <= 0:
            return []
        conditions: list[edge.ConditionType] = [
            edge.FieldCondition(name, match=edge.MatchAny(values)) for name, values in terms
        ]
        request = edge.QueryRequest(
            limit=limit,
            query=query,
            filter=edge.Filter(must=conditions) if conditions else None,
            with_payload=False,
            with_vector=False,
            params=edge.SearchParams(exact=EXACT),
        )
        return [Hit(str(p.id), float(p.score)) for p in self._shard.query(request)]

    def count(self) -> int:
        return self._shard.count(edge.CountRequest(exact=True))

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset: edge.PointId | None = None
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, with_payload=False, with_vector=False
            )
            records, offset = self._shard.scroll(request)
            found.update(str(r.id) for r in records)
            if offset is None:
                return found

    def clear(self) -> None:
        # dropping the folder reclaims the disk at once; deleted points would linger in segments
        self._shard.close()
        shutil.rmtree(self.path)
        self._shard = self._open()

    def close(self) -> None:
        if not self._closed:  # flush() on a closed shard raises; close() twice should not
            self._closed = True
            self._shard.flush()
            self._shard.close()


class QdrantServerIndex:
    """A collection on a Qdrant server (``url``) or in qdrant-client's local mode (``path``)."""

    def __init__(self, dim: int, collection: str, url: str | None = None, path: Path | None = None) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url and path")
        self.dim = dim
        self.collection = collection
        self.upgraded = False
        self._local = path is not None
        if path is None:
            self._client = QdrantClient(url=url)
        else:
            try:
                self._client = QdrantClient(path=str(path))
            except RuntimeError as exc:
                if any(marker in str(exc) for marker in _LOCAL_LOCKED):
                    raise RuntimeError(_in_use(path)) from exc
                raise
        if not self._client.collection_exists(collection):
            self._create()
        elif defaults.SPARSE_VECTOR not in (self._client.get_collection(collection).config.params.sparse_vectors or {}):
            # made before the sparse vector: recreated empty, for the indexer to rebuild
            log.warning("collection %s has no sparse vectors: recreating it, to rebuild from the ledger", collection)
            self._client.delete_collection(collection)
            self._create()
            self.upgraded = True

    def _create(self) -> None:
        params = qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE)
        sparse = {defaults.SPARSE_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)}
        self._client.create_collection(self.collection, vectors_config=params, sparse_vectors_config=sparse)
        if self._local:  # local mode ignores payload indexes (and warns about them)
            return
        for name, kind in (
            ("access", qm.PayloadSchemaType.KEYWORD),
            ("source", qm.PayloadSchemaType.KEYWORD),
            ("item_id", qm.PayloadSchemaType.INTEGER),
        ):
            self._client.create_payload_index(self.collection, name, field_schema=kind)

    def upsert(self, points: Sequence[Point]) -> None:
        for start in range(0, len(points), BATCH):
            batch = [qm.PointStruct(id=p.id, vector=self._vectors(p), payload=dict(p.payload))
                     for p in points[start : start + BATCH]]
            self._client.upsert(self.collection, points=batch, wait=True)

    def _vectors(self, point: Point) -> qm.VectorStruct:
        dense = _as_floats(point.vector, self.dim)
        if point.sparse is None:
            return dense
        sparse = qm.SparseVector(indices=list(point.sparse.indices), values=list(point.sparse.values))
        return {"": dense, defaults.SPARSE_VECTOR: sparse}

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for batch in _batches(ids):
            present = self._client.retrieve(self.collection, batch, with_payload=False, with_vectors=False)
            if present:
                selector = qm.PointIdsList(points=[r.id for r in present])
                self._client.delete(self.collection, points_selector=selector, wait=True)
                removed += len(present)
        return removed

    def search(
        self,
        vector: Sequence[float],
        limit: int,
        access: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        items: Sequence[int] | None = None,
    ) -> list[Hit]:
        return self._query(_as_floats(vector, self.dim), None, limit, access, sources, items)

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
        query = qm.SparseVector(indices=list(vector.indices), values=list(vector.values))
        return self._query(query, defaults.SPARSE_VECTOR, limit, access, sources, items)

    def _query(self, query: list[float] | qm.SparseVector, using: str | None, limit: int,
               access: Sequence[str] | None, sources: Sequence[str] | None, items: Sequence[int] | None) -> list[Hit]:
        terms = _filter_terms(access, sources, items)
        if terms is None or limit <= 0:
            return []
        conditions: list[qm.Condition] = [
            qm.FieldCondition(key=name, match=qm.MatchAny(any=values)) for name, values in terms
        ]
        response = self._client.query_points(
            self.collection,
            query=query,
            using=using,
            query_filter=qm.Filter(must=conditions) if conditions else None,
            limit=limit,
            with_payload=False,
            with_vectors=False,
            # local mode is always exact (and warns about search_params)
            search_params=None if self._local else qm.SearchParams(exact=EXACT),
        )
        return [Hit(str(p.id), float(p.score)) for p in response.points]

    def count(self) -> int:
        return self._client.count(self.collection, exact=True).count

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset: qm.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self.collection, limit=_SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
            )
            found.update(str(r.id) for r in records)
            if offset is None:
                return found

    def clear(self) -> None:
        self._client.delete_collection(self.collection)
        self._create()

    def close(self) -> None:
        self._client.close()


def open_index(
    home: Path, dim: int, qdrant_url: str | None = None, collection: str = "sleepd"
) -> VectorIndex:
    """qdrant_url None -> EdgeIndex at home / "index"; "local:" + path -> QdrantServerIndex in local mode
    at that path; else a server URL."""
    if qdrant_url is None:
        return EdgeIndex(home / "index", dim)
    if qdrant_url.startswith("local:"):
        return QdrantServerIndex(dim, collection, path=Path(qdrant_url.removeprefix("local:")))
    return QdrantServerIndex(dim, collection, url=qdrant_url)
