"""A daemon's first-pass progress (done, total, rate, ETA) as JSON
fields and as the line `sleepd status` prints."""

from __future__ import annotations

from typing import Any

from sleepd.progress import first_pass_line, first_pass_progress, item_counts


def _report(pending: int, enriched: int, failed: int, deleted: int = 0) -> dict[str, Any]:
    """Two sources' items by state, as :meth:`Ledger.status` counts them."""
    return {"sources": [
        {"items": {"pending": pending, "enriched": enriched - 5, "failed": failed, "deleted": deleted}},
        {"items": {"pending": 0, "enriched": 5, "failed": 0, "deleted": 0}}]}


def test_item_counts_leave_deleted_files_out() -> None:
    assert item_counts(_report(pending=30, enriched=60, failed=10, deleted=7)) == (70, 100)


def test_progress_while_the_first_pass_runs() -> None:
    """The rate counts only what this daemon did (20 items were done by an earlier run)."""
    progress = first_pass_progress(_report(pending=30, enriched=60, failed=10), started_at=1000.0,
                                   done_at_start=20, took_s=None, now=1020.0)
    assert progress == {"state": "running", "done": 70, "total": 100, "rate_per_s": 2.5, "eta_s": 12.0,
                        "elapsed_s": 20.0}
    assert first_pass_line(progress) == "first pass: 70/100 items, 2.5 items/s, about 12 s left"


def test_progress_before_any_item_is_done_has_no_eta() -> None:
    progress = first_pass_progress(_report(pending=40, enriched=5, failed=0), started_at=1000.0,
                                   done_at_start=5, took_s=None, now=1003.0)
    assert (progress["rate_per_s"], progress["eta_s"]) == (0.0, None)
    assert first_pass_line(progress) == "first pass: 5/45 items, 0 items/s, time left unknown yet"


def test_progress_once_the_first_pass_is_done() -> None:
    progress = first_pass_progress(_report(pending=0, enriched=300, failed=0), started_at=1000.0,
                                   done_at_start=0, took_s=150.0, now=5000.0)
    assert progress == {"state": "done", "done": 300, "total": 300, "rate_per_s": 2.0, "eta_s": 0.0,
                        "elapsed_s": 150.0}
    assert first_pass_line(progress) == "first pass: done, 300 items in 2 min"
