"""The end-of-run audit: the ledger against what the load wrote, and the vector index against the
ledger, point for point. Reads the ledger's tables and the index folder directly (the daemon is
stopped by then), so it does not trust the code it checks."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as edge
from sqlalchemy import Engine, text

from sleepd.index import EdgeIndex
from sleepd.sparse import document_vector

__all__ = ["IndexPoint", "LedgerView", "index_mismatches", "index_points"]

#: ledger ``changes.status`` values that mean work is still owed
OPEN = ("pending", "enqueued")


@dataclass
class LedgerView:
    """The ledger's items, versions, changes and records of one run, read in one go."""

    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    changes: Counter[str] = field(default_factory=Counter)
    #: changes handed out more than once (a killed worker's, a restarted broker's)
    redelivered: int = 0
    failed_changes: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, engine: Engine) -> LedgerView:
        view = cls()
        with engine.connect() as conn:
            for row in conn.execute(text("SELECT * FROM items")).mappings():
                view.items[(row["source"], row["key"])] = dict(row)
            view.versions = [dict(r) for r in conn.execute(text("SELECT * FROM versions")).mappings()]
            for row in conn.execute(text("SELECT * FROM changes")).mappings():
                view.changes[row["status"]] += 1
                view.redelivered += row["attempts"] > 1
                if row["status"] == "failed":
                    view.failed_changes.append(dict(row))
            for row in conn.execute(text("SELECT * FROM records")).mappings():
                view.records[row["id"]] = dict(row)
        return view

    def item(self, source: str, key: str) -> dict[str, Any] | None:
        return self.items.get((source, key))

    def published_hashes(self, item_id: int) -> Counter[str]:
        """How many versions of the item were made from each content hash."""
        return Counter(v["content_hash"] for v in self.versions if v["item_id"] == item_id)

    def duplicates(self) -> list[tuple[int, str, int]]:
        """(item id, content hash, versions) for every content published more than once by one pipeline."""
        made = Counter((v["item_id"], v["content_hash"], v["pipeline_version"]) for v in self.versions)
        return [(item, digest, n) for (item, digest, _), n in made.items() if n > 1]

    def open_changes(self) -> int:
        return sum(self.changes[s] for s in OPEN)


@dataclass
class IndexPoint:
    payload: dict[str, Any]
    vector: list[float]
    #: the BM25 sparse vector, as {term index: weight}
    sparse: dict[int, float] = field(default_factory=dict)


def index_points(home: Path) -> dict[str, IndexPoint]:
    """Every point in the daemon's edge shard (its folder is free once the daemon stopped)."""
    index = EdgeIndex(home / "index", 384)
    points: dict[str, IndexPoint] = {}
    try:
        offset: Any = None
        while True:
            records, offset = index._shard.scroll(edge.ScrollRequest(
                offset=offset, limit=512, with_payload=True, with_vector=True))
            for record in records:
                vector: Any = record.vector
                sparse: dict[int, float] = {}
                if isinstance(vector, dict):  # the unnamed dense vector, beside the named sparse one
                    sparse = next(({int(i): float(v) for i, v in zip(x.indices, x.values, strict=True)}
                                   for x in vector.values() if isinstance(x, edge.SparseVector)), {})
                    vector = next((v for v in vector.values() if not isinstance(v, edge.SparseVector)), [])
                points[str(record.id)] = IndexPoint(dict(record.payload or {}), [float(x) for x in vector or []],
                                                    sparse)
            if offset is None:
                return points
    finally:
        index.close()


def _expected_payload(record: dict[str, Any]) -> dict[str, Any]:
    return {"access": json.loads(record["access"]), "source": record["source"], "item_id": record["item_id"],
            "kind": record["kind"], "version": record["version"]}


def index_mismatches(view: LedgerView, points: dict[str, IndexPoint]) -> list[str]:
    """Every way the index differs from the ledger's current records: a point with no record, a
    record with no point, a payload or a vector that is not the record's."""
    problems = [f"point {pid} has no record in the ledger (payload {points[pid].payload})"
                for pid in sorted(set(points) - set(view.records))]
    problems += [f"record {rid} ({view.records[rid]['path']} v{view.records[rid]['version']}) has no point"
                 for rid in sorted(set(view.records) - set(points))]
    for rid in sorted(set(points) & set(view.records)):
        record, point = view.records[rid], points[rid]
        expected = _expected_payload(record)
        if point.payload != expected:
            problems.append(f"point {rid}: payload {point.payload} != record {expected}")
        stored = np.frombuffer(record["embedding"], dtype=np.float32)
        vector = np.asarray(point.vector, dtype=np.float32)
        # the shard keeps cosine vectors normalised: compare directions
        if vector.shape != stored.shape or float(
                np.dot(vector, stored) / (np.linalg.norm(vector) * np.linalg.norm(stored) or 1.0)) < 0.9999:
            problems.append(f"point {rid}: vector is not the record's embedding")
        words = document_vector(record["title"], record["text"])
        if point.sparse != {i: pytest.approx(v, rel=1e-5) for i, v in zip(words.indices, words.values, strict=True)}:
            problems.append(f"point {rid}: sparse vector is not the record's words")
    return problems
