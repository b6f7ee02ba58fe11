"""The records of old versions: moved to ``record_archive`` when a version is superseded or its
item deleted (in the same transaction, so ``records`` only ever holds current records), read by
history, and pruned by retention to the newest ``keep_versions`` archived versions per item.

A deleted item's last records are archived like a superseded version's: its history stays
readable until retention prunes it or a purge deletes it (a purge deletes the archive too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from sleepd.ledger.engine import LedgerBase, delete_where
from sleepd.schema import ARCHIVED_COLUMNS, IndexEventRow, RecordArchiveRow, RecordRow

__all__ = ["ArchiveMixin", "PruneReport", "archive_records"]

#: items whose surplus versions are deleted per write transaction (a short lock, bounded IN lists)
PRUNE_CHUNK = 500


def archive_records(s: Session, item_id: int) -> int:
    """Move the item's current records to the archive and have the index drop them. Returns how many."""
    old = list(s.exec(select(RecordRow.id).where(RecordRow.item_id == item_id)).all())
    if not old:
        return 0
    columns = [getattr(RecordRow, name) for name in ARCHIVED_COLUMNS]
    s.exec(insert(RecordArchiveRow).from_select(  # type: ignore[call-overload]
        list(ARCHIVED_COLUMNS), select(*columns).where(RecordRow.item_id == item_id)))
    delete_where(s, RecordRow, col(RecordRow.item_id) == item_id)
    s.add_all([IndexEventRow(op="delete", record_id=rid) for rid in old])
    return len(old)


@dataclass
class PruneReport:
    """What one retention pass removed."""

    items: int = 0
    versions: int = 0
    records: int = 0


class ArchiveMixin(LedgerBase):
    """Retention of the archive."""

    def prune_archive(self, keep_for: Callable[[str], int]) -> PruneReport:
        """Delete archived records beyond the newest ``keep_for(source)`` archived versions of
        each item. The version rows stay (history lists them, records not kept)."""
        with self.read() as s:
            rows = s.exec(select(RecordArchiveRow.item_id, RecordArchiveRow.version, RecordArchiveRow.source)
                          .distinct()).all()
        versions: dict[int, list[int]] = {}
        source_of: dict[int, str] = {}
        for item_id, version, source in rows:
            versions.setdefault(item_id, []).append(version)
            source_of[item_id] = source
        # per item, the newest version to drop: everything at or below it goes
        cutoff: dict[int, int] = {}
        report = PruneReport()
        for item_id, numbers in versions.items():
            numbers.sort(reverse=True)
            surplus = numbers[max(0, keep_for(source_of[item_id])):]
            if surplus:
                cutoff[item_id] = surplus[0]
                report.items += 1
                report.versions += len(surplus)
        ids = sorted(cutoff)
        for start in range(0, len(ids), PRUNE_CHUNK):
            with self.write() as s:
                for item_id in ids[start:start + PRUNE_CHUNK]:
                    report.records += delete_where(s, RecordArchiveRow, (col(RecordArchiveRow.item_id) == item_id)
                                                   & (col(RecordArchiveRow.version) <= cutoff[item_id]))
        return report

    def archived_count(self) -> int:
        """Rows in the archive (status and tests)."""
        with self.read() as s:
            return int(s.exec(select(func.count()).select_from(RecordArchiveRow)).one())
