"""The ablation: sleepd's query path over plain chunks instead of enriched records.

A second home over the same source, whose records are exactly the plain-RAG baseline's chunks
(512 tokens, 64 overlap), one version per item, embedded by the same model. Queries then go
through the real :class:`~sleepd.service.Service` (index, hybrid dense + sparse fusion, ranking,
packing), so the difference between this row and plain RAG is what the ranking adds, and the
difference between sleepd and this row is what the sleep-time records S(c) add.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sleepd.bench.baseline import Chunk
from sleepd.bench.pipeline import Workspace, open_workspace
from sleepd.embed import Embedder, Vectors
from sleepd.errors import ItemError
from sleepd.records import Draft, Evidence, RecordKind
from workers.items import load_item
from workers.tasks import pipeline_version

__all__ = ["chunk_memory"]


def chunk_memory(ws: Workspace, chunks: list[Chunk], vectors: Vectors, work: Path, embedder: Embedder) -> Workspace:
    """A fresh home over ``ws``'s corpus whose records are ``chunks`` (with their ``vectors``,
    row for row): scanned like the real one, each item published as its chunks, no aggregates.
    An item sleepd refuses to read (invalid UTF-8, too large) gets no chunks here either."""
    chunk_ws = open_workspace(ws.corpus, work, embedder, home_name="chunks-home")
    ledger, settings = chunk_ws.service.ledger, chunk_ws.service.settings
    chunk_ws.watchers.scan_all()
    by_item: dict[str, list[int]] = defaultdict(list)
    for i, chunk in enumerate(chunks):
        by_item[chunk.path].append(i)
    target = pipeline_version(settings)
    for key, item in sorted(ledger.known_items(chunk_ws.source.name).items()):
        rows = by_item.get(key)
        try:
            loaded = load_item(chunk_ws.source, key, settings)
        except ItemError:  # not UTF-8, too large, unreadable: sleepd enriches none of it either
            continue
        if not rows or loaded is None or item.id is None:
            continue
        _, digest, access = loaded
        drafts = [Draft(RecordKind.CHUNK, chunks[i].text, (Evidence(key, chunks[i].start_line, chunks[i].end_line),),
                        title=key) for i in rows]
        ledger.publish_version(item.id, digest, target, drafts, vectors[rows], access, ledger.last_change_id(item.id))
    chunk_ws.service.indexer.sync()
    return chunk_ws
