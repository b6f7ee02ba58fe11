"""The ledger's part of ``sleepd status``: sources, items by state, the queue, records, index lag."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from sleepd.ledger.engine import OPEN, LedgerBase, count_index_lag, purged_globs
from sleepd.ledger.sources import source_where
from sleepd.schema import (
    AGGREGATE_PREFIX,
    ChangeRow,
    ItemRow,
    ItemState,
    RecordRow,
    SourceRow,
)

__all__ = ["StatusMixin"]


class StatusMixin(LedgerBase):
    """One read of everything status shows."""

    def status(self) -> dict[str, Any]:
        """Sources, items by state, the queue, records, index lag (the LLM layer's block is added
        by :func:`sleepd.status.status_report`, which sits above the ledger)."""
        with self.read() as s:
            sources = s.exec(select(SourceRow).order_by(SourceRow.name)).all()
            is_agg = col(ItemRow.key).like(AGGREGATE_PREFIX + "%")
            counts = s.exec(select(ItemRow.source, ItemRow.state, is_agg, func.count()).group_by(
                ItemRow.source, ItemRow.state, is_agg)).all()
            failed = s.exec(select(ItemRow).where(ItemRow.state == ItemState.FAILED.value)
                            .order_by(col(ItemRow.updated_at).desc()).limit(50)).all()
            queue = s.exec(select(ChangeRow.status, func.count()).where(
                col(ChangeRow.status).in_(OPEN)).group_by(ChangeRow.status)).all()
            n_records = int(s.exec(select(func.count()).select_from(RecordRow)).one())
            lag = count_index_lag(s)
            purged = purged_globs(s)
        by_source: dict[str, Counter[str]] = {}
        aggregates: dict[str, Counter[str]] = {}
        for name, state, agg, n in counts:
            (aggregates if agg else by_source).setdefault(name, Counter())[state] = n
        report: dict[str, Any] = {
            "sources": [{
                "name": src.name, "kind": src.kind, "path": source_where(src),
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
