"""Refresh as an admin means it: queue items ahead of everything else, then tell for each one
whether it is fresh again (published at its current content), failed, gone, or still waiting."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select

from sleepd.ledger.engine import OPEN, LedgerBase, matching_items
from sleepd.schema import ChangeRow, ItemRow, ItemState

__all__ = ["RefreshMixin", "freshness_counts"]

#: ids per IN list when reading the state of many items
_CHUNK = 1000
#: what an item's refresh ended in, or "waiting" while a change of it is open
FRESHNESS = ("fresh", "failed", "deleted", "gone", "waiting")


class RefreshMixin(LedgerBase):
    """Queue refreshes; read where the refreshed items stand."""

    def request_refresh(self, source: str | None, pattern: str | None, force: bool) -> int:
        """Queue matching items ahead of everything else; ``force`` re-enriches even if current.
        Returns how many were queued."""
        return len(self.queue_refresh(source, pattern, force))

    def queue_refresh(self, source: str | None, pattern: str | None, force: bool) -> list[dict[str, Any]]:
        """Like :meth:`request_refresh`, returning the items queued: ``{"id", "source", "item"}``,
        by source and key."""
        now = time.time()
        with self.write() as s:
            items = [i for i in matching_items(s, source, pattern) if i.state != ItemState.DELETED.value]
            for item in items:
                assert item.id is not None
                s.add(ChangeRow(item_id=item.id, content_hash=item.observed_hash, priority=10,
                                force=force, observed_at=now))
        return [{"id": i.id, "source": i.source, "item": i.key} for i in sorted(items, key=lambda i: (i.source, i.key))]

    def freshness(self, item_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Where each item stands, in the order given: ``state`` is "waiting" while a change of
        it is open, else "fresh" (published at the content last observed), "failed" (with its
        ``error``), "deleted" (its file is gone) or "gone" (purged since)."""
        ids = list(dict.fromkeys(int(i) for i in item_ids))
        items: dict[int, ItemRow] = {}
        busy: set[int] = set()
        with self.read() as s:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                items.update((i.id, i) for i in s.exec(select(ItemRow).where(col(ItemRow.id).in_(chunk)))
                             if i.id is not None)
                busy.update(s.exec(select(ChangeRow.item_id).distinct().where(
                    col(ChangeRow.item_id).in_(chunk), col(ChangeRow.status).in_(OPEN))).all())
        out: list[dict[str, Any]] = []
        for item_id in ids:
            item = items.get(item_id)
            if item is None:
                out.append({"id": item_id, "source": None, "item": None, "state": "gone"})
                continue
            state = "waiting" if item_id in busy or item.state == ItemState.PENDING.value else \
                {ItemState.ENRICHED.value: "fresh"}.get(item.state, item.state)
            out.append({"id": item_id, "source": item.source, "item": item.key, "state": state,
                        "version": item.version, "error": item.error if state == "failed" else None})
        return out


def freshness_counts(items: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many items are in each state of :meth:`RefreshMixin.freshness`."""
    counts = dict.fromkeys(FRESHNESS, 0)
    for item in items:
        counts[item["state"]] += 1
    return counts
