"""S(c) for one item: load, parse, enrich, embed, publish one version.

Idempotent by (item, content hash, pipeline version): a duplicate delivery or a retry
publishes nothing new. The ledger is the outbox; the task only closes the changes it saw.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import OperationalError

from sleepd.aggregates import is_aggregate, plan_for, refresh_aggregates
from sleepd.embed import MODEL_NAME, Embedder, get_embedder
from sleepd.errors import ItemError, Unavailable
from sleepd.ledger import Ledger
from sleepd.llm_budget import llm_version
from sleepd.records import Draft
from sleepd.schema import ItemRow
from sleepd.settings import Settings, Source
from sleepd.tokens import get_tokenizer
from workers.app import app, current_settings
from workers.enrich import enrich_text
from workers.enrich.cards import item_card
from workers.enrich.windows import item_windows
from workers.items import load_item, read_item

__all__ = ["PIPELINE_VERSION", "TASK_NAME", "enrich_items", "pipeline_version", "read_item",
           "run_batch", "run_enrichment", "then_aggregates"]

log = logging.getLogger("sleepd.worker")

#: changes when an enricher or the model changes, so memory is re-made lazily
PIPELINE_VERSION = f"det-7/{MODEL_NAME}"
TASK_NAME = "sleepd.enrich_items"
#: errors that pass (the ledger or an sql source unreachable): the item is retried with backoff;
#: any other error fails only the item it happened to
TRANSIENT = (OperationalError, Unavailable)
#: a task's retries of its items' transient errors, and the longest wait between two (seconds)
MAX_RETRIES = 10
MAX_BACKOFF_SECONDS = 60
#: an item's error is cut to this (a driver's message can carry a whole SQL statement)
MAX_ERROR_CHARS = 500


def pipeline_version(settings: Settings) -> str:
    """PIPELINE_VERSION, plus ``+llm:<model>`` when the LLM layer is configured: changing the model
    re-makes memory lazily, and an item whose LLM part was skipped (budget, endpoint down) is
    published under plain PIPELINE_VERSION, so it is picked up again when the budget allows."""
    if settings.llm_enabled and settings.llm_model:
        return llm_version(PIPELINE_VERSION, settings.llm_model)
    return PIPELINE_VERSION


@dataclass
class Outcome:
    status: str  # published | unchanged | deleted | failed | missing | retry
    version: int | None = None
    records: int = 0
    error: str | None = None
    #: the LLM layer's outcome (ok, malformed, budget_exhausted, unavailable), None without one
    llm: str | None = None
    #: with status "retry": the transient error, which the task retries for this item alone
    exc: BaseException | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """For the log: "published v2 (5 records)", "unchanged v2", "deleted (3 records retracted)",
        "failed: ValueError: ..."."""
        text = self.status + (f" v{self.version}" if self.version is not None else "")
        if self.status in ("published", "deleted"):
            text += f" ({self.records} records{' retracted' if self.status == 'deleted' else ''})"
        if self.error:
            text += f": {self.error}"
        return text + (f" (llm: {self.llm})" if self.llm else "")


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
    per small item ran at about half of it on these 2 cores). Each item succeeds or fails alone:
    an unexpected error fails that item with its error; a transient one gives it a "retry" outcome.
    An item named twice runs once (forced if either asks)."""
    wanted: dict[int, bool] = {}
    for item_id, force in items:
        wanted[item_id] = wanted.get(item_id, False) or force
    results: dict[int, Outcome] = {}
    ready: list[_Ready] = []
    for item_id, force in wanted.items():
        seen = ledger.last_change_id(item_id)  # every change up to here is older than what we read
        prepared = _guarded(ledger, item_id, seen, partial(_prepare, ledger, embedder, settings, item_id, force, seen))
        if isinstance(prepared, _Ready):
            ready.append(prepared)
        else:
            results[item_id] = prepared
    for r, vectors in zip(ready, _embed(embedder, ready), strict=True):
        outcome = _guarded(ledger, r.item_id, r.seen, partial(_publish, ledger, r, vectors))
        assert isinstance(outcome, Outcome)
        results[r.item_id] = outcome
    return [results[item_id] for item_id, _ in items]


def _embed(embedder: Embedder, ready: Sequence[_Ready]) -> list[npt.NDArray[np.float32] | Exception]:
    """Each item's vectors, from one call for the batch; if that call fails, one call per item, so
    an item the model cannot take fails alone."""
    try:
        vectors = embedder.encode([d.text for r in ready for d in r.drafts])
    except Exception:
        log.exception("embedding a batch of %d items failed: embedding them one by one", len(ready))
    else:
        offsets = np.cumsum([0] + [len(r.drafts) for r in ready])
        return [vectors[offsets[i]:offsets[i + 1]] for i in range(len(ready))]
    out: list[npt.NDArray[np.float32] | Exception] = []
    for r in ready:
        try:
            out.append(embedder.encode([d.text for d in r.drafts]))
        except Exception as exc:  # raised again by _publish, inside _guarded: this item fails
            out.append(exc)
    return out


def _publish(ledger: Ledger, r: _Ready, vectors: npt.NDArray[np.float32] | Exception) -> Outcome:
    if isinstance(vectors, Exception):
        raise vectors
    # the access list is read again as it publishes: an admin may have changed it meanwhile
    version = ledger.publish_version(r.item_id, r.digest, r.target, r.drafts, vectors, r.access, r.seen,
                                     force=r.force, access_from_source=True)
    if version is None:
        return Outcome("unchanged", version=r.version, llm=r.llm)
    return Outcome("published", version=version, records=len(r.drafts), llm=r.llm)


def _guarded(ledger: Ledger, item_id: int, seen: int, step: Callable[[], Outcome | _Ready]) -> Outcome | _Ready:
    """Run one item's step so that its error stays its own: a transient error becomes a "retry"
    outcome, any other fails the item (its changes closed, the error shown in status)."""
    try:
        return step()
    except TRANSIENT as exc:
        return Outcome("retry", error=_describe(exc), exc=exc)
    except Exception as exc:
        item = ledger.item(item_id)  # read on failure only: the log names the item as a person knows it
        log.exception("%s failed", f"{item.source}:{item.key}" if item else f"item {item_id}")
        message = _describe(exc)
        ledger.fail_item(item_id, message, seen)
        return Outcome("failed", error=message)


def _describe(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:MAX_ERROR_CHARS]


def _prepare(ledger: Ledger, embedder: Embedder, settings: Settings, item_id: int, force: bool,
             seen: int) -> Outcome | _Ready:
    """Everything but embedding and publishing: an Outcome when the item needs neither."""
    item = ledger.item(item_id)
    if item is None:
        return Outcome("missing")
    force = force and ledger.forced_open(item_id, seen)
    source = ledger.get_source(item.source)
    if source is None:
        return Outcome("missing")
    if is_aggregate(item.key):
        return _run_aggregate(ledger, embedder, settings, source, item.key, item_id, seen, force)
    try:
        loaded = load_item(source, item.key, settings)
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
    drafts += item_card(item.key, drafts) + item_windows(item.key, text, source.profile)
    llm = None
    if settings.llm_enabled:
        from workers.llm import enrich_with_llm

        result = enrich_with_llm(ledger, settings, source.name, item_id, item.key, text, drafts)
        drafts, llm = drafts + result.drafts, result.outcome
        if not result.done:  # budget or endpoint: publish what we have, the LLM part comes later
            target = PIPELINE_VERSION
    return _Ready(item_id, digest, target, drafts, access, seen, force, item.version, llm)


def then_aggregates(ledger: Ledger, item_id: int, item: ItemRow | None = None) -> None:
    """After a task for an item: observe its source's aggregates with their input hashes once the last
    open change of the source is done, so those that depend on what changed are re-made, only those.
    ``item``: the item's row when the caller read it already."""
    item = item or ledger.item(item_id)
    if item is not None and not is_aggregate(item.key):
        refresh_aggregates(ledger, item.source)


def _run_aggregate(ledger: Ledger, embedder: Embedder, settings: Settings, source: Source, key: str,
                   item_id: int, seen: int, force: bool) -> Outcome:
    """S(c) for an aggregate item: its "content" is its inputs' current records, read from the ledger."""
    from workers.builders import build_aggregate

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


_ledgers: dict[str, Ledger] = {}
_ledger_lock = threading.Lock()


def _ledger(url: str) -> Ledger:
    with _ledger_lock:
        if url not in _ledgers:
            _ledgers[url] = Ledger(url)
        return _ledgers[url]


@app.task(name=TASK_NAME, bind=True, autoretry_for=(OperationalError, Unavailable), retry_backoff=True,
          retry_backoff_max=MAX_BACKOFF_SECONDS, max_retries=MAX_RETRIES)
def enrich_items(self: Any, items: list[list[Any]]) -> list[str]:
    """S(c) for a batch of ``[item_id, force]`` pairs (see :func:`run_batch`). Items that met a
    transient error are retried alone, with backoff (their batchmates are done); after the last
    retry they fail with that error. An error that escapes (the ledger down) retries the whole
    batch, which is idempotent: what was published is found current."""
    settings = current_settings()
    ledger = _ledger(settings.database_url)
    pairs = [(int(item_id), bool(force)) for item_id, force in items]
    ledger.start_attempt([item_id for item_id, _ in pairs])
    rows = ledger.items_by_id([item_id for item_id, _ in pairs])  # one read names them all in the log
    outcomes = run_batch(ledger, get_embedder(settings.embed_backend, *settings.embedder_dirs), settings, pairs)
    for (item_id, _), outcome in zip(pairs, outcomes, strict=True):
        item = rows.get(item_id)  # named by source and key in the log, as a person knows it
        then_aggregates(ledger, item_id, item)
        log.info("%s: %s", f"{item.source}:{item.key}" if item else f"item {item_id}", outcome.describe())
    again = [(pair, o) for pair, o in zip(pairs, outcomes, strict=True) if o.status == "retry"]
    if again and self.request.retries < MAX_RETRIES:
        countdown = get_exponential_backoff_interval(factor=1, retries=self.request.retries,
                                                     maximum=int(MAX_BACKOFF_SECONDS), full_jitter=True)
        raise self.retry(args=[[list(pair) for pair, _ in again]], exc=again[0][1].exc, countdown=countdown)
    for (item_id, _), outcome in again:
        ledger.fail_item(item_id, f"gave up after {MAX_RETRIES} retries: {outcome.error}",
                         ledger.last_change_id(item_id))
    return [o.status for o in outcomes]
