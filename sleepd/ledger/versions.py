"""Versions, the worker's side: publish a new version of an item's records in one transaction,
retract a deleted item, fail one, and close the changes each of those covered. The records a
publish supersedes, and those of a deleted item, move to the archive (:mod:`sleepd.ledger.archive`)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import func
from sqlmodel import Session, col, select

from sleepd.access import access_for
from sleepd.ledger.archive import archive_records
from sleepd.ledger.engine import OPEN, LedgerBase
from sleepd.ledger.sources import source_from_row
from sleepd.records import Draft
from sleepd.schema import (
    AGGREGATE_PREFIX,
    ChangeRow,
    ChangeStatus,
    IndexEventRow,
    ItemRow,
    ItemState,
    RecordRow,
    SourceRow,
    VersionRow,
)

__all__ = ["VersionsMixin", "fail_item_row", "record_id"]

_RECORD_NS = uuid.UUID("6f1c6f0e-3c55-4a8e-9a51-2d1f2b7f0c11")


def record_id(item_id: int, version: int, ordinal: int) -> str:
    """Deterministic, so a retried publish produces the same ids."""
    return str(uuid.uuid5(_RECORD_NS, f"{item_id}:{version}:{ordinal}"))


class VersionsMixin(LedgerBase):
    """The worker's side: each outcome of S(c) is one transaction."""

    def item(self, item_id: int) -> ItemRow | None:
        with self.read() as s:
            return s.get(ItemRow, item_id)

    def items_by_id(self, item_ids: Sequence[int]) -> dict[int, ItemRow]:
        """Items by id, in one read (a worker's batch names its items in the log from it)."""
        with self.read() as s:
            rows = s.exec(select(ItemRow).where(col(ItemRow.id).in_(list(item_ids)))).all() if item_ids else []
        return {r.id: r for r in rows if r.id is not None}

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
                col(ChangeRow.status).in_(OPEN)).limit(1)).first() is not None

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
                        access: Sequence[str], seen_change_id: int, force: bool = False,
                        access_from_source: bool = False) -> int | None:
        """Atomically replace the item's records with a new version (the old ones move to the
        archive). Returns the new version, or None when that content is already published by this
        pipeline (idempotent).

        ``access_from_source``: the records get the list the source gives the item now, read in
        this transaction, where the source has one (an admin may have changed it since the worker
        read it). An aggregate is not published when a newer change of it is open: its inputs or
        their access groups changed meanwhile, and that change rebuilds it."""
        now = time.time()
        with self.write() as s:
            item = s.get(ItemRow, item_id, with_for_update=True)
            if item is None:
                return None  # purged while we worked
            if not force and _is_current(item, content_hash, pipeline_version):
                _finish_changes(s, item, content_hash, seen_change_id, ChangeStatus.DONE)
                return None
            if item.key.startswith(AGGREGATE_PREFIX) and _newer_change(s, item_id, seen_change_id, content_hash):
                _finish_changes(s, item, content_hash, seen_change_id, ChangeStatus.SUPERSEDED)
                return None
            if access_from_source:
                access = _source_access(s, item, access)
            archive_records(s, item_id)
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
        """The item is gone: its records leave the index and move to the archive, so its history
        stays readable until retention prunes it or a purge deletes it. Returns records removed."""
        with self.write() as s:
            item = s.get(ItemRow, item_id, with_for_update=True)
            if item is None:
                return 0
            removed = archive_records(s, item_id)
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


def _is_current(item: ItemRow, content_hash: str, pipeline_version: str) -> bool:
    return (item.version > 0 and item.enriched_hash == content_hash and item.pipeline_version == pipeline_version
            and item.state != ItemState.DELETED.value)


def _source_access(s: Session, item: ItemRow, given: Sequence[str]) -> Sequence[str]:
    """The list the item's source gives it now (its row read under a shared lock, so an access
    change commits wholly before or after this publish); ``given`` where the rows decide."""
    row = s.get(SourceRow, item.source, with_for_update={"read": True})
    if row is None:
        return given
    found = access_for(source_from_row(row), item.key)
    return given if found is None else found


def _newer_change(s: Session, item_id: int, seen: int, content_hash: str) -> bool:
    """An open change of the item, observed after the task read it, for other content."""
    return s.exec(select(ChangeRow.id).where(
        ChangeRow.item_id == item_id, col(ChangeRow.id) > seen, col(ChangeRow.status).in_(OPEN),
        col(ChangeRow.content_hash).is_distinct_from(content_hash)).limit(1)).first() is not None


def _open_changes(s: Session, item_id: int, upto: int) -> list[ChangeRow]:
    return list(s.exec(select(ChangeRow).where(ChangeRow.item_id == item_id, col(ChangeRow.id) <= upto,
                                               col(ChangeRow.status).in_(OPEN))).all())


def _finish_changes(s: Session, item: ItemRow, content_hash: str | None, upto: int,
                    status: ChangeStatus) -> None:
    """Close the changes this run covered: every change seen before the task read the item
    (older content), and later ones that saw the same content. Newer content stays open."""
    assert item.id is not None
    now = time.time()
    still_open = False
    for change in s.exec(select(ChangeRow).where(ChangeRow.item_id == item.id,
                                                 col(ChangeRow.status).in_(OPEN))).all():
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


def fail_item_row(s: Session, item_id: int, error: str) -> None:
    item = s.get(ItemRow, item_id)
    if item is not None:
        item.state, item.error = ItemState.FAILED.value, error
