"""Test helpers that drive the real pipeline in-process (no worker process)."""

from __future__ import annotations

from sleepd.embed import Embedder
from sleepd.service import Service
from workers.tasks import Outcome, run_enrichment


def enrich_pending(service: Service, embedder: Embedder) -> list[Outcome]:
    """Run S(c) for every open change now, as a worker would, then apply the index events."""
    outcomes = []
    while True:
        due = service.ledger.due_changes(100, lease_seconds=3600)
        if not due:
            break
        service.ledger.mark_enqueued([c.id for c in due if c.id is not None])
        for change in due:
            outcomes.append(run_enrichment(service.ledger, embedder, service.settings, change.item_id,
                                           change.force))
    service.indexer.sync()
    return outcomes
