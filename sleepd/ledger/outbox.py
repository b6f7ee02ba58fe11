"""The ledger as the outbox: what the watchers observe becomes a change row in the same
transaction, and the scheduler hands open changes out from here (leases, attempts, poison pills,
outdated pipeline versions re-queued by demand)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import func, update
from sqlmodel import col, select

from sleepd.ledger.engine import OPEN, LedgerBase, is_purged
from sleepd.ledger.versions import fail_item_row
from sleepd.schema import (
    AGGREGATE_PREFIX,
    ChangeRow,
    ChangeStatus,
    ItemRow,
    ItemState,
    QueryLogRow,
)

__all__ = ["HOT_QUERIES", "MAX_ATTEMPTS", "OUTDATED_SCAN", "OutboxMixin"]

#: a change that workers began this many times without finishing is a poison pill: give up on it
MAX_ATTEMPTS = 5
#: outdated items looked at per scheduling round, and recent queries that rank them by use
OUTDATED_SCAN = 2000
HOT_QUERIES = 1000


class OutboxMixin(LedgerBase):
    """Observations become changes; open changes are handed out under a lease."""

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
            if is_purged(s, source, key):
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
            if is_purged(s, source, key):
                return
            item = s.exec(select(ItemRow).where(ItemRow.source == source, ItemRow.key == key)).first()
            if item is None:
                item = ItemRow(source=source, key=key)
                s.add(item)
            item.state, item.error, item.observed_hash = ItemState.FAILED.value, error, None
            item.updated_at = time.time()

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
                    fail_item_row(s, row.item_id, row.error)
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
                   .where(col(ChangeRow.id).in_(list(change_ids)), col(ChangeRow.status).in_(OPEN))
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
