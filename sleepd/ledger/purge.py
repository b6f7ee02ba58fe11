"""Purge: remove memory for good (items, versions, records current and archived, changes,
query-log text) and keep purged paths out of memory until the purge is lifted."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel import col, select

from sleepd.ledger.engine import PURGED_META, LedgerBase, delete_where, matching_items, purged_globs, write_meta
from sleepd.schema import (
    AGGREGATE_PREFIX,
    ChangeRow,
    IndexEventRow,
    ItemRow,
    ItemState,
    MetaRow,
    QueryLogItemRow,
    QueryLogRow,
    RecordArchiveRow,
    RecordRow,
    SourceRow,
    VersionRow,
)

__all__ = ["PurgeMixin", "PurgeReceipt"]


@dataclass
class PurgeReceipt:
    """What a purge removed, by kind (the API and the audit log show it)."""

    items: int = 0
    versions: int = 0
    records: int = 0
    #: records of old versions (and of deleted items) kept for history
    archived: int = 0
    changes: int = 0
    query_log: int = 0
    index_points: int = 0
    #: aggregate items (repository map, portfolio...) that drew on what was purged; not in ``items``
    aggregates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class PurgeMixin(LedgerBase):
    """Purge and lift; the caller removes the index points of the record ids returned."""

    def purge_preview(self, source: str | None = None, pattern: str | None = None,
                      listed: int = 50) -> dict[str, object]:
        """What :meth:`purge` would remove, removing nothing: how many items (not counting
        aggregates), versions, records and archived records, and the first ``listed`` keys."""
        with self.read() as s:
            items = [i for i in matching_items(s, source, pattern) if not i.key.startswith(AGGREGATE_PREFIX)]
            ids = [i.id for i in items if i.id is not None]
            records = len(s.exec(select(RecordRow.id).where(col(RecordRow.item_id).in_(ids))).all())
            versions = len(s.exec(select(VersionRow.id).where(col(VersionRow.item_id).in_(ids))).all())
            archived = len(s.exec(select(RecordArchiveRow.id).where(col(RecordArchiveRow.item_id).in_(ids))).all())
        keys = sorted(f"{i.source}:{i.key}" for i in items)
        return {"items": len(items), "versions": versions, "records": records, "archived": archived,
                "keys": keys[:listed]}

    def purge(self, source: str | None = None, pattern: str | None = None) -> tuple[PurgeReceipt, list[str]]:
        """Remove matching items with every version, record (current and archived) and change,
        the query-log text that drew on them, and (for a whole source) the source itself. Returns the receipt and
        the record ids whose index points the caller must remove. A purge by path also stops
        the watchers tracking matching keys again, until :meth:`lift_purge`."""
        receipt = PurgeReceipt()
        with self.write() as s:
            if pattern is not None:
                excluded = purged_globs(s)
                excluded[source or "*"] = sorted({*excluded.get(source or "*", []), pattern})
                write_meta(s, PURGED_META, json.dumps(excluded))
            items = matching_items(s, source, pattern)
            if pattern is not None:  # aggregates drew on what goes: they go too, and are re-made
                touched = {i.source for i in items}
                items += [i for i in s.exec(select(ItemRow).where(col(ItemRow.source).in_(touched),
                                                                  col(ItemRow.key).like(AGGREGATE_PREFIX + "%")))
                          if i not in items]
            item_ids = [i.id for i in items if i.id is not None]
            record_ids = list(s.exec(select(RecordRow.id).where(col(RecordRow.item_id).in_(item_ids))).all())
            receipt.aggregates = sum(1 for i in items if i.key.startswith(AGGREGATE_PREFIX))
            receipt.items, receipt.records = len(item_ids) - receipt.aggregates, len(record_ids)
            receipt.versions = delete_where(s, VersionRow, col(VersionRow.item_id).in_(item_ids))
            receipt.changes = delete_where(s, ChangeRow, col(ChangeRow.item_id).in_(item_ids))
            delete_where(s, RecordRow, col(RecordRow.item_id).in_(item_ids))
            receipt.archived = delete_where(s, RecordArchiveRow, col(RecordArchiveRow.item_id).in_(item_ids))
            s.add_all([IndexEventRow(op="delete", record_id=rid) for rid in record_ids])
            delete_where(s, ItemRow, col(ItemRow.id).in_(item_ids))
            # the query text that drew on them: found by the indexed item column, not by reading the log
            queries = list(s.exec(select(QueryLogItemRow.query_id).distinct()
                                  .where(col(QueryLogItemRow.item_id).in_(item_ids))).all())
            for start in range(0, len(queries), 1000):  # bounded IN lists
                chunk = queries[start:start + 1000]
                delete_where(s, QueryLogItemRow, col(QueryLogItemRow.query_id).in_(chunk))
                receipt.query_log += delete_where(s, QueryLogRow, col(QueryLogRow.id).in_(chunk))
            if source is not None and pattern is None:
                src = s.get(SourceRow, source)
                if src is not None:
                    s.delete(src)
                excluded = purged_globs(s)
                if excluded.pop(source, None) is not None:  # a source added again starts with none
                    write_meta(s, PURGED_META, json.dumps(excluded))
                # an sql source's stored watermarks: one added again must start with a full diff
                delete_where(s, MetaRow, col(MetaRow.key).like(f"sql_watermark:{source}:%"))
        return receipt, record_ids

    def purged_paths(self) -> dict[str, list[str]]:
        """Globs purged by path, by source name ("*": every source)."""
        with self.read() as s:
            return purged_globs(s)

    def lift_purge(self, source: str | None, pattern: str) -> int:
        """Stop excluding ``pattern`` (of ``source``, or of every source); returns 1 if it was
        excluded, else 0. The next scan tracks its files again."""
        with self.write() as s:
            excluded = purged_globs(s)
            globs = excluded.get(source or "*", [])
            if pattern not in globs:
                return 0
            globs.remove(pattern)
            excluded = {k: v for k, v in excluded.items() if v}
            write_meta(s, PURGED_META, json.dumps(excluded))
            return 1

    def tracked(self, source: str | None, pattern: str) -> list[str]:
        """``source:key`` of the items matching ``pattern`` that are tracked (not deleted), sorted;
        after a lift and a rescan, what came back into memory."""
        with self.read() as s:
            items = matching_items(s, source, pattern)
        return sorted(f"{i.source}:{i.key}" for i in items
                      if i.state != ItemState.DELETED.value and not i.key.startswith(AGGREGATE_PREFIX))
