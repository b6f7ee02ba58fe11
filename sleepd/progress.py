"""A daemon's first pass as `sleepd status` and the daemon's log show it: items done of total, the
rate, the time left, and the line a person reads. Pure functions over the ledger's status report,
light enough for the CLI to import at start-up."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["first_pass_line", "first_pass_progress", "item_counts", "seconds_text"]



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


def first_pass_line(progress: dict[str, Any]) -> str:
    """"first pass: 120/400 items, 3.2 items/s, about 2 min left" while it runs; how long it took
    once done. The daemon logs it as the pass goes; `sleepd status` prints it."""
    done, total = progress["done"], progress["total"]
    if progress["state"] == "done":
        return f"first pass: done, {total} items in {seconds_text(progress['elapsed_s'])}"
    eta = progress["eta_s"]
    left = "time left unknown yet" if eta is None else f"about {seconds_text(eta)} left"
    return f"first pass: {done}/{total} items, {progress['rate_per_s']:g} items/s, {left}"


def seconds_text(value: float) -> str:
    """Seconds as a person reads them: "41 s", "3 min"."""
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"
