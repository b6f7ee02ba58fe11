"""Watch one folder source; turn every file change under it into a durable ledger row (the
ledger is the outbox: no enrichment here). ``scan()`` walks the tree (at start, and rescans catch
what inotify missed); watchdog events, debounced per path, handle live edits. Which files are in
the source, which are binary, and their hashes: :mod:`sleepd.watchers.folder`."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from sleepd.ledger import Ledger
from sleepd.schema import ItemRow, ItemState
from sleepd.settings import FileSource, Settings
from sleepd.watchers.folder import Filters, binary_reason, content_hash, describe_error, is_dir, note_skipped, under

__all__ = ["FileWatcher", "ScanReport"]

log = logging.getLogger("sleepd.watchers")

#: opened / closed_no_write come from readers (our own hashing included): never a change
_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
#: a file written without pause (a log) is still observed this often, in debounce windows
_MAX_DELAY_WINDOWS = 10


@dataclass
class ScanReport:
    """What one scan or flush did. ``changed``/``deleted`` count new change rows."""

    seen: int = 0
    changed: int = 0
    deleted: int = 0
    errors: int = 0
    skipped: int = 0
    #: files actually read; a file with unchanged (size, mtime) is not
    hashed: int = 0

    def notify(self, on_change: Callable[[], None] | None, source: str) -> None:
        """Tell the scheduler there is work, if this scan or flush made any."""
        if on_change is not None and (self.changed or self.deleted):
            try:
                on_change()
            except Exception:
                log.exception("source %s: on_change failed", source)



class FileWatcher(FileSystemEventHandler):
    """Keeps the ledger's items of one files source in step with its folder. ``scan()`` may run
    at any time, also while watching. A bad file or a missing folder never raises: it is recorded
    (item error, source error; the source must be saved in the ledger for the latter to stick)."""

    def __init__(self, source: FileSource, ledger: Ledger, settings: Settings,
                 on_change: Callable[[], None] | None = None) -> None:
        self.source, self.ledger, self.settings, self.on_change = source, ledger, settings, on_change
        self.root = Path(source.path)
        # one writer of this source's items: a scan's older read never lands after an event's
        self._lock = threading.RLock()
        self._pending: dict[str, tuple[float, float, bool]] = {}  # key -> first, last event, was dir
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None
        self._observer_lock = threading.Lock()
        self._filters_cache: Filters | None = None

    def scan(self) -> ScanReport:
        """Walk the whole folder: observe new and changed files, delete keys no longer found."""
        report = ScanReport()
        with self._lock:
            self._filters_cache = None  # .gitignore may have changed while nobody watched
            if self._root_ok():
                try:
                    self._sync("", report)
                    self.ledger.mark_scanned(self.source.name)
                except OSError as exc:  # only the root's own listing raises out of the walk
                    self.ledger.set_source_error(self.source.name, f"cannot list {self.root}: {exc}")
                    report.errors += 1
        if self._thread is not None:
            self._ensure_observer()  # the folder may have (re)appeared since start()
        report.notify(self.on_change, self.source.name)
        return report

    def rescan(self) -> ScanReport:
        """The periodic pass: a full scan (it is what catches what inotify missed)."""
        return self.scan()

    def _root_ok(self) -> bool:
        try:
            is_dir, reason = stat.S_ISDIR(os.stat(self.root).st_mode), "path is not a directory"
        except OSError as exc:
            is_dir, reason = False, "path does not exist" if exc.errno == errno.ENOENT else str(exc)
        if not is_dir:
            # a vanished root (unmounted disk, renamed folder) must not read as "all deleted"
            self.ledger.set_source_error(self.source.name, f"{reason}: {self.root}")
            log.warning("source %s: %s: %s", self.source.name, reason, self.root)
        return is_dir

    def _filters(self) -> Filters:
        """Built once per full scan (a .gitignore event queues one), not once per path."""
        if self._filters_cache is None:
            try:
                lines = (self.root / ".gitignore").read_text(encoding="utf-8", errors="replace")
            except OSError:  # none (or unreadable): nothing more is ignored
                lines = ""
            self._filters_cache = Filters(self.source, lines.splitlines())
        return self._filters_cache

    def _sync(self, prefix: str, report: ScanReport) -> None:
        """Bring every key under ``prefix`` ("" = all) in step with the folder."""
        known = {k: v for k, v in self.ledger.known_items(self.source.name).items() if under(k, prefix)}
        found: set[str] = set()
        unlisted: list[str] = []
        skipped: dict[str, str | None] = {}
        for rel in self._walk(prefix, report, unlisted):
            if self._visit(rel, known.get(rel), report, skipped):
                found.add(rel)
        if not self._root_ok():
            return  # the root vanished mid-walk: what we did not find is not deleted
        note_skipped(self.ledger, self.source.name, skipped, prefix)
        for key in sorted(known.keys() - found):
            # keys under a folder we could not list are unknown, not gone; and a deletion
            # already recorded (pending, no hash) would otherwise be recorded by every rescan
            recorded = known[key].state == ItemState.PENDING.value and known[key].observed_hash is None
            if not recorded and not any(under(key, d) for d in unlisted) \
                    and self.ledger.observe_deleted(self.source.name, key):
                report.deleted += 1

    def _walk(self, prefix: str, report: ScanReport, unlisted: list[str]) -> Iterator[str]:
        """Keys of candidate files under ``prefix``; only the root's listing error raises."""
        filters = self._filters()
        stack = [prefix] if not prefix or not filters.hides(prefix, True) else []
        while stack:
            rel_dir = stack.pop()
            try:
                with os.scandir(self.root / rel_dir) as it:
                    entries = list(it)
            except OSError as exc:
                if not rel_dir:
                    raise
                if not isinstance(exc, FileNotFoundError | NotADirectoryError):  # gone = deleted
                    unlisted.append(rel_dir)
                    report.errors += 1
                    log.warning("source %s: cannot list %s: %s", self.source.name, rel_dir, exc)
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if rel.encode("utf-8", "replace") != rel.encode("utf-8", "surrogateescape"):
                    report.skipped += 1  # a name that is not UTF-8 cannot be a ledger key
                    log.warning("source %s: skipping non-UTF-8 name %r", self.source.name, rel)
                elif is_dir(entry):
                    if not filters.skip_dir(rel):
                        stack.append(rel)
                elif filters.hides(rel, False):
                    report.skipped += 1
                else:
                    yield rel

    def _visit(self, rel: str, item: ItemRow | None, report: ScanReport, skipped: dict[str, str | None]) -> bool:
        """Stat, hash if needed, observe. False: no file to track (gone, folder link, fifo, a
        binary file: noted in ``skipped`` with the reason; a text file is noted with None)."""
        path = self.root / rel
        try:
            st = os.stat(path)  # follows a file symlink: its target is what gets read
            if not stat.S_ISREG(st.st_mode):
                report.skipped += 1  # reading a fifo would block; a folder link is never followed
                return False
            if item is not None and item.observed_hash is not None \
                    and (item.size, item.mtime_ns) == (st.st_size, st.st_mtime_ns):
                report.seen += 1
                return True  # unchanged by size and mtime: not read
            skipped[rel] = binary_reason(path, st.st_size, self.settings.max_file_bytes)
            if skipped[rel] is not None:
                report.skipped += 1  # an image is not a failure; a file that turned binary is deleted
                return False
            report.seen += 1
            digest = content_hash(path, st.st_size, self.settings.max_file_bytes, st.st_mtime_ns)
            report.hashed += 1
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not os.path.islink(path):
                return False  # deleted since it was listed
            report.errors += 1
            self.ledger.note_item_error(self.source.name, rel, message := describe_error(exc, path))
            log.info("source %s: %s: %s", self.source.name, rel, message)
            return True  # it exists, only unreadable: keep the key
        if self.ledger.observe(self.source.name, rel, digest, st.st_size, st.st_mtime_ns):
            report.changed += 1
        return True

    def start(self) -> None:
        """Start watching (non-blocking). Events are recorded after ``debounce_seconds`` of quiet."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._ensure_observer()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.source.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the observer and the debounce thread, then record what was pending."""
        self._stop.set()  # first, so a concurrent scan does not restart the observer
        with self._observer_lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.flush(everything=True)
        except Exception:
            log.exception("source %s: flushing pending events on stop failed", self.source.name)

    def flush(self, everything: bool = False) -> int:
        """Process paths quiet for ``debounce_seconds`` (all with ``everything``); returns how many."""
        now, wait = time.monotonic(), self.settings.debounce_seconds
        with self._pending_lock:
            due = {k: v for k, v in self._pending.items()
                   if everything or now - v[1] >= wait or now - v[0] >= wait * _MAX_DELAY_WINDOWS}
            for key in due:
                del self._pending[key]
        if "" in due:  # the root itself or .gitignore changed: only a full scan is right
            self.scan()
            return len(due)
        report = ScanReport()
        with self._lock:
            if due and self._root_ok():
                for rel, (_first, _last, was_dir) in sorted(due.items()):
                    try:
                        self._process(rel, was_dir, report)
                    except Exception as exc:  # one bad path must not stop the rest; rescans retry
                        report.errors += 1
                        log.exception("source %s: cannot process %s", self.source.name, rel)
                        with contextlib.suppress(Exception):  # the ledger may be what fails
                            self.ledger.note_item_error(self.source.name, rel, f"watcher failed: {exc}")
        report.notify(self.on_change, self.source.name)
        return len(due)

    def _process(self, rel: str, was_dir: bool, report: ScanReport) -> None:
        """Stat + hash + observe one path, or observe its deletion (a folder's: all keys under it)."""
        try:
            exists, is_dir = True, stat.S_ISDIR(os.lstat(self.root / rel).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            exists, is_dir = False, False
        if is_dir or (was_dir and not exists):
            self._sync(rel, report)  # walks it, or deletes every key under a vanished folder
            return
        skipped: dict[str, str | None] = {rel: None}  # gone or excluded: not a skipped file either
        tracked = exists and not self._filters().hides(rel, False) and self._visit(rel, None, report, skipped)
        note_skipped(self.ledger, self.source.name, skipped, None)
        if not tracked and self.ledger.observe_deleted(self.source.name, rel):
            report.deleted += 1

    def on_any_event(self, event: FileSystemEvent) -> None:
        """watchdog's callback: queue the event's paths for the debounce thread."""
        kind, now = event.event_type, time.monotonic()
        if kind not in _EVENTS or (event.is_directory and kind in ("modified", "closed")):
            return  # a folder's mtime moves with every child, and the child has its own event
        for raw in [event.src_path, event.dest_path] if kind == "moved" else [event.src_path]:
            rel = os.path.relpath(os.fsdecode(raw), self.root).replace(os.sep, "/")
            if rel in (".", ".gitignore"):
                rel = ""  # the root, or the filters, changed: only a full scan is right
            elif rel.split("/", 1)[0] == ".." or self._filters().hides(rel, event.is_directory):
                continue  # outside the root, or excluded: .git churn never reaches the ledger
            with self._pending_lock:
                first, _last, was_dir = self._pending.get(rel, (now, now, False))
                self._pending[rel] = (first, now, was_dir or event.is_directory)

    def _run(self) -> None:
        tick = min(max(self.settings.debounce_seconds / 4, 0.02), 1.0)
        while not self._stop.wait(tick):
            try:
                self.flush()
            except Exception:  # e.g. the database locked for a while: keep the thread alive
                log.exception("source %s: debounce flush failed", self.source.name)

    def _ensure_observer(self) -> None:
        """(Re)start the observer: watchdog's emitter stops for good when the root is removed."""
        with self._observer_lock:
            old = self._observer
            if self._stop.is_set() or (old is not None and old.is_alive()
                                       and all(e.is_alive() for e in old.emitters)):
                return  # stopping (a scan racing stop() must not start one), or healthy
            self._observer = None
            if old is not None:
                old.stop()
                old.join(timeout=10)
            observer = Observer()
            try:
                observer.schedule(self, str(self.root), recursive=True)
                observer.start()
            except OSError as exc:  # root missing: the scan records that, and the next one retries
                log.warning("source %s: cannot watch %s: %s", self.source.name, self.root, exc)
                return
            self._observer = observer
