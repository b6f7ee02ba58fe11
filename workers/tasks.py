"""S(c) for one item: load, parse, enrich, embed, publish one version.

Idempotent by (item, content hash, pipeline version): a duplicate delivery or a retry
publishes nothing new. The ledger is the outbox; the task only closes the changes it saw.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from sleepd import defaults
from sleepd.aggregates import is_aggregate, plan_for, refresh_aggregates
from sleepd.embed import MODEL_NAME, Embedder, get_embedder
from sleepd.errors import ItemError, Unavailable
from sleepd.ledger import Ledger
from sleepd.llm_budget import llm_version
from sleepd.records import Draft
from sleepd.settings import Settings, Source, SqlSource
from sleepd.sqlrows import account_document, item_access
from sleepd.sqlrows import read_item as read_sql_item
from sleepd.tokens import get_tokenizer
from workers.app import app, current_settings
from workers.enrich import enrich_text
from workers.extract import document_text

if TYPE_CHECKING:
    from sleepd.service import Service

__all__ = ["PIPELINE_VERSION", "TASK_NAME", "enrich_items", "enrich_pending", "pipeline_version", "read_item",
           "run_batch", "run_enrichment", "then_aggregates"]

log = logging.getLogger("sleepd.worker")

#: changes when an enricher or the model changes, so memory is re-made lazily
PIPELINE_VERSION = f"det-5/{MODEL_NAME}"
TASK_NAME = "sleepd.enrich_items"
#: bytes looked at for NUL to call a file binary (what git and grep do)
BINARY_SNIFF = 8192


def pipeline_version(settings: Settings) -> str:
    """PIPELINE_VERSION, plus ``+llm:<model>`` when the LLM layer is configured: changing the model
    re-makes memory lazily, and an item whose LLM part was skipped (budget, endpoint down) is
    published under plain PIPELINE_VERSION, so it is picked up again when the budget allows."""
    if settings.llm_enabled and settings.llm_model:
        return llm_version(PIPELINE_VERSION, settings.llm_model)
    return PIPELINE_VERSION


def read_item(path: Path, max_bytes: int) -> tuple[str, str] | None:
    """The text and content hash of a file (PDF and DOCX: their text), None if it is gone, or
    ItemError saying why not."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ItemError("not a regular file")
        if size > max_bytes:
            raise ItemError(f"file too large: {size} bytes, the limit (max_file_bytes) is {max_bytes}")
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ItemError(f"unreadable: {exc.strerror or exc}") from None
    extracted = document_text(path.suffix, data)
    if extracted is not None:
        return extracted, hashlib.sha256(data).hexdigest()
    if b"\0" in data[:BINARY_SNIFF]:
        raise ItemError("binary file (NUL bytes): not enriched")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ItemError(f"invalid UTF-8 at byte {exc.start}: not enriched") from None
    return text, hashlib.sha256(data).hexdigest()


def _load(source: Source, key: str, settings: Settings) -> tuple[str, str, tuple[str, ...]] | None:
    """An item's current text, content hash and access list; None if it is gone. An sql item is
    read from its database now (rows hashed exactly as the watcher hashes them, so a task for
    stale content publishes the current content); an unreachable database raises Unavailable,
    which the task retries with backoff."""
    if isinstance(source, SqlSource):
        found = read_sql_item(source, key)
        if found is None:
            return None
        rows, digest = found
        return account_document(source, key, rows), digest, item_access(source, rows)
    loaded = read_item(source.path / key, settings.max_file_bytes)
    return None if loaded is None else (*loaded, source.access)


@dataclass
class Outcome:
    status: str  # published | unchanged | deleted | failed | missing
    version: int | None = None
    records: int = 0
    error: str | None = None
    #: the LLM layer's outcome (ok, malformed, budget_exhausted, unavailable), None without one
    llm: str | None = None


@dataclass
class _Ready:
    """An item read and enriched, waiting for its vectors (embedded together with its batch)."""

    item_id: int
    digest: str
    target: str
    drafts: list[Draft]
    access: Sequence[str]
    seen: int
    force: bool
    version: int
    llm: str | None = None


def run_enrichment(ledger: Ledger, embedder: Embedder, settings: Settings, item_id: int,
                   force: bool = False) -> Outcome:
    """Enrich one item now (the body of the Celery task, callable directly)."""
    return run_batch(ledger, embedder, settings, [(item_id, force)])[0]


def run_batch(ledger: Ledger, embedder: Embedder, settings: Settings,
              items: Sequence[tuple[int, bool]]) -> list[Outcome]:
    """Enrich several items: each is read, enriched and published on its own (atomic, idempotent),
    but their records are embedded in one call, which runs the model at its batch speed (one call
    per small item ran at about half of it on these 2 cores)."""
    prepared = [_prepare(ledger, embedder, settings, item_id, force) for item_id, force in items]
    ready = [p for p in prepared if isinstance(p, _Ready)]
    vectors = embedder.encode([d.text for r in ready for d in r.drafts])
    offset = 0
    published: dict[int, Outcome] = {}
    for r in ready:
        mine, offset = vectors[offset:offset + len(r.drafts)], offset + len(r.drafts)
        version = ledger.publish_version(r.item_id, r.digest, r.target, r.drafts, mine, r.access, r.seen,
                                         force=r.force)
        published[id(r)] = (Outcome("unchanged", version=r.version, llm=r.llm) if version is None else
                            Outcome("published", version=version, records=len(r.drafts), llm=r.llm))
    return [published[id(p)] if isinstance(p, _Ready) else p for p in prepared]


def _prepare(ledger: Ledger, embedder: Embedder, settings: Settings, item_id: int, force: bool) -> Outcome | _Ready:
    """Everything but embedding and publishing: an Outcome when the item needs neither."""
    item = ledger.item(item_id)
    if item is None:
        return Outcome("missing")
    seen = ledger.last_change_id(item_id)  # every change up to here is older than what we read
    source = ledger.get_source(item.source)
    if source is None:
        return Outcome("missing")
    if is_aggregate(item.key):
        return _run_aggregate(ledger, embedder, settings, source, item.key, item_id, seen, force)
    try:
        loaded = _load(source, item.key, settings)
    except ItemError as exc:
        ledger.fail_item(item_id, exc.message, seen)
        return Outcome("failed", error=exc.message)
    if loaded is None:
        removed = ledger.retract_item(item_id, seen)
        return Outcome("deleted", records=removed)
    text, digest, access = loaded
    target = pipeline_version(settings)
    if not force and ledger.close_if_current(item_id, digest, target, seen):
        return Outcome("unchanged", version=item.version)
    drafts = enrich_text(item.key, text, source.profile)
    llm = None
    if settings.llm_enabled:
        from workers.llm import enrich_with_llm

        result = enrich_with_llm(ledger, settings, source.name, item_id, item.key, text, drafts)
        drafts, llm = drafts + result.drafts, result.outcome
        if not result.done:  # budget or endpoint: publish what we have, the LLM part comes later
            target = PIPELINE_VERSION
    return _Ready(item_id, digest, target, drafts, access, seen, force, item.version, llm)


def then_aggregates(ledger: Ledger, item_id: int) -> None:
    """After a task for an item: observe its source's aggregates with their input hashes once the last
    open change of the source is done, so those that depend on what changed are re-made, only those."""
    item = ledger.item(item_id)
    if item is not None and not is_aggregate(item.key):
        refresh_aggregates(ledger, item.source)


def _run_aggregate(ledger: Ledger, embedder: Embedder, settings: Settings, source: Source, key: str,
                   item_id: int, seen: int, force: bool) -> Outcome:
    """S(c) for an aggregate item: its "content" is its inputs' current records, read from the ledger."""
    from workers.aggregates import build_aggregate

    plan = plan_for(ledger, source, key)
    if plan is None:  # no inputs left for it (deleted, purged, regrouped): retract it
        return Outcome("deleted", records=ledger.retract_item(item_id, seen))
    # the LLM layer does not apply to aggregates, but they carry the full version so that
    # queue_outdated does not take them for items waiting for the LLM
    target = pipeline_version(settings)
    if not force and ledger.close_if_current(item_id, plan.input_hash, target, seen):
        return Outcome("unchanged")
    drafts = build_aggregate(ledger, source, plan, get_tokenizer(settings.tokenizer).count)
    vectors = embedder.encode([d.text for d in drafts])
    version = ledger.publish_version(item_id, plan.input_hash, target, drafts, vectors, plan.access,
                                     seen, force=force)
    if version is None:
        return Outcome("unchanged")
    return Outcome("published", version=version, records=len(drafts))


def enrich_pending(service: Service, embedder: Embedder,
                   on_outcome: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Drain the queue in this process: run S(c) for every open change now, exactly as a worker
    would, then apply the index events. For tests and ``sleepd bench``; the daemon uses Celery."""
    outcomes = []
    while True:
        due = service.ledger.due_changes(100, lease_seconds=3600)
        if not due:
            break
        service.ledger.mark_enqueued([c.id for c in due if c.id is not None])
        for start in range(0, len(due), defaults.BATCH_ITEMS):  # as the scheduler hands them out
            batch = due[start:start + defaults.BATCH_ITEMS]
            for change, outcome in zip(batch, run_batch(service.ledger, embedder, service.settings,
                                                        [(c.item_id, c.force) for c in batch]), strict=True):
                then_aggregates(service.ledger, change.item_id)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
    service.indexer.sync()
    return outcomes


_ledgers: dict[str, Ledger] = {}
_ledger_lock = threading.Lock()


def _ledger(url: str) -> Ledger:
    with _ledger_lock:
        if url not in _ledgers:
            _ledgers[url] = Ledger(url)
        return _ledgers[url]


@app.task(name=TASK_NAME, bind=True, autoretry_for=(OperationalError, Unavailable), retry_backoff=True,
          retry_backoff_max=60, max_retries=10)
def enrich_items(self: object, items: list[list[Any]]) -> list[str]:
    """S(c) for a batch of ``[item_id, force]`` pairs (see :func:`run_batch`)."""
    settings = current_settings()
    ledger = _ledger(settings.database_url)
    pairs = [(int(item_id), bool(force)) for item_id, force in items]
    outcomes = run_batch(ledger, get_embedder(settings.embed_backend, settings.home / "models"), settings, pairs)
    for (item_id, _), outcome in zip(pairs, outcomes, strict=True):
        then_aggregates(ledger, item_id)
        log.info("item %s: %s v%s (%s records)%s%s", item_id, outcome.status, outcome.version, outcome.records,
                 f" error: {outcome.error}" if outcome.error else "", f" llm: {outcome.llm}" if outcome.llm else "")
    return [o.status for o in outcomes]
