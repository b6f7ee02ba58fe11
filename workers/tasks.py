"""S(c) for one item: load, parse, enrich, embed, publish one version.

Idempotent by (item, content hash, pipeline version): a duplicate delivery or a retry
publishes nothing new. The ledger is the outbox; the task only closes the changes it saw.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError

from sleepd.embed import MODEL_NAME, Embedder, get_embedder
from sleepd.errors import ItemError, Unavailable
from sleepd.ledger import Ledger
from sleepd.settings import Settings, Source, SqlSource
from sleepd.sqlrows import account_document, item_access
from sleepd.sqlrows import read_item as read_sql_item
from workers.app import app, current_settings
from workers.enrich import enrich_text

if TYPE_CHECKING:
    from sleepd.service import Service

__all__ = ["PIPELINE_VERSION", "TASK_NAME", "enrich_item", "enrich_pending", "read_item", "run_enrichment"]

log = logging.getLogger("sleepd.worker")

#: changes when an enricher or the model changes, so memory is re-made lazily
PIPELINE_VERSION = f"det-2/{MODEL_NAME}"
TASK_NAME = "sleepd.enrich_item"
#: bytes looked at for NUL to call a file binary (what git and grep do)
BINARY_SNIFF = 8192


def read_item(path: Path, max_bytes: int) -> tuple[str, str] | None:
    """The text and content hash of a file, None if it is gone, or ItemError saying why not."""
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


def run_enrichment(ledger: Ledger, embedder: Embedder, settings: Settings, item_id: int,
                   force: bool = False) -> Outcome:
    """Enrich one item now (the body of the Celery task, callable directly)."""
    item = ledger.item(item_id)
    if item is None:
        return Outcome("missing")
    seen = ledger.last_change_id(item_id)  # every change up to here is older than what we read
    source = ledger.get_source(item.source)
    if source is None:
        return Outcome("missing")
    try:
        loaded = _load(source, item.key, settings)
    except ItemError as exc:
        ledger.fail_item(item_id, exc.message, seen)
        return Outcome("failed", error=exc.message)
    if loaded is None:
        removed = ledger.retract_item(item_id, seen)
        return Outcome("deleted", records=removed)
    text, digest, access = loaded
    if not force and ledger.close_if_current(item_id, digest, PIPELINE_VERSION, seen):
        return Outcome("unchanged", version=item.version)
    drafts = enrich_text(item.key, text, source.profile)
    vectors = embedder.encode([d.text for d in drafts])
    version = ledger.publish_version(item_id, digest, PIPELINE_VERSION, drafts, vectors, access,
                                     seen, force=force)
    if version is None:
        return Outcome("unchanged", version=item.version)
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
        for change in due:
            outcome = run_enrichment(service.ledger, embedder, service.settings, change.item_id, change.force)
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
def enrich_item(self: object, item_id: int, force: bool = False) -> str:
    settings = current_settings()
    outcome = run_enrichment(_ledger(settings.database_url), get_embedder(), settings, item_id, force)
    log.info("item %s: %s v%s (%s records)%s", item_id, outcome.status, outcome.version, outcome.records,
             f" error: {outcome.error}" if outcome.error else "")
    return outcome.status
