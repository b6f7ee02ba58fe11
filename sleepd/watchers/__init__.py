"""Watchers: one :class:`FileWatcher` per files source and one :class:`SqlWatcher` per sql
source, started and rescanned together.

Typical use by the daemon::

    watchers = Watchers(settings.sources, ledger, settings, on_change=wake_scheduler)
    watchers.start()        # watch first, so an edit made during the initial scan is not missed
    watchers.scan_all()
    threading.Thread(target=watchers.run_rescans, args=(stop,), daemon=True).start()
    ...
    stop.set(); watchers.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from sleepd.ledger import Ledger
from sleepd.settings import Settings, Source, SqlSource
from sleepd.watchers.files import FileWatcher, ScanReport
from sleepd.watchers.sql import SqlWatcher

__all__ = ["FileWatcher", "ScanReport", "SqlWatcher", "Watcher", "Watchers", "watcher_for"]

#: what every watcher offers: scan() -> ScanReport, start(), stop()
Watcher = FileWatcher | SqlWatcher

log = logging.getLogger("sleepd.watchers")

#: a rescan period of 0 would spin the loop
_MIN_RESCAN_SECONDS = 0.1


def watcher_for(source: Source, ledger: Ledger, settings: Settings,
                on_change: Callable[[], None] | None = None) -> Watcher:
    if isinstance(source, SqlSource):
        return SqlWatcher(source, ledger, settings, on_change)
    return FileWatcher(source, ledger, settings, on_change)


class Watchers:
    """The set of file watchers of a running daemon. Thread-safe: sources may be added or
    removed while the rescan loop runs."""

    def __init__(self, sources: Iterable[Source], ledger: Ledger, settings: Settings,
                 on_change: Callable[[], None] | None = None) -> None:
        self.ledger, self.settings, self.on_change = ledger, settings, on_change
        self._lock = threading.Lock()
        self._started = False
        self._watchers = {s.name: watcher_for(s, ledger, settings, on_change) for s in sources}

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._watchers

    def get(self, name: str) -> Watcher | None:
        with self._lock:
            return self._watchers.get(name)

    def _all(self) -> list[Watcher]:
        with self._lock:
            return list(self._watchers.values())

    def scan_all(self, periodic: bool = False) -> dict[str, ScanReport]:
        """Scan every source; one failing source (say, a locked database) does not stop the rest.
        ``periodic``: the rescan loop's pass, where an sql source diffs only when its
        ``full_diff_seconds`` are up (its own thread polls in between)."""
        reports: dict[str, ScanReport] = {}
        for watcher in self._all():
            try:
                reports[watcher.source.name] = watcher.rescan() if periodic else watcher.scan()
            except Exception:
                log.exception("scan of source %s failed", watcher.source.name)
                reports[watcher.source.name] = ScanReport(errors=1)
        return reports

    def scan_now(self, names: Iterable[str]) -> dict[str, ScanReport]:
        """Scan the named sources now (a lifted purge: its files come back at once, not at the
        next periodic rescan); names this set does not handle are left out."""
        wanted = set(names)
        reports: dict[str, ScanReport] = {}
        for watcher in self._all():
            if watcher.source.name in wanted:
                reports[watcher.source.name] = watcher.scan()
        return reports

    def start(self) -> None:
        """Start watching every source (non-blocking)."""
        with self._lock:
            self._started = True
            watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.start()

    def stop(self) -> None:
        """Stop every watcher and join its threads."""
        with self._lock:
            self._started = False
            watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.stop()

    def run_rescans(self, stop: threading.Event) -> None:
        """Blocking loop: rescan everything every ``settings.rescan_seconds`` until ``stop`` is set.
        Rescans catch what inotify misses (queue overflow, network mounts, a recreated root)."""
        period = max(self.settings.rescan_seconds, _MIN_RESCAN_SECONDS)
        while not stop.wait(period):
            self.scan_all(periodic=True)

    def add(self, source: Source) -> ScanReport:
        """Start handling a source at run time (replacing one of the same name): it is watched
        if the watchers run, and scanned now. Blocks for the scan; returns its report."""
        watcher = watcher_for(source, self.ledger, self.settings, self.on_change)
        with self._lock:
            old = self._watchers.pop(source.name, None)
            self._watchers[source.name] = watcher
            started = self._started
        if old is not None:
            old.stop()
        if started:
            watcher.start()
        return watcher.scan()

    def remove(self, name: str) -> None:
        """Stop handling a source (its ledger rows are untouched; purging is the caller's job)."""
        with self._lock:
            watcher = self._watchers.pop(name, None)
        if watcher is not None:
            watcher.stop()
