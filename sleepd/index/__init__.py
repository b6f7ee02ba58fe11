"""The vector index: derived data, rebuildable from the SQL ledger at any time.

Two backends share the :class:`VectorIndex` protocol (:mod:`sleepd.index.base`):

* :class:`EdgeIndex` (:mod:`sleepd.index.edge`), an embedded Qdrant Edge shard (``qdrant-edge-py``)
  kept in a folder. It writes a WAL, so an update is durable once ``upsert``/``delete`` returns;
  ``close`` flushes the segments and releases the folder lock. Edge runs no background optimizer,
  so segments stay unindexed (exact scan) unless ``EdgeShard.optimize`` is called; the payload
  indexes on ``access``/``source``/``item_id`` keep filtered search fast regardless. Searches ask
  for an exact scan all the same (:data:`~sleepd.index.base.EXACT`): an HNSW graph, once some
  process optimizes the shard, would make the candidates depend on the graph, and the graph on the
  order and timing of writes. Over many points the exact dense search has a first stage
  (:mod:`sleepd.index.scan`): int8 codes of every vector, scanned with onnxruntime, name the few
  ids among which the engine's exact top hits provably are, and the engine scores only those.
* :class:`QdrantServerIndex` (:mod:`sleepd.index.server`), a Qdrant server through
  ``qdrant-client`` (or its local mode, which the tests use in place of a server).

Point ids are UUID strings; vectors arrive L2-normalised and are compared by cosine similarity.
Beside the dense vector each point may carry a sparse one (:data:`~sleepd.defaults.SPARSE_VECTOR`,
BM25 term-frequency saturation per hashed term, :mod:`sleepd.sparse`); the engine weighs its terms
by IDF (the IDF modifier). An index made before the sparse vector existed is recreated empty at
open and says so (``upgraded``): the :class:`~sleepd.indexer.Indexer` then rebuilds it from the ledger.
"""

from __future__ import annotations

from pathlib import Path

from sleepd.index.base import Hit, Point, VectorIndex
from sleepd.index.edge import EdgeIndex
from sleepd.index.server import QdrantServerIndex

__all__ = ["EdgeIndex", "Hit", "Point", "QdrantServerIndex", "VectorIndex", "open_index"]


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
