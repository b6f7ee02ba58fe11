"""The server backend: a collection on a Qdrant server through ``qdrant-client``, or in its local
mode (which the tests use in place of a server). A collection made before the sparse vector
existed is recreated empty at open (``upgraded``), for the indexer to rebuild from the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from sleepd import defaults
from sleepd.index.base import BATCH, EXACT, SCROLL_PAGE, Hit, Point, as_floats, batches, filter_terms, in_use
from sleepd.sparse import SparseVector

__all__ = ["QdrantServerIndex"]

log = logging.getLogger("sleepd.index")

#: what each engine says when another handle holds the folder lock
_LOCAL_LOCKED = ("already accessed by another instance",)


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
                    raise RuntimeError(in_use(path)) from exc
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
        dense = as_floats(point.vector, self.dim)
        if point.sparse is None:
            return dense
        sparse = qm.SparseVector(indices=list(point.sparse.indices), values=list(point.sparse.values))
        return {"": dense, defaults.SPARSE_VECTOR: sparse}

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        for batch in batches(ids):
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
        return self._query(as_floats(vector, self.dim), None, limit, access, sources, items)

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
        terms = filter_terms(access, sources, items)
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

    def set_access(self, access: Sequence[str], items: Sequence[int]) -> None:
        for start in range(0, len(items), BATCH):
            batch = list(items[start:start + BATCH])
            where = qm.Filter(must=[qm.FieldCondition(key="item_id", match=qm.MatchAny(any=batch))])
            self._client.set_payload(self.collection, payload={"access": list(access)}, points=where, wait=True)

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, object]]:
        found = self._client.retrieve(self.collection, list(ids), with_payload=True, with_vectors=False)
        return {str(r.id): dict(r.payload or {}) for r in found}

    def warm(self, wait: float = 0.0) -> bool:
        """Nothing to make: the server's own index serves."""
        return True

    def count(self) -> int:
        return self._client.count(self.collection, exact=True).count

    def ids(self) -> set[str]:
        found: set[str] = set()
        offset: qm.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self.collection, limit=SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
            )
            found.update(str(r.id) for r in records)
            if offset is None:
                return found

    def clear(self) -> None:
        self._client.delete_collection(self.collection)
        self._create()

    def close(self) -> None:
        self._client.close()
