"""Watch one sql source; turn every changed account (one item per value of the root table's key)
into a durable ledger row, as the file watcher does for files. The ledger is the outbox: no
enrichment here, and nothing is ever written to the watched database.

* ``scan()``, the full diff: every item hashed over all its rows, in key ranges (bounded memory);
  new and changed items observed, items no longer present observed deleted. It runs at start,
  every ``full_diff_seconds``, and after the database comes back from an error.
* ``poll()``, every ``poll_seconds``: for each table with an ``updated_at`` column, an indexed range
  query ``WHERE updated_at > :mark`` finds the keys touched since the last look; only those items
  are re-hashed. The mark lags one poll behind the highest value read, so a row committed a little
  after others of the same moment is still seen (re-hashing an unchanged item writes nothing).
  Deletes, tables without ``updated_at`` and rows committed later than that with an older stamp
  wait for the next full diff. The access lookup table is polled the same way.
* The marks are kept in the ledger (meta ``sql_watermark:<source>:<table>``, with a fingerprint
  of the source's declaration and columns and the time of the last full diff): the first
  ``scan()`` of a restarted daemon polls from them instead of diffing everything, unless one is
  missing, the fingerprint changed or a full diff is due.
* ``listen = true`` (PostgreSQL, with the triggers of ``sleepd sql-triggers``): notifications name
  the touched keys at once, deletes included; polling and full diffs go on underneath.

A failing database (down, slow, a table dropped or changed) never raises out of the thread: the
error is recorded on the source, retried with backoff, and a full diff catches up when it returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine

from sleepd import defaults
from sleepd.errors import Unavailable
from sleepd.ledger import Ledger
from sleepd.schema import ItemRow, ItemState
from sleepd.settings import Settings, SqlSource
from sleepd.sql.engines import open_engine, reading
from sleepd.sql.rows import (
    ItemRows,
    dump_mark,
    item_hash,
    item_size,
    iter_items,
    key_text,
    load_items,
    load_mark,
    max_marks,
    polled_tables,
    shape,
    touched_keys,
)
from sleepd.sql.triggers import channel, write_rights
from sleepd.watchers.files import ScanReport

__all__ = ["SqlWatcher"]

log = logging.getLogger("sleepd.watchers")

#: keys re-hashed per read transaction when a poll or a notification names many
_KEYS_PER_READ = 500


class SqlWatcher:
    """Keeps the ledger's items of one sql source in step with its tables. ``scan()`` and
    ``poll()`` may be called at any time; ``start()`` runs them on a thread."""

    def __init__(self, source: SqlSource, ledger: Ledger, settings: Settings,
                 on_change: Callable[[], None] | None = None) -> None:
        self.source, self.ledger, self.settings, self.on_change = source, ledger, settings, on_change
        self._lock = threading.RLock()  # one writer of this source's items at a time
        self._engine: Engine | None = None
        #: table -> (mark polled from, highest updated_at seen); None until a full diff set the baseline
        self._marks: dict[str, tuple[Any, Any]] | None = None
        self._last_full = 0.0
        #: what the stored marks are valid for: the source's shape and the last full diff (epoch)
        self._shape: str | None = None
        self._full_at = 0.0
        self._stored: dict[str, str] = {}  # meta key -> value last written, to write only changes
        self._failures = 0
        self._rights_checked = False
        #: the last problem, for tests and status (also recorded on the source in the ledger)
        self.error: str | None = None
        self.warning: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Any = None

    # -- the two passes ---------------------------------------------------------------------

    def scan(self) -> ScanReport:
        """The full diff: hash every item, observe changes and deletes. Never raises for a
        database problem: it is recorded on the source and in the report. The first scan of a
        watcher is a poll from the watermarks stored in the ledger when they are all there, the
        source's shape is unchanged and a full diff is not yet due (a restarted daemon)."""
        if self._marks is None and self.error is None and self._resume():
            return self.poll()
        report = ScanReport()
        with self._lock:
            self._last_full = time.monotonic()
            try:
                engine = self._engine_or_open()
                with reading(engine, self.source, "reading watermarks") as conn:
                    marks = max_marks(conn, self.source)  # before the scan: what it misses, polls see
                    current = shape(conn, self.source)
                self._full_diff(engine, report)
            except Unavailable as exc:
                self._failed(exc.message, report)
            else:
                self._marks = {table: (mark, mark) for table, mark in marks.items()}
                self._shape, self._full_at = current, time.time()
                self._store_marks()
                self._recovered()
                self.ledger.mark_scanned(self.source.name)
                self._check_rights(engine)
        report.notify(self.on_change, self.source.name)
        return report

    def rescan(self) -> ScanReport:
        """The periodic pass: a full diff when ``full_diff_seconds`` are up, else nothing (the
        watcher's thread polls by watermark in between)."""
        if time.monotonic() - self._last_full >= self.source.full_diff_seconds:
            return self.scan()
        return ScanReport()

    def poll(self) -> ScanReport:
        """Re-hash only the items whose rows moved past the watermarks (a full diff instead when
        there is no baseline yet, or when the database just came back)."""
        if self._marks is None or self.error is not None:
            return self.scan()
        report = ScanReport()
        with self._lock:
            try:
                keys, overflow = self._touched(self._engine_or_open())
                self._refresh_keys(keys, report)
            except Unavailable as exc:
                self._failed(exc.message, report)
                return report
            self._store_marks()  # only once what they cover is in the ledger
        report.notify(self.on_change, self.source.name)
        if overflow:  # more rows changed than a poll reads: only a full diff is sure to see all
            return self.scan()
        return report

    def refresh_keys(self, keys: Iterable[Any]) -> ScanReport:
        """Re-hash these items now (a notification named them)."""
        report = ScanReport()
        with self._lock:
            try:
                self._refresh_keys(set(keys), report)
            except Unavailable as exc:
                self._failed(exc.message, report)
        report.notify(self.on_change, self.source.name)
        return report

    def _full_diff(self, engine: Engine, report: ScanReport) -> None:
        known = self.ledger.known_items(self.source.name)
        found: set[str] = set()
        for key, rows in iter_items(engine, self.source, self.source.batch_size):
            found.add(key)
            self._observe(key, rows, known.get(key), report)
        for key in sorted(known.keys() - found):
            item = known[key]
            if item.state == ItemState.PENDING.value and item.observed_hash is None:
                continue  # a deletion already recorded
            if self.ledger.observe_deleted(self.source.name, key):
                report.deleted += 1

    def _touched(self, engine: Engine) -> tuple[set[Any], bool]:
        assert self._marks is not None
        keys: set[Any] = set()
        overflow = False
        marks = dict(self._marks)
        with reading(engine, self.source, "polling watermarks") as conn:
            for name, table in polled_tables(self.source):
                if table.updated_at is None:
                    continue
                lagged, highest = marks.get(name, (None, None))
                found, newest, full = touched_keys(conn, self.source, table, lagged, defaults.SQL_POLL_LIMIT)
                top = newest if newest is not None and (highest is None or newest > highest) else highest
                # next time from the previous top (one poll of grace), or past this batch when cut short
                marks[name] = (top if full else highest, top)
                keys.update(found)
                overflow = overflow or full
        self._marks = marks
        return keys, overflow

    def _refresh_keys(self, keys: set[Any], report: ScanReport) -> None:
        if not keys:
            return
        engine = self._engine_or_open()
        known = self.ledger.known_items(self.source.name) if len(keys) > 50 else None
        ordered = sorted(keys, key=str)
        for start in range(0, len(ordered), _KEYS_PER_READ):
            chunk = ordered[start:start + _KEYS_PER_READ]
            with reading(engine, self.source, "reading changed items") as conn:
                items = load_items(conn, self.source, chunk)
            for value in chunk:
                key = key_text(value)
                item = known.get(key) if known is not None else None
                if key in items:
                    self._observe(key, items[key], item, report)
                elif self.ledger.observe_deleted(self.source.name, key):
                    report.deleted += 1

    def _observe(self, key: str, rows: ItemRows, item: ItemRow | None, report: ScanReport) -> None:
        report.seen += 1
        report.hashed += 1
        digest = item_hash(rows)
        if item is not None and item.observed_hash == digest:
            return  # unchanged: no ledger write at all
        if self.ledger.observe(self.source.name, key, digest, item_size(rows), 0):
            report.changed += 1

    # -- stored watermarks -------------------------------------------------------------------

    def _meta_key(self, name: str) -> str:
        return f"sql_watermark:{self.source.name}:{name}"

    def _store_marks(self) -> None:
        """Write each table's mark (the one the next poll reads from) where it changed."""
        if self._marks is None or self._shape is None:
            return
        for name, (lagged, _highest) in self._marks.items():
            mark = dump_mark(lagged)
            if mark is None:
                continue  # a type we cannot keep: a restart diffs in full
            value = json.dumps({"mark": mark, "shape": self._shape, "full_at": self._full_at})
            key = self._meta_key(name)
            if self._stored.get(key) != value:
                self.ledger.set_meta(key, value)
                self._stored[key] = value

    def _resume(self) -> bool:
        """Take the marks stored by an earlier run, if they are all there and still valid."""
        names = [name for name, table in polled_tables(self.source) if table.updated_at]
        if not names:
            return False
        try:
            stored = {n: json.loads(self.ledger.get_meta(self._meta_key(n)) or "null") for n in names}
            marks = {n: load_mark(v["mark"]) for n, v in stored.items()}
            full_at = min(float(v["full_at"]) for v in stored.values())
        except (ValueError, KeyError, TypeError):  # missing or not ours: start from a full diff
            return False
        age = time.time() - full_at
        if age >= self.source.full_diff_seconds:
            return False
        try:
            with reading(self._engine_or_open(), self.source, "reading the source's shape") as conn:
                current = shape(conn, self.source)
        except Unavailable:
            return False  # the full diff records the error
        if any(v.get("shape") != current for v in stored.values()):
            log.info("source %s: tables or query changed since the stored watermarks: full diff", self.source.name)
            return False
        self._marks = {name: (mark, mark) for name, mark in marks.items()}
        self._shape, self._full_at = current, full_at
        self._last_full = time.monotonic() - age
        self._stored = {self._meta_key(n): json.dumps(v) for n, v in stored.items()}
        log.info("source %s: resuming from stored watermarks", self.source.name)
        return True

    # -- errors -----------------------------------------------------------------------------

    def _engine_or_open(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.source)
        return self._engine

    def _failed(self, message: str, report: ScanReport) -> None:
        report.errors += 1
        self._failures += 1
        if message != self.error:
            log.warning("source %s: %s", self.source.name, message)
        self.error = message
        with contextlib.suppress(Exception):  # the ledger may be what fails
            self.ledger.set_source_error(self.source.name, message)

    def _recovered(self) -> None:
        if self.error is not None:
            requeued = 0
            with contextlib.suppress(Exception):
                requeued = self.ledger.requeue_failed(self.source.name)
            log.info("source %s: readable again (%d failed items queued again)", self.source.name, requeued)
        self.error, self._failures = None, 0

    def _check_rights(self, engine: Engine) -> None:
        if self._rights_checked:
            return
        self._rights_checked = True
        self.warning = write_rights(engine, self.source)
        if self.warning:
            log.warning("source %s: %s (it only reads, in read-only transactions)", self.source.name, self.warning)

    def backoff(self) -> float:
        """Seconds until the next attempt: poll_seconds, doubled per consecutive failure."""
        if not self._failures:
            return self.source.poll_seconds
        return min(self.source.poll_seconds * 2 ** min(self._failures, 20), defaults.SQL_MAX_BACKOFF_SECONDS)

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Poll (and diff, and listen) on a thread until ``stop()``. Non-blocking; the caller runs
        the first ``scan()`` (the daemon does, for every source)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.source.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._close_listener()
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _run(self) -> None:
        while not self._wait(self.backoff()):
            try:
                if time.monotonic() - self._last_full >= self.source.full_diff_seconds:
                    self.scan()
                else:
                    self.poll()
            except Exception:  # e.g. the ledger locked for a while: keep the thread alive
                log.exception("source %s: poll failed", self.source.name)

    def _wait(self, seconds: float) -> bool:
        """Sleep until the next tick, or handle notifications as they come. True when stopping."""
        if not self.source.listen or self.error is not None:
            return self._stop.wait(seconds)
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            keys = self._notified(min(left, 1.0))
            if keys is None:  # cannot listen: plain polling
                return self._stop.wait(max(0.0, deadline - time.monotonic()))
            if "*" in keys:  # a TRUNCATE: only a full diff is right
                self.scan()
            elif keys:
                self.refresh_keys(keys)
        return True

    def _notified(self, timeout: float) -> set[str] | None:
        """Keys named by notifications within ``timeout``; None if this source cannot listen."""
        try:
            if self._listener is None:
                engine = self._engine_or_open()
                if engine.dialect.name != "postgresql":
                    return None
                raw = engine.raw_connection()
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
                cursor = raw.cursor()
                cursor.execute(f'LISTEN "{channel(self.source)}"')
                cursor.close()
                self._listener = raw
            conn = self._listener.driver_connection
            if select.select([conn], [], [], timeout)[0]:
                conn.poll()
            keys = {n.payload for n in conn.notifies}
            conn.notifies.clear()
            return keys
        except Exception as exc:
            log.warning("source %s: LISTEN failed, polling only: %s", self.source.name, exc)
            self._close_listener()
            return None

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.invalidate()
