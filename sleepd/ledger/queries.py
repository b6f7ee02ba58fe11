"""The query's side: the candidates still current, read in one snapshot, and the query log
(which drives demand-ordered scheduling and idleness)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from sleepd.ledger.engine import LedgerBase, delete_where, write_meta
from sleepd.schema import (
    ITEM_COLUMNS,
    RECORD_COLUMNS,
    Item,
    ItemRow,
    QueryLogItemRow,
    QueryLogRow,
    Record,
    RecordRow,
)

__all__ = ["QueriesMixin"]


class QueriesMixin(LedgerBase):
    """What the query verifies its candidates against, and what it logs."""

    def current_records(self, ids: Sequence[str]) -> tuple[list[Record], dict[int, Item]]:
        """The candidates that are still the published version of a live item, read in one
        snapshot (so an item's records all come from one version), with their items. One
        snapshot on PostgreSQL too: the reader's transactions are REPEATABLE READ."""
        if not ids:
            return [], {}
        with self.read() as s:
            # without the stored vectors: the query never reads them, and they are most of a row
            rows = [Record(*r) for r in s.execute(sa_select(*RECORD_COLUMNS).where(col(RecordRow.id).in_(list(ids))))]
            item_ids = {r.item_id for r in rows}
            items = {i.id: i for i in (Item(*r) for r in s.execute(
                sa_select(*ITEM_COLUMNS).where(col(ItemRow.id).in_(item_ids))))}
        live = [r for r in rows if r.item_id in items and items[r.item_id].version == r.version]
        return live, items

    def embeddings(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The stored embeddings of records, by id: the vectors alone, not whole rows."""
        if not ids:
            return {}
        with self.read() as s:
            found = s.exec(select(RecordRow.id, RecordRow.embedding).where(col(RecordRow.id).in_(list(ids)))).all()
        return {rid: embedding for rid, embedding in found}

    def item_cards(self, item_ids: Sequence[int], kind: str) -> dict[int, Record]:
        """The current record of ``kind`` (an item's card) of each of ``item_ids`` that has one,
        without its stored vector, read in one snapshot."""
        if not item_ids:
            return {}
        with self.read() as s:
            rows = [Record(*r) for r in s.execute(
                sa_select(*RECORD_COLUMNS).join(ItemRow, col(ItemRow.id) == col(RecordRow.item_id))
                .where(col(RecordRow.item_id).in_(list(item_ids)), col(RecordRow.kind) == kind,
                       col(RecordRow.version) == col(ItemRow.version)))]
        # one card per item version; should a version hold two, the first by content is the card
        cards: dict[int, Record] = {}
        for row in sorted(rows, key=lambda r: (r.item_id, r.text)):
            cards.setdefault(row.item_id, row)
        return cards

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
            write_meta(s, "last_query_at", latest)

    def prune_query_log(self, before: float) -> int:
        """Delete query-log rows logged before ``before`` (a time.time()); returns how many."""
        old = select(QueryLogRow.id).where(col(QueryLogRow.at) < before)
        with self.write() as s:
            delete_where(s, QueryLogItemRow, col(QueryLogItemRow.query_id).in_(old))
            return delete_where(s, QueryLogRow, col(QueryLogRow.at) < before)

    def route_counts(self) -> dict[str, int]:
        """Logged queries by the route that served them (memory, raw, mixed; "empty" for a pack
        that held nothing), over the query log's retention."""
        with self.read() as s:
            rows = s.exec(select(QueryLogRow.route, func.count()).group_by(QueryLogRow.route)).all()
        return {route or "empty": int(n) for route, n in rows}

    def last_query_at(self) -> float:
        return float(self.get_meta("last_query_at") or 0.0)
