"""Retention of old versions: the records of the newest ``keep_versions`` old versions of each
item are kept (per source where a [[sources]] table says so), older ones are deleted. Run by the
daemon's maintenance (the indexer's loop, beside the query log's retention) in idle time, at most
once per :data:`sleepd.defaults.RETENTION_SECONDS`; the version rows stay, and history says their
records are not kept."""

from __future__ import annotations

import logging
import time

from sleepd import defaults
from sleepd.ledger import Ledger, PruneReport
from sleepd.scheduler import busy_reason
from sleepd.settings import Settings

__all__ = ["Retention", "prune_versions"]

log = logging.getLogger("sleepd.retention")


def prune_versions(ledger: Ledger, settings: Settings) -> PruneReport:
    """One retention pass, now: delete the records of old versions beyond each item's
    ``keep_versions``. Logs how many versions it pruned."""
    report = ledger.prune_archive(settings.keep_versions_for)
    if report.versions:
        log.info("retention: pruned the records of %d old versions of %d items (%d records)",
                 report.versions, report.items, report.records)
    return report


class Retention:
    """The maintenance step: :func:`prune_versions` when the machine is idle (no query in
    ``idle_seconds``, load under the limit) and the last pass is ``every`` seconds old. While
    the machine is busy it looks again every ``retry`` seconds, not on every round of the loop."""

    def __init__(self, ledger: Ledger, settings: Settings, every: float = defaults.RETENTION_SECONDS,
                 retry: float = defaults.RETENTION_RETRY_SECONDS) -> None:
        self.ledger = ledger
        self.settings = settings
        self.every = every
        self.retry = retry
        self._next_at: float | None = None
        #: the last pass's report (None until one ran)
        self.last: PruneReport | None = None

    def run_if_due(self) -> PruneReport | None:
        """Prune if due and idle; returns the pass's report, or None when it did not run."""
        now = time.monotonic()
        if self._next_at is not None and now < self._next_at:
            return None
        if busy_reason(self.ledger, self.settings) is not None:
            self._next_at = now + self.retry  # retention waits for idle time
            return None
        self.last = prune_versions(self.ledger, self.settings)
        self._next_at = now + self.every  # after it worked: a ledger that was down is tried next round
        return self.last
