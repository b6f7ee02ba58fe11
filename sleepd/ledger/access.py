"""Changing who may read a source, in place: records keep their text, embedding and version, and
only their access list changes, in the ledger at once and in the index through an ``item:<id>``
index event per item (the indexer rewrites those points' payload; no vector is sent again).

Aggregates mix the items of one access group, so a change of groups makes them wrong: the change
retracts the source's aggregates in the same transaction (no moment where an aggregate built for
the old groups is readable) and queues each for rebuilding from the new groups, ahead of other
work. A builder that was already running for the old groups finds that newer change at publish
and publishes nothing (see :meth:`VersionsMixin.publish_version`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from sleepd.access import access_event, access_rules
from sleepd.errors import NotFound
from sleepd.ledger.archive import archive_records
from sleepd.ledger.engine import LedgerBase
from sleepd.schema import (
    AGGREGATE_PREFIX,
    ChangeRow,
    IndexEventRow,
    ItemRow,
    ItemState,
    RecordRow,
    SourceRow,
    VersionRow,
)
from sleepd.settings import Source

__all__ = ["REBUILD_PRIORITY", "AccessChange", "AccessMixin"]

#: the priority of an aggregate's rebuild after an access change (an explicit refresh's)
REBUILD_PRIORITY = 10
#: item ids per UPDATE ... WHERE item_id IN (...)
_CHUNK = 500


@dataclass
class AccessChange:
    """What an access change did."""

    source: str
    #: items whose records now carry another list
    items: int = 0
    records: int = 0
    #: aggregates retracted until rebuilt from the new groups
    aggregates_retracted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AccessMixin(LedgerBase):
    """Access lists changed by an admin (or the config file), without re-enrichment."""

    def change_access(self, source: Source) -> AccessChange:
        """Save ``source`` with its new ``access`` (and path globs) and give the current records of
        each of its items the list the item has now, in one transaction."""
        rules = access_rules(source)
        change = AccessChange(source.name)
        with self.write() as s:
            # first, and locked: a worker publishing one of these items reads the source row (shared)
            # in its transaction, so it either commits before this one or sees the new lists
            row = s.get(SourceRow, source.name, with_for_update=True)
            if row is None:
                raise NotFound(f"no source named {source.name!r}")
            row.config = json.dumps(source.as_dict())
            items = s.exec(select(ItemRow.id, ItemRow.key).where(
                ItemRow.source == source.name, col(ItemRow.key).not_like(AGGREGATE_PREFIX + "%"))).all()
            held = {item_id: (low, high) for item_id, low, high in s.exec(
                select(RecordRow.item_id, func.min(RecordRow.access), func.max(RecordRow.access))
                .where(RecordRow.source == source.name).group_by(col(RecordRow.item_id))).all()}
            moved: dict[str, list[int]] = {}
            for item_id, key in items:
                wanted = rules.of(key)
                if wanted is None or item_id is None or item_id not in held:
                    continue
                text = json.dumps(list(wanted))
                if held[item_id] != (text, text):
                    moved.setdefault(text, []).append(item_id)
            for text, ids in moved.items():
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start:start + _CHUNK]
                    result = s.exec(update(RecordRow).where(col(RecordRow.item_id).in_(chunk))  # type: ignore[call-overload]
                                    .values(access=text))
                    change.records += int(result.rowcount or 0)
                    s.add_all([IndexEventRow(op="access", record_id=access_event(i)) for i in chunk])
                    change.items += len(chunk)
            if moved:
                change.aggregates_retracted = _retract_aggregates(s, source.name)
        return change

    def access_of_items(self, item_ids: Sequence[int]) -> dict[str, list[int]]:
        """The access list (JSON text) of the current records of these items, with the items that
        carry it: what the indexer writes into their points' payload."""
        groups: dict[str, list[int]] = {}
        with self.read() as s:
            for start in range(0, len(item_ids), _CHUNK):
                rows = s.exec(select(RecordRow.item_id, func.min(RecordRow.access))
                              .where(col(RecordRow.item_id).in_(list(item_ids[start:start + _CHUNK])))
                              .group_by(col(RecordRow.item_id))).all()
                for item_id, text in rows:
                    groups.setdefault(text, []).append(item_id)
        return groups


def _retract_aggregates(s: Session, source: str) -> int:
    """Retract the source's aggregates and queue each to be rebuilt, those not built yet too (a build
    may be running for the old groups). Returns how many had records."""
    now = time.time()
    rows = s.exec(select(ItemRow).where(
        ItemRow.source == source, col(ItemRow.key).like(AGGREGATE_PREFIX + "%"),
        ItemRow.state != ItemState.DELETED.value).with_for_update()).all()
    retracted = 0
    for item in rows:
        assert item.id is not None
        retracted += archive_records(s, item.id) > 0
        for old in s.exec(select(VersionRow).where(VersionRow.item_id == item.id,
                                                   VersionRow.status == "published")).all():
            old.status = "retracted"
        item.n_records, item.enriched_hash, item.updated_at = 0, None, now
        item.state = ItemState.PENDING.value
        # a content hash no plan has: a builder still running for the old groups sees it open at publish
        s.add(ChangeRow(item_id=item.id, content_hash=f"access-change:{now}", priority=REBUILD_PRIORITY,
                        observed_at=now))
    return retracted
