"""The real pipeline over one bench corpus: watch (scan), enrich in process exactly as a worker
does, index, query through :class:`~sleepd.service.Service` (the code the API calls), and the
work done after editing one file."""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleepd import defaults
from sleepd.auth import Principal
from sleepd.bench.corpora import Corpus, Snippet
from sleepd.bench.drain import enrich_pending
from sleepd.embed import Embedder, Vectors
from sleepd.index import open_index
from sleepd.ledger import Ledger
from sleepd.llm_budget import usage_today
from sleepd.query import PackedRecord
from sleepd.schema import ItemState
from sleepd.service import Service
from sleepd.settings import FileSource, Settings, Source
from sleepd.watchers import Watchers
from workers.tasks import Outcome

__all__ = ["ADMIN", "TimedEmbedder", "Workspace", "incremental", "open_workspace", "raw_model", "to_snippet"]

#: the bench reads everything, as an admin does
ADMIN = Principal("bench", admin=True)
#: record texts re-embedded by the bare model to measure its throughput (a sample keeps it short)
RAW_SAMPLE = 1000
#: a query is retried this many times while waiting for an edit to show
_EDIT_TRIES = 20


class TimedEmbedder(Embedder):
    """The shared model, with the time spent inside it counted."""

    def __init__(self, inner: Embedder) -> None:  # wraps a loaded model: no second load
        self.inner = inner
        self.seconds = 0.0
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> Vectors:
        started = time.perf_counter()
        vectors = self.inner.encode(texts)
        self.seconds += time.perf_counter() - started
        self.texts += len(texts)
        return vectors


@dataclass
class Workspace:
    corpus: Corpus
    service: Service
    source: Source
    watchers: Watchers

    def files(self) -> list[tuple[str, str]]:
        """(path, text) of every enriched item: the same files the baseline chunks."""
        items = self.service.ledger.known_items(self.source.name)
        keys = sorted(k for k, item in items.items() if item.state == ItemState.ENRICHED.value)
        if self.corpus.documents is not None:
            return self.corpus.documents(keys)
        return [(k, (self.corpus.root / k).read_text(encoding="utf-8")) for k in keys]

    def close(self) -> None:
        self.service.close()
        self.service.ledger.close()


def open_workspace(corpus: Corpus, work: Path, embedder: Embedder, home_name: str = "home") -> Workspace:
    """A fresh home (ledger and index, ``work/<corpus>-<home_name>``) with the corpus folder
    declared as one source."""
    home = work / f"{corpus.name}-{home_name}"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'ledger.db'}", broker_url="filesystem://",
                        idle_seconds=0.0)
    ledger = Ledger(settings.database_url)
    service = Service(settings, ledger, open_index(home, embedder.dim), embedder)
    source = corpus.source or FileSource(name=corpus.name, path=corpus.root, include=corpus.include,
                                         profile=corpus.profile)
    ledger.save_source(source)
    return Workspace(corpus, service, source, Watchers([source], ledger, settings))


def first_pass(ws: Workspace, embedder: Embedder, on_outcome: Callable[[Outcome], None] | None = None,
               on_total: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Scan, then enrich everything; throughput over the whole S(c) wall time."""
    started = time.perf_counter()
    ws.watchers.scan_all()
    scan_s = time.perf_counter() - started
    pending = ws.service.ledger.status()["sources"][0]["items"]["pending"]
    if on_total is not None:
        on_total(pending)
    timed = TimedEmbedder(embedder)
    started, cpu_started = time.perf_counter(), time.process_time()
    outcomes = enrich_pending(ws.service, timed, on_outcome)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    statuses = Counter(o.status for o in outcomes)
    records = sum(o.records for o in outcomes if o.status == "published")
    return {
        "items": statuses["published"], "failed": statuses["failed"], "records": records,
        "scan_seconds": round(scan_s, 2), "seconds": round(wall, 2),
        "items_per_s": round(statuses["published"] / wall, 2) if wall else 0.0,
        "records_per_s": round(records / wall, 2) if wall else 0.0,
        "embed_seconds": round(timed.seconds, 2), "embedded_texts": timed.texts,
        # sleep-time cost: the process's CPU seconds (all threads) over the pass, and LLM tokens
        "cpu_seconds": round(cpu, 2),
        "llm_tokens": usage_today(ws.service.ledger)["tokens"] if ws.service.settings.llm_enabled else 0,
        "errors": sorted({o.error for o in outcomes if o.error})[:5],
    }


def _sample_by_item(ws: Workspace, sample: int, seed: int) -> list[list[str]]:
    """Whole items' record texts (items in a seeded order) until ``sample`` texts are taken."""
    by_item: dict[int, list[str]] = {}
    for rows in ws.service.ledger.iter_records():
        for row in rows:
            by_item.setdefault(row.item_id, []).append(row.text)
    order = sorted(by_item)
    random.Random(seed).shuffle(order)
    groups: list[list[str]] = []
    for item_id in order:
        if sum(map(len, groups)) >= sample:
            break
        groups.append(by_item[item_id])
    return groups


def raw_model(ws: Workspace, embedder: Embedder, enrichment: dict[str, Any], sample: int = RAW_SAMPLE,
              seed: int = 0) -> dict[str, Any]:
    """The bare model on the record texts of whole items (about ``sample`` texts): in one batched
    call, and in one call per item as the worker makes them. Overhead = pipeline wall time / the
    time the bare model (one call) needs for the same number of records - 1."""
    groups = _sample_by_item(ws, sample, seed)
    texts = [t for group in groups for t in group]
    started = time.perf_counter()
    embedder.encode(texts)
    raw_s = time.perf_counter() - started
    started = time.perf_counter()
    for group in groups:
        embedder.encode(group)
    per_item_s = time.perf_counter() - started
    raw_rate = len(texts) / raw_s if raw_s else 0.0
    model_s = enrichment["records"] / raw_rate if raw_rate else 0.0
    return {
        "texts": len(texts), "items": len(groups), "raw_texts_per_s": round(raw_rate, 2),
        "raw_per_item_texts_per_s": round(len(texts) / per_item_s, 2) if per_item_s else 0.0,
        "pipeline_records_per_s": enrichment["records_per_s"],
        "pipeline_embed_texts_per_s": round(enrichment["embedded_texts"] / enrichment["embed_seconds"], 2)
        if enrichment["embed_seconds"] else 0.0,
        "overhead_pct": round((enrichment["seconds"] / model_s - 1) * 100, 1) if model_s else None,
        "embed_overhead_pct": round((enrichment["embed_seconds"] / model_s - 1) * 100, 1) if model_s else None,
    }


def to_snippet(rec: PackedRecord) -> Snippet:
    """A packed record as the scorer sees it: its first evidence span (what the header cites)."""
    span = rec.evidence[0] if rec.evidence else {"start_line": 0, "end_line": 0}
    return Snippet(rec.item, int(span["start_line"]), int(span["end_line"]), rec.header + rec.text, rec.kind)


def _edit(path: Path, marker: str) -> None:
    """Append a small, plausible change to one file."""
    if path.suffix == ".py":
        addition = (f"\n\ndef {marker}_probe():\n"
                    f"    \"\"\"Bench probe: return the {marker} marker of this edit.\"\"\"\n"
                    f"    return \"{marker}\"\n")
    else:  # a section of its own, as an amendment is written
        addition = (f"\n\nAMENDMENT\n\nThe parties agree that the {marker} amendment sets the notice address for "
                    "all communications under this agreement.\n")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(addition)


def incremental(ws: Workspace, embedder: Embedder) -> dict[str, Any]:
    """Edit one file, then scan, enrich and query until the query shows the edit. Counts the items
    re-enriched (watched items whose version moved), the aggregates re-made over them (a contract
    portfolio, a repository map) and their records, and the seconds from the write to the first
    query that returns the new text: asked after each publish, so aggregates still being re-made
    do not count (they are tasks of their own in the daemon too). In process; the daemon adds
    its debounce and scheduler tick."""
    key = ws.corpus.questions[0].gold[0].path if ws.corpus.questions else ws.files()[0][0]
    marker = f"zq{random.Random(key).randrange(10**6, 10**7)}"
    records_before = ws.service.ledger.status()["records"]
    versions = {k: i.version for k, i in ws.service.ledger.known_items(ws.source.name).items()}
    outcomes: list[Outcome] = []
    seen_after: list[float] = []

    # the probe names the edited file, as a person asking about their edit does: among 30,000
    # records a made-up word alone is no match for the dense search (see the README)
    probe = f"{marker} amendment probe in {Path(key).name}"

    def shows_edit() -> bool:
        result = ws.service.query(probe, defaults.DEFAULT_BUDGET, ADMIN)  # syncs the index first
        return any(marker in r.text and r.fresh for r in result.records)

    def after_task(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if not seen_after and outcome.status == "published" and shows_edit():
            seen_after.append(time.perf_counter() - started)

    started = time.perf_counter()
    if ws.corpus.edit is not None:
        key, probe = ws.corpus.edit(marker)
    else:
        _edit(ws.corpus.root / key, marker)
    for _ in range(_EDIT_TRIES):
        ws.watchers.scan_all()
        enrich_pending(ws.service, embedder, after_task)
        if not seen_after and shows_edit():
            seen_after.append(time.perf_counter() - started)
        if seen_after:
            break
    published = [o for o in outcomes if o.status == "published"]
    changed = sorted(k for k, i in ws.service.ledger.known_items(ws.source.name).items()
                     if versions.get(k) != i.version)
    return {
        "edited": key, "items_reenriched": len(changed), "reenriched": changed[:10],
        "records_remade": sum(o.records for o in published[:len(changed)]),
        "aggregates_remade": len(published) - len(changed),
        "aggregate_records_remade": sum(o.records for o in published[len(changed):]),
        "outcomes": dict(Counter(o.status for o in outcomes)),
        "records_total": ws.service.ledger.status()["records"], "records_before": records_before,
        "seconds_to_fresh_query": round(seen_after[0], 3) if seen_after else None,
        "daemon_adds_up_to_s": defaults.DEBOUNCE_SECONDS + defaults.SCHEDULER_TICK + defaults.INDEXER_TICK,
    }
