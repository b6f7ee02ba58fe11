"""The ledger: durable state of sources, items, changes, versions and records.

Every write that matters happens here, in one transaction each. SQLite runs in WAL mode with
``BEGIN IMMEDIATE`` for writers (so two processes never deadlock upgrading a lock) and a
separate reader engine whose deferred transactions see one consistent snapshot.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, create_engine, delete, event, false, func, true, update
from sqlalchemy.orm import defer
from sqlmodel import Session, SQLModel, col, select

from sleepd.records import Draft
from sleepd.schema import (
    AGGREGATE_PREFIX,
    AuditRow,
    ChangeRow,
    ChangeStatus,
    IndexEventRow,
    ItemRow,
    ItemState,
    MetaRow,
    QueryLogItemRow,
    QueryLogRow,
    RecordRow,
    SourceRow,
    VersionRow,
    upgrade,
)
from sleepd.settings import FileSource, Source, SqlSource

__all__ = ["Ledger", "PurgeReceipt"]

#: a change that workers began this many times without finishing is a poison pill: give up on it
MAX_ATTEMPTS = 5
#: outdated items looked at per scheduling round, and recent queries that rank them by use
OUTDATED_SCAN = 2000
HOT_QUERIES = 1000
_RECORD_NS = uuid.UUID("6f1c6f0e-3c55-4a8e-9a51-2d1f2b7f0c11")
_OPEN = (ChangeStatus.PENDING.value, ChangeStatus.ENQUEUED.value)


def record_id(item_id: int, version: int, ordinal: int) -> str:
    """Deterministic, so a retried publish produces the same ids."""
    return str(uuid.uuid5(_RECORD_NS, f"{item_id}:{version}:{ordinal}"))


@dataclass
class PurgeReceipt:
    items: int = 0
    versions: int = 0
    records: int = 0
    changes: int = 0
    query_log: int = 0
    index_points: int = 0
    #: aggregate items (repository map, portfolio...) that drew on what was purged; not in ``items``
    aggregates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _make_engine(url: str, immediate: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


#: meta key of the globs purged by path: {source name or "*": [glob, ...]}
PURGED_META = "purged_paths"

class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url, immediate=True)
        # a read sees one snapshot: SQLite's deferred transactions do; PostgreSQL's READ COMMITTED
        # takes a new one per statement, so a read of records then items could pair two versions
        self.reader = (_make_engine(url, immediate=False) if url.startswith("sqlite")
                       else self.engine.execution_options(isolation_level="REPEATABLE READ"))
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    @contextmanager
    def write(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.reader, expire_on_commit=False) as session, session.begin():
            yield session

    # -- meta and audit ---------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.read() as s:
            row = s.get(MetaRow, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as s:
            _set_meta(s, key, value)

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        with self.write() as s:
            s.add(AuditRow(at=time.time(), actor=actor, action=action, detail=json.dumps(detail)))

    # -- sources ----------------------------------------------------------------------------

    def save_source(self, source: Source) -> None:
        config = json.dumps(source.as_dict())
        with self.write() as s:
            row = s.get(SourceRow, source.name)
            if row is None:
                s.add(SourceRow(name=source.name, kind=source.kind, config=config, created_at=time.time()))
            else:
                row.config = config

    def sources(self) -> list[Source]:
        with self.read() as s:
            rows = s.exec(select(SourceRow).order_by(SourceRow.name)).all()
        return [_source_from_row(r) for r in rows]

    def get_source(self, name: str) -> Source | None:
        with self.read() as s:
            row = s.get(SourceRow, name)
        return _source_from_row(row) if row else None

    def set_source_error(self, name: str, error: str | None) -> None:
        with self.write() as s:
            row = s.get(SourceRow, name)
            if row is not None and row.error != error:
                row.error = error

    def mark_scanned(self, name: str) -> None:
        with self.write() as s:
            row = s.get(SourceRow, name)
            if row is not None:
                row.last_scan_at = time.time()
                row.error = None

    # -- observations (watchers) ------------------------------------------------------------

    def known_items(self, source: str) -> dict[str, ItemRow]:
        """Items of a source that are not deleted (pending, enriched or failed), by key. Aggregates
        are not the watcher's to list: a scan must never take them for deleted files."""
        with self.read() as s:
            rows = s.exec(select(ItemRow).where(ItemRow.source == source,
                                                ItemRow.state != ItemState.DELETED.value,
                                                col(ItemRow.key).not_like(AGGREGATE_PREFIX + "%"))).all()
        return {r.key: r for r in rows}

    def observe(self, source: str, key: str, content_hash: str, size: int, mtime_ns: int) -> bool:
        """Record that ``key`` now has ``content_hash``. True when that is a change. A key an
        admin purged by path is not tracked again (see :meth:`purge`)."""
        now = time.time()
        with self.write() as s:
            if _purged(s, source, key):
                return False
            item = s.exec(select(ItemRow).where(ItemRow.source == source, ItemRow.key == key)).first()
            if item is None:
                item = ItemRow(source=source, key=key, updated_at=now)
                s.add(item)
                s.flush()
            elif item.observed_hash == content_hash and item.state != ItemState.DELETED.value:
                item.size, item.mtime_ns = size, mtime_ns
                return False
            item.observed_hash, item.size, item.mtime_ns = content_hash, size, mtime_ns
            item.state, item.error, item.updated_at = ItemState.PENDING.value, None, now
            assert item.id is not None
            s.add(ChangeRow(item_id=item.id, content_hash=content_hash, observed_at=now))
            return True

    def observe_deleted(self, source: str, key: str) -> bool:
        now = time.time()
        with self.write() as s:
            item = s.exec(select(ItemRow).where(ItemRow.source == source, ItemRow.key == key)).first()
            if item is None or item.state == ItemState.DELETED.value:
                return False
            if item.observed_hash is None and (item.version == 0 or item.state == ItemState.PENDING.value):
                # never published (nothing to retract), or a deletion is already queued
                if item.version == 0:
                    item.state = ItemState.DELETED.value
                return False
            item.observed_hash, item.state, item.updated_at = None, ItemState.PENDING.value, now
            assert item.id is not None
            s.add(ChangeRow(item_id=item.id, content_hash=None, observed_at=now))
            return True

    def note_item_error(self, source: str, key: str, error: str) -> None:
        """A watcher could not even read an item; shown in status, retried by the next scan."""
        with self.write() as s:
            if _purged(s, source, key):
                return
            item = s.exec(select(ItemRow).where(ItemRow.source == source, ItemRow.key == key)).first()
            if item is None:
                item = ItemRow(source=source, key=key)
                s.add(item)
            item.state, item.error, item.observed_hash = ItemState.FAILED.value, error, None
            item.updated_at = time.time()

    def request_refresh(self, source: str | None, pattern: str | None, force: bool) -> int:
        """Queue matching items ahead of everything else; ``force`` re-enriches even if current."""
        now = time.time()
        with self.write() as s:
            items = _matching_items(s, source, pattern)
            for item in items:
                if item.state == ItemState.DELETED.value:
                    continue
                assert item.id is not None
                s.add(ChangeRow(item_id=item.id, content_hash=item.observed_hash, priority=10,
                                force=force, observed_at=now))
            return sum(1 for i in items if i.state != ItemState.DELETED.value)

    # -- scheduling -------------------------------------------------------------------------

    def due_changes(self, limit: int, lease_seconds: float) -> list[ChangeRow]:
        """Open changes to hand to workers: pending ones, and enqueued ones whose lease ran out.
        One per item (the task reads the item's latest state), refreshes first."""
        if limit <= 0:
            return []
        expired = time.time() - lease_seconds
        with self.write() as s:
            rows = s.exec(
                select(ChangeRow)
                .where((col(ChangeRow.status) == ChangeStatus.PENDING.value)
                       | ((col(ChangeRow.status) == ChangeStatus.ENQUEUED.value)
                          & (col(ChangeRow.enqueued_at) < expired)))
                .order_by(col(ChangeRow.priority).desc(), col(ChangeRow.id))
                .limit(limit * 4)
            ).all()
            due: dict[int, ChangeRow] = {}
            for row in rows:
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = ChangeStatus.FAILED.value
                    row.error = f"gave up after {row.attempts} attempts (worker lost each time)"
                    _fail_item_row(s, row.item_id, row.error)
                elif row.item_id not in due:
                    due[row.item_id] = row
                else:  # an older duplicate for the same item: the newer task covers it
                    row.status = ChangeStatus.SUPERSEDED.value
                    row.finished_at = time.time()
            return list(due.values())[:limit]

    def queue_outdated(self, pipeline_version: str, limit: int, skip_sources: Sequence[str] = ()) -> int:
        """Queue up to ``limit`` items enriched by another pipeline version, the most queried first.
        A new enricher or model re-makes memory lazily; the old records serve until each publish.
        ``skip_sources``: sources left alone this round (their LLM budget is spent for the day)."""
        if limit <= 0:
            return 0
        busy = select(ChangeRow.item_id).where(
            col(ChangeRow.status).in_([ChangeStatus.PENDING.value, ChangeStatus.ENQUEUED.value]))
        with self.write() as s:
            items = s.exec(select(ItemRow).where(
                ItemRow.state == ItemState.ENRICHED.value, col(ItemRow.version) > 0,
                col(ItemRow.pipeline_version) != pipeline_version, col(ItemRow.id).not_in(busy),
                col(ItemRow.source).not_in(list(skip_sources)),
            ).limit(OUTDATED_SCAN)).all()
            if not items:
                return 0
            hits: Counter[int] = Counter()
            recent = s.exec(select(QueryLogRow.items).order_by(col(QueryLogRow.id).desc()).limit(HOT_QUERIES))
            for ids in recent:
                hits.update(json.loads(ids or "[]"))
            now = time.time()
            chosen = sorted(items, key=lambda i: -hits[i.id or 0])[:limit]
            for item in chosen:
                assert item.id is not None
                s.add(ChangeRow(item_id=item.id, content_hash=item.observed_hash, observed_at=now))
            return len(chosen)

    def in_flight(self, lease_seconds: float) -> int:
        expired = time.time() - lease_seconds
        with self.read() as s:
            return int(s.exec(select(func.count()).select_from(ChangeRow).where(
                ChangeRow.status == ChangeStatus.ENQUEUED.value, col(ChangeRow.enqueued_at) >= expired)).one())

    def mark_enqueued(self, change_ids: Sequence[int]) -> None:
        """Start the lease of changes just handed to the broker. Only open ones: a fast worker may
        have closed a change already (the scheduler marks after sending), and a closed change
        must stay closed, not run again when its lease runs out. One UPDATE, so PostgreSQL checks
        the status again on a row a worker is closing at the same moment."""
        if not change_ids:
            return
        with self.write() as s:
            s.exec(update(ChangeRow)  # type: ignore[call-overload]
                   .where(col(ChangeRow.id).in_(list(change_ids)), col(ChangeRow.status).in_(_OPEN))
                   .values(status=ChangeStatus.ENQUEUED.value, enqueued_at=time.time()))

    def start_attempt(self, item_ids: Sequence[int]) -> None:
        """A worker begins these items: one more attempt for their handed-out changes. Counted here,
        not at hand-out, so a message the broker lost in a restart, or a lease that ran out while
        a slow worker still ran, is no attempt; only a worker that began and never finished is
        (after :data:`MAX_ATTEMPTS` of those the change is a poison pill and fails)."""
        if not item_ids:
            return
        with self.write() as s:
            s.exec(update(ChangeRow)  # type: ignore[call-overload]
                   .where(col(ChangeRow.item_id).in_(list(item_ids)),
                          col(ChangeRow.status) == ChangeStatus.ENQUEUED.value)
                   .values(attempts=col(ChangeRow.attempts) + 1))

    # -- the worker's side ------------------------------------------------------------------

    def item(self, item_id: int) -> ItemRow | None:
        with self.read() as s:
            return s.get(ItemRow, item_id)

    def change(self, change_id: int) -> ChangeRow | None:
        with self.read() as s:
            return s.get(ChangeRow, change_id)

    def last_change_id(self, item_id: int) -> int:
        with self.read() as s:
            value = s.exec(select(func.max(ChangeRow.id)).where(ChangeRow.item_id == item_id)).one()
        return int(value or 0)

    def forced_open(self, item_id: int, upto: int) -> bool:
        """Whether a forced refresh of the item, seen by ``upto``, is still open. A forced task runs
        forced only then: delivered again after its publish (a retry, a lease that ran out), it
        must publish nothing new, like any other task."""
        with self.read() as s:
            return s.exec(select(ChangeRow.id).where(
                ChangeRow.item_id == item_id, col(ChangeRow.id) <= upto, col(ChangeRow.force).is_(True),
                col(ChangeRow.status).in_(_OPEN)).limit(1)).first() is not None

    def close_if_current(self, item_id: int, content_hash: str, pipeline_version: str, seen_change_id: int) -> bool:
        """If that content is already published by this pipeline, close the changes and say so."""
        with self.write() as s:
            item = s.get(ItemRow, item_id, with_for_update=True)
            if item is None or not _is_current(item, content_hash, pipeline_version):
                return False
            _finish_changes(s, item, content_hash, seen_change_id, ChangeStatus.DONE)
            return True

    def publish_version(self, item_id: int, content_hash: str, pipeline_version: str,
                        drafts: Sequence[Draft], vectors: npt.NDArray[np.float32],
                        access: Sequence[str], seen_change_id: int, force: bool = False) -> int | None:
        """Atomically replace the item's records with a new version. Returns the new version,
        or None when that content is already published by this pipeline (idempotent)."""
        now = time.time()
        with self.write() as s:
            item = s.get(ItemRow, item_id, with_for_update=True)
            if item is None:
                return None  # purged while we worked
            if not force and _is_current(item, content_hash, pipeline_version):
                _finish_changes(s, item, content_hash, seen_change_id, ChangeStatus.DONE)
                return None
            _retract_records(s, item_id)
            version = item.version + 1
            for old in s.exec(select(VersionRow).where(VersionRow.item_id == item_id,
                                                       VersionRow.status == "published")).all():
                old.status = "superseded"
            ids = []
            for ordinal, (draft, vector) in enumerate(zip(drafts, vectors, strict=True)):
                rid = record_id(item_id, version, ordinal)
                ids.append(rid)
                s.add(RecordRow(
                    id=rid, item_id=item_id, version=version, source=item.source, path=item.key,
                    kind=draft.kind.value, title=draft.title, text=draft.text,
                    evidence=json.dumps([e.as_dict() for e in draft.evidence]), access=json.dumps(list(access)),
                    embedding=np.asarray(vector, dtype=np.float32).tobytes(), content_hash=content_hash,
                    pipeline_version=pipeline_version, created_at=now))
            s.add(VersionRow(item_id=item_id, version=version, content_hash=content_hash,
                             pipeline_version=pipeline_version, status="published", n_records=len(ids),
                             created_at=now))
            s.flush()
            s.add_all([IndexEventRow(op="upsert", record_id=rid) for rid in ids])
            item.version, item.enriched_hash, item.pipeline_version = version, content_hash, pipeline_version
            item.n_records, item.error, item.updated_at = len(ids), None, now
            _finish_changes(s, item, content_hash, seen_change_id, ChangeStatus.DONE)
            return version

    def retract_item(self, item_id: int, seen_change_id: int) -> int:
        """The item is gone: remove its records (the index follows). Returns records removed."""
        with self.write() as s:
            item = s.get(ItemRow, item_id, with_for_update=True)
            if item is None:
                return 0
            removed = _retract_records(s, item_id)
            for old in s.exec(select(VersionRow).where(VersionRow.item_id == item_id,
                                                       VersionRow.status == "published")).all():
                old.status = "retracted"
            item.n_records, item.enriched_hash, item.updated_at = 0, None, time.time()
            _finish_changes(s, item, None, seen_change_id, ChangeStatus.DONE)
            return removed

    def fail_item(self, item_id: int, error: str, seen_change_id: int) -> None:
        """Enrichment failed for good; older memory (if any) stays, marked stale by the query."""
        with self.write() as s:
            item = s.get(ItemRow, item_id, with_for_update=True)
            if item is None:
                return
            for change in _open_changes(s, item_id, seen_change_id):
                change.status, change.error, change.finished_at = ChangeStatus.FAILED.value, error, time.time()
            item.state, item.error, item.updated_at = ItemState.FAILED.value, error, time.time()

    def requeue_failed(self, source: str) -> int:
        """Give a source's failed items another change, e.g. when its database is reachable again
        (a task that ran out of retries during the outage must not leave the item failed for good)."""
        now = time.time()
        with self.write() as s:
            items = s.exec(select(ItemRow).where(ItemRow.source == source, ItemRow.state == ItemState.FAILED.value,
                                                 col(ItemRow.observed_hash).is_not(None))).all()
            for item in items:
                assert item.id is not None
                item.state = ItemState.PENDING.value
                s.add(ChangeRow(item_id=item.id, content_hash=item.observed_hash, observed_at=now))
            return len(items)

    # -- the indexer's side -----------------------------------------------------------------

    def pending_events(self, limit: int) -> list[IndexEventRow]:
        """Events not applied yet, oldest first. Not "after a cursor": a lower seq can commit after
        a higher one (PostgreSQL hands out seqs at insert, not at commit), and must not be skipped.
        Events of one record are written under its item's row lock, so they commit in seq order."""
        with self.read() as s:
            return list(s.exec(select(IndexEventRow).where(col(IndexEventRow.applied) == false())
                               .order_by(col(IndexEventRow.seq)).limit(limit)).all())

    def mark_applied(self, seqs: Sequence[int]) -> None:
        with self.write() as s:
            s.exec(update(IndexEventRow).where(col(IndexEventRow.seq).in_(list(seqs)))  # type: ignore[call-overload]
                   .values(applied=True))

    def mark_all_applied(self) -> None:
        """Before a rebuild reads the records: every event committed by now is reflected in them;
        one still uncommitted stays unapplied and is replayed (replaying is harmless)."""
        with self.write() as s:
            s.exec(update(IndexEventRow).where(col(IndexEventRow.applied) == false())  # type: ignore[call-overload]
                   .values(applied=True))

    def index_lag(self) -> int:
        with self.read() as s:
            return _index_lag(s)

    def records_by_id(self, ids: Sequence[str]) -> list[RecordRow]:
        if not ids:
            return []
        with self.read() as s:
            return list(s.exec(select(RecordRow).where(col(RecordRow.id).in_(list(ids)))).all())

    def iter_records(self, batch: int = 512) -> Iterator[list[RecordRow]]:
        last = ""
        while True:
            with self.read() as s:
                rows = list(s.exec(select(RecordRow).where(col(RecordRow.id) > last)
                                   .order_by(col(RecordRow.id)).limit(batch)).all())
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def compact_events(self) -> int:
        """Applied events are history nobody reads again; unapplied ones stay, whatever their seq.
        Returns the number deleted."""
        with self.write() as s:
            return _delete_where(s, IndexEventRow, col(IndexEventRow.applied) == true())

    # -- the query's side -------------------------------------------------------------------

    def current_records(self, ids: Sequence[str]) -> tuple[list[RecordRow], dict[int, ItemRow]]:
        """The candidates that are still the published version of a live item, read in one
        snapshot (so an item's records all come from one version), with their items. One
        snapshot on PostgreSQL too: the reader's transactions are REPEATABLE READ."""
        if not ids:
            return [], {}
        with self.read() as s:
            # without the stored vectors: the query never reads them, and they are most of a row
            rows = list(s.exec(select(RecordRow).options(defer(RecordRow.embedding))  # type: ignore[arg-type]
                               .where(col(RecordRow.id).in_(list(ids)))).all())
            item_ids = {r.item_id for r in rows}
            items = {i.id: i for i in s.exec(select(ItemRow).where(col(ItemRow.id).in_(item_ids))).all()}
        live = [r for r in rows if r.item_id in items and items[r.item_id].version == r.version]
        return live, {k: v for k, v in items.items() if k is not None}

    def log_query(self, *rows: QueryLogRow) -> None:
        """Append query-log rows in one transaction; ``last_query_at`` becomes the latest."""
        if not rows:
            return
        latest = str(max(r.at for r in rows))
        with self.write() as s:
            s.add_all(rows)
            s.flush()
            s.add_all([QueryLogItemRow(query_id=r.id, item_id=i) for r in rows if r.id is not None
                       for i in sorted({int(i) for i in json.loads(r.items or "[]")})])
            _set_meta(s, "last_query_at", latest)

    def prune_query_log(self, before: float) -> int:
        """Delete query-log rows logged before ``before`` (a time.time()); returns how many."""
        old = select(QueryLogRow.id).where(col(QueryLogRow.at) < before)
        with self.write() as s:
            _delete_where(s, QueryLogItemRow, col(QueryLogItemRow.query_id).in_(old))
            return _delete_where(s, QueryLogRow, col(QueryLogRow.at) < before)

    def last_query_at(self) -> float:
        return float(self.get_meta("last_query_at") or 0.0)

    # -- admin ------------------------------------------------------------------------------

    def purge(self, source: str | None = None, pattern: str | None = None) -> tuple[PurgeReceipt, list[str]]:
        """Remove matching items with every version, record and change, the query-log text
        that drew on them, and (for a whole source) the source itself. Returns the receipt and
        the record ids whose index points the caller must remove. A purge by path also stops
        the watchers tracking matching keys again, until :meth:`lift_purge`."""
        receipt = PurgeReceipt()
        with self.write() as s:
            if pattern is not None:
                excluded = _purged_globs(s)
                excluded[source or "*"] = sorted({*excluded.get(source or "*", []), pattern})
                _set_meta(s, PURGED_META, json.dumps(excluded))
            items = _matching_items(s, source, pattern)
            if pattern is not None:  # aggregates drew on what goes: they go too, and are re-made
                touched = {i.source for i in items}
                items += [i for i in s.exec(select(ItemRow).where(col(ItemRow.source).in_(touched),
                                                                  col(ItemRow.key).like(AGGREGATE_PREFIX + "%")))
                          if i not in items]
            item_ids = [i.id for i in items if i.id is not None]
            record_ids = list(s.exec(select(RecordRow.id).where(col(RecordRow.item_id).in_(item_ids))).all())
            receipt.aggregates = sum(1 for i in items if i.key.startswith(AGGREGATE_PREFIX))
            receipt.items, receipt.records = len(item_ids) - receipt.aggregates, len(record_ids)
            receipt.versions = _delete_where(s, VersionRow, col(VersionRow.item_id).in_(item_ids))
            receipt.changes = _delete_where(s, ChangeRow, col(ChangeRow.item_id).in_(item_ids))
            _delete_where(s, RecordRow, col(RecordRow.item_id).in_(item_ids))
            s.add_all([IndexEventRow(op="delete", record_id=rid) for rid in record_ids])
            _delete_where(s, ItemRow, col(ItemRow.id).in_(item_ids))
            # the query text that drew on them: found by the indexed item column, not by reading the log
            queries = list(s.exec(select(QueryLogItemRow.query_id).distinct()
                                  .where(col(QueryLogItemRow.item_id).in_(item_ids))).all())
            for start in range(0, len(queries), 1000):  # bounded IN lists
                chunk = queries[start:start + 1000]
                _delete_where(s, QueryLogItemRow, col(QueryLogItemRow.query_id).in_(chunk))
                receipt.query_log += _delete_where(s, QueryLogRow, col(QueryLogRow.id).in_(chunk))
            if source is not None and pattern is None:
                src = s.get(SourceRow, source)
                if src is not None:
                    s.delete(src)
                excluded = _purged_globs(s)
                if excluded.pop(source, None) is not None:  # a source added again starts with none
                    _set_meta(s, PURGED_META, json.dumps(excluded))
                # an sql source's stored watermarks: one added again must start with a full diff
                _delete_where(s, MetaRow, col(MetaRow.key).like(f"sql_watermark:{source}:%"))
        return receipt, record_ids

    def purged_paths(self) -> dict[str, list[str]]:
        """Globs purged by path, by source name ("*": every source)."""
        with self.read() as s:
            return _purged_globs(s)

    def lift_purge(self, source: str | None, pattern: str) -> int:
        """Stop excluding ``pattern`` (of ``source``, or of every source); returns 1 if it was
        excluded, else 0. The next scan tracks its files again."""
        with self.write() as s:
            excluded = _purged_globs(s)
            globs = excluded.get(source or "*", [])
            if pattern not in globs:
                return 0
            globs.remove(pattern)
            excluded = {k: v for k, v in excluded.items() if v}
            _set_meta(s, PURGED_META, json.dumps(excluded))
            return 1

    def status(self) -> dict[str, Any]:
        """Sources, items by state, the queue, records, index lag (the LLM layer's block is added
        by :func:`sleepd.llm_budget.status_report`, which sits above the ledger)."""
        with self.read() as s:
            sources = s.exec(select(SourceRow).order_by(SourceRow.name)).all()
            is_agg = col(ItemRow.key).like(AGGREGATE_PREFIX + "%")
            counts = s.exec(select(ItemRow.source, ItemRow.state, is_agg, func.count()).group_by(
                ItemRow.source, ItemRow.state, is_agg)).all()
            failed = s.exec(select(ItemRow).where(ItemRow.state == ItemState.FAILED.value)
                            .order_by(col(ItemRow.updated_at).desc()).limit(50)).all()
            queue = s.exec(select(ChangeRow.status, func.count()).where(
                col(ChangeRow.status).in_(_OPEN)).group_by(ChangeRow.status)).all()
            n_records = int(s.exec(select(func.count()).select_from(RecordRow)).one())
            lag = _index_lag(s)
            purged = _purged_globs(s)
        by_source: dict[str, Counter[str]] = {}
        aggregates: dict[str, Counter[str]] = {}
        for name, state, agg, n in counts:
            (aggregates if agg else by_source).setdefault(name, Counter())[state] = n
        report: dict[str, Any] = {
            "sources": [{
                "name": src.name, "kind": src.kind, "path": _where(src),
                "error": src.error, "last_scan_at": src.last_scan_at,
                "items": {st.value: by_source.get(src.name, Counter())[st.value] for st in ItemState},
                # cross-item records (repository map, portfolio...), counted apart from the files
                "aggregates": {st.value: aggregates.get(src.name, Counter())[st.value] for st in ItemState},
                "failed": [{"item": f.key, "error": f.error} for f in failed if f.source == src.name],
                # globs purged by path: their files are not tracked again until the purge is lifted
                "purged": sorted({*purged.get(src.name, []), *purged.get("*", [])}),
            } for src in sources],
            "queue": {status: n for status, n in queue},
            "records": n_records,
            "index_lag": lag,
        }
        return report


def _index_lag(s: Session) -> int:
    """Index events not applied yet."""
    return int(s.exec(select(func.count()).select_from(IndexEventRow)
                      .where(col(IndexEventRow.applied) == false())).one())


def _is_current(item: ItemRow, content_hash: str, pipeline_version: str) -> bool:
    return (item.version > 0 and item.enriched_hash == content_hash and item.pipeline_version == pipeline_version
            and item.state != ItemState.DELETED.value)


def _source_from_row(row: SourceRow) -> Source:
    cfg = json.loads(row.config)
    if row.kind == "sql":
        return SqlSource.from_dict(cfg)
    return FileSource(name=row.name, path=Path(cfg["path"]), include=tuple(cfg["include"]),
                      exclude=tuple(cfg["exclude"]), profile=cfg["profile"], access=tuple(cfg["access"]))


def _where(row: SourceRow) -> str | None:
    """A files source's folder, or an sql source's URL without its password."""
    source = _source_from_row(row)
    return str(source.path) if isinstance(source, FileSource) else source.where


def _purged_globs(s: Session) -> dict[str, list[str]]:
    row = s.get(MetaRow, PURGED_META)
    return dict(json.loads(row.value)) if row else {}


def _purged(s: Session, source: str, key: str) -> bool:
    excluded = _purged_globs(s)
    return any(fnmatch.fnmatchcase(key, g) for g in [*excluded.get(source, []), *excluded.get("*", [])])


def _set_meta(s: Session, key: str, value: str) -> None:
    row = s.get(MetaRow, key)
    if row is None:
        s.add(MetaRow(key=key, value=value))
    else:
        row.value = value


def _matching_items(s: Session, source: str | None, pattern: str | None) -> list[ItemRow]:
    query = select(ItemRow)
    if source is not None:
        query = query.where(ItemRow.source == source)
    items = list(s.exec(query).all())
    if pattern is not None:
        items = [i for i in items if fnmatch.fnmatchcase(i.key, pattern)]
    return items


def _delete_where(s: Session, table: type[SQLModel], condition: Any) -> int:
    result = s.exec(delete(table).where(condition))  # type: ignore[call-overload]
    return int(result.rowcount or 0)


def _retract_records(s: Session, item_id: int) -> int:
    old = list(s.exec(select(RecordRow.id).where(RecordRow.item_id == item_id)).all())
    if old:
        _delete_where(s, RecordRow, col(RecordRow.item_id) == item_id)
        s.add_all([IndexEventRow(op="delete", record_id=rid) for rid in old])
    return len(old)


def _open_changes(s: Session, item_id: int, upto: int) -> list[ChangeRow]:
    return list(s.exec(select(ChangeRow).where(ChangeRow.item_id == item_id, col(ChangeRow.id) <= upto,
                                               col(ChangeRow.status).in_(_OPEN))).all())


def _finish_changes(s: Session, item: ItemRow, content_hash: str | None, upto: int,
                    status: ChangeStatus) -> None:
    """Close the changes this run covered: every change seen before the task read the item
    (older content), and later ones that saw the same content. Newer content stays open."""
    assert item.id is not None
    now = time.time()
    still_open = False
    for change in s.exec(select(ChangeRow).where(ChangeRow.item_id == item.id,
                                                 col(ChangeRow.status).in_(_OPEN))).all():
        assert change.id is not None
        if change.content_hash == content_hash:
            change.status, change.finished_at = status.value, now
        elif change.id <= upto:
            change.status, change.finished_at = ChangeStatus.SUPERSEDED.value, now
        else:
            still_open = True
    if still_open:
        item.state = ItemState.PENDING.value
    elif content_hash is None:
        item.state = ItemState.DELETED.value
    else:
        item.state = ItemState.ENRICHED.value


def _fail_item_row(s: Session, item_id: int, error: str) -> None:
    item = s.get(ItemRow, item_id)
    if item is not None:
        item.state, item.error = ItemState.FAILED.value, error
