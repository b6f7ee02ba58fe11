"""The status report as the API and the CLI show it: the ledger's status, the LLM layer's block
when it is configured, and each source's skipped files. Above the ledger, the LLM budget and the
file watcher; below the service and the CLI, which both call :func:`status_report`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sleepd.ledger import Ledger
from sleepd.llm_budget import llm_status
from sleepd.settings import Settings
from sleepd.watchers.folder import skipped_files

__all__ = ["query_routes", "skipped_summary", "status_report"]

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
    report["queries"] = query_routes(ledger)
    return report


def query_routes(ledger: Ledger) -> dict[str, Any]:
    """The logged queries and the share served by each route: a high raw share shows questions
    that the enriched memory does not cover (answered from the source's raw windows)."""
    counts = ledger.route_counts()
    total = sum(counts.values())
    routes = {route: counts.get(route, 0) for route in ("memory", "raw", "mixed", "empty")}
    return {"logged": total, "routes": routes,
            "shares": {route: round(n / total, 3) if total else 0.0 for route, n in routes.items()}}


def skipped_summary(ledger: Ledger, source: str) -> dict[str, Any]:
    """A source's skipped files for status: how many, how many per reason, the first few. Skipped
    files (images, other binaries) are not failures: nothing is wrong that anyone should fix."""
    skipped = skipped_files(ledger, source)
    return {"count": len(skipped), "reasons": dict(Counter(skipped.values()).most_common()),
            "items": [{"item": k, "reason": v} for k, v in sorted(skipped.items())[:STATUS_SKIPPED]]}

