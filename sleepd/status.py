"""The status report as the API and the CLI show it: the ledger's status, the LLM layer's block
when it is configured, each source's skipped files, and the progress of a daemon's first pass.
Above the ledger, the LLM budget and the file watcher; below the service and the CLI, which both
call :func:`status_report`."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sleepd.ledger import Ledger
from sleepd.llm_budget import llm_status
from sleepd.settings import Settings
from sleepd.watchers.folder import skipped_files

__all__ = ["first_pass_progress", "item_counts", "skipped_summary", "status_report"]

#: skipped files a source's status lists by name (the count and the reasons cover them all)
STATUS_SKIPPED = 20


def status_report(ledger: Ledger, settings: Settings) -> dict[str, Any]:
    """Sources (with their skipped files), items by state, the queue, records, index lag; an ``llm``
    block too when ``settings`` configure the LLM layer (model, tokens today, budget left, calls).
    The oldest pending change per source is the scheduler's (its ``queue``)."""
    report = ledger.status()
    for source in report.get("sources", []):
        source["skipped"] = skipped_summary(ledger, source["name"])
    if settings.llm_enabled:
        report["llm"] = llm_status(ledger, settings)
    return report


def skipped_summary(ledger: Ledger, source: str) -> dict[str, Any]:
    """A source's skipped files for status: how many, how many per reason, the first few. Skipped
    files (images, other binaries) are not failures: nothing is wrong that anyone should fix."""
    skipped = skipped_files(ledger, source)
    return {"count": len(skipped), "reasons": dict(Counter(skipped.values()).most_common()),
            "items": [{"item": k, "reason": v} for k, v in sorted(skipped.items())[:STATUS_SKIPPED]]}


def item_counts(report: dict[str, Any]) -> tuple[int, int]:
    """(done, total) over every source's files (aggregates apart): done is enriched or failed,
    total adds the pending ones; deleted files count in neither."""
    counts = [src["items"] for src in report.get("sources", [])]
    done = sum(c["enriched"] + c["failed"] for c in counts)
    return done, done + sum(c["pending"] for c in counts)


def first_pass_progress(report: dict[str, Any], started_at: float, done_at_start: int,
                        took_s: float | None, now: float | None = None) -> dict[str, Any]:
    """A daemon's first pass: items done of total, the rate since the daemon started (items/s,
    counting only what this daemon did, not what a previous run left enriched) and the time left
    at that rate (None until an item is done). ``took_s``: the first pass's duration once done."""
    done, total = item_counts(report)
    elapsed = took_s if took_s is not None else max(0.0, (time.time() if now is None else now) - started_at)
    made = max(0, done - done_at_start)
    rate = made / elapsed if elapsed > 0 else 0.0
    left = total - done
    eta = 0.0 if left <= 0 else (left / rate if rate > 0 else None)
    return {"state": "done" if took_s is not None else "running", "done": done, "total": total,
            "rate_per_s": round(rate, 2), "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round(elapsed, 1)}
