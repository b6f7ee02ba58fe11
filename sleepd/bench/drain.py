"""The real pipeline driven in one process, for ``sleepd bench`` and the tests: what the scheduler,
the Celery workers and the indexer do in the daemon, done here in turn, so a measurement or an
assertion sees every change enriched and indexed when the call returns. The daemon never uses it."""

from __future__ import annotations

from collections.abc import Callable

from sleepd import defaults
from sleepd.embed import Embedder
from sleepd.service import Service
from workers.tasks import Outcome, run_batch, then_aggregates

__all__ = ["enrich_pending"]

#: a change handed out here is leased this long: nothing else runs it meanwhile
LEASE_SECONDS = 3600
#: changes taken from the ledger per round
ROUND = 100


def enrich_pending(service: Service, embedder: Embedder,
                   on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Drain the queue in this process: run S(c) for every open change now, exactly as a worker
    would, then apply the index events. A transient error (an sql source unreachable) is raised
    once its batchmates are published."""
    outcomes = []
    while True:
        due = service.ledger.due_changes(ROUND, lease_seconds=LEASE_SECONDS)
        if not due:
            break
        service.ledger.mark_enqueued([c.id for c in due if c.id is not None])
        for start in range(0, len(due), defaults.BATCH_ITEMS):  # as the scheduler hands them out
            batch = due[start:start + defaults.BATCH_ITEMS]
            done = run_batch(service.ledger, embedder, service.settings, [(c.item_id, c.force) for c in batch])
            for change, outcome in zip(batch, done, strict=True):
                then_aggregates(service.ledger, change.item_id)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
            transient = next((o.exc for o in done if o.exc is not None), None)
            if transient is not None:
                raise transient
    service.indexer.sync()
    return outcomes
