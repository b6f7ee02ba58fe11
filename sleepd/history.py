"""An item's versions: what was published when, from which content and pipeline, and what its
records are. Read straight from the ledger (no index, no model), so it answers with or
without a running daemon.

The ledger keeps every version's row (time, content hash, pipeline version, record count), the
records of the version now published (``records``) and those of the newest ``keep_versions`` old
versions (``record_archive``, filled by each publish and by a deletion). The records of a version
that retention pruned, or that an older sleepd replaced before it archived, are reported as no
longer kept, never guessed.

Who may read: the item as a whole, by its current records' access list (or its source's when it
has none, e.g. once deleted), so an old version is shown to whoever may read the item now."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from sleepd.access import access_for
from sleepd.auth import Principal
from sleepd.errors import BadRequest, NotFound
from sleepd.ledger import Ledger
from sleepd.schema import ItemRow, RecordArchiveRow, RecordRow, VersionRow
from sleepd.settings import Source
from sleepd.sql.config import SqlSource

__all__ = ["diff_versions", "item_history", "item_version"]

NOT_KEPT = ("the records of version {v} are no longer kept: retention keeps those of the newest keep_versions "
            "old versions (every version's time, content hash, pipeline and record count stay)")

#: a record of any version: current (``records``) or archived
Record = RecordRow | RecordArchiveRow


def item_history(ledger: Ledger, principal: Principal, item: str, source: str | None = None) -> dict[str, Any]:
    """Every version of ``item``, newest first, with which one is current and, where its records
    are kept, the record count by kind."""
    with ledger.read() as s:
        row = _readable_item(s, ledger, principal, item, source)
        versions = s.exec(select(VersionRow).where(VersionRow.item_id == row.id)
                          .order_by(col(VersionRow.version).desc())).all()
        kinds: dict[int, Counter[str]] = {}
        for table in (RecordRow, RecordArchiveRow):
            for version, kind, n in s.exec(select(table.version, table.kind, func.count())
                                           .where(table.item_id == row.id)
                                           .group_by(col(table.version), col(table.kind))).all():
                kinds.setdefault(version, Counter())[kind] += n
    return {**_item_dict(row), "versions": [{
        **_version_dict(v, row),
        "kinds": dict(sorted(kinds[v.version].items())) if v.version in kinds else None,
    } for v in versions]}


def item_version(ledger: Ledger, principal: Principal, item: str, version: int | None = None,
                 source: str | None = None) -> dict[str, Any]:
    """One version of ``item`` (default: the current one) with its records and their evidence,
    or ``records_kept: false`` and a note when they are gone."""
    with ledger.read() as s:
        row = _readable_item(s, ledger, principal, item, source)
        number = _version_number(row, version)
        found = _version_row(s, row, number)
        records = _records(s, row, number)
    kept = bool(records) or found.n_records == 0
    return {**_item_dict(row), "version": _version_dict(found, row), "records_kept": kept,
            "note": None if kept else NOT_KEPT.format(v=number),
            "records": [_record_dict(r) for r in records]}


def diff_versions(ledger: Ledger, principal: Principal, item: str, a: int, b: int,
                  source: str | None = None) -> dict[str, Any]:
    """What changed from version ``a`` to ``b``: the versions' content hash, pipeline and record
    count, and (when both versions' records are kept) records added, removed and changed. Records
    are matched by kind, title and evidence paths (the n-th of one such key with the n-th of the
    other); a matched pair changed when its text, evidence lines or access list differ
    (``fields`` says which)."""
    with ledger.read() as s:
        row = _readable_item(s, ledger, principal, item, source)
        old, new = _version_row(s, row, a), _version_row(s, row, b)
        old_records, new_records = _records(s, row, a), _records(s, row, b)
    report: dict[str, Any] = {
        **_item_dict(row), "a": _version_dict(old, row), "b": _version_dict(new, row),
        "content_changed": old.content_hash != new.content_hash,
        "pipeline_changed": old.pipeline_version != new.pipeline_version,
        "records_delta": new.n_records - old.n_records,
    }
    gone = [v.version for v, recs in ((old, old_records), (new, new_records)) if v.n_records and not recs]
    if gone:
        report.update(records_kept=False, note="; ".join(NOT_KEPT.format(v=v) for v in gone),
                      added=None, removed=None, changed=None)
        return report
    before, after = _keyed(old_records), _keyed(new_records)
    report.update(
        records_kept=True, note=None,
        added=[_brief(after[k]) for k in after if k not in before],
        removed=[_brief(before[k]) for k in before if k not in after],
        changed=[{**_brief(after[k]), "fields": fields, "text_before": before[k].text, "text_after": after[k].text}
                 for k in after if k in before and (fields := _changed_fields(before[k], after[k]))],
    )
    return report


# -- finding the item -----------------------------------------------------------------------

def _readable_item(s: Session, ledger: Ledger, principal: Principal, item: str, source: str | None) -> ItemRow:
    """The item named ``item`` (a path, ``source:key`` or ``table:key``) that ``principal`` may
    read. An item the caller may not read is reported exactly as one that does not exist."""
    if not item:
        raise BadRequest("name an item: a path, or SOURCE:KEY (TABLE:KEY for an sql source)")
    sources = {src.name: src for src in ledger.sources()}
    candidates = _candidates(s, sources, item, source)
    readable = [c for c in candidates if _may_read(s, principal, c, sources.get(c.source))]
    if not readable:
        where = f" in source {source!r}" if source else ""
        raise NotFound(f"no item {item!r}{where}")
    if len(readable) > 1:
        names = ", ".join(sorted(f"{c.source}:{c.key}" for c in readable))
        raise BadRequest(f"{item!r} names {len(readable)} items ({names}): give SOURCE:KEY or --source")
    return readable[0]


def _candidates(s: Session, sources: dict[str, Source], item: str, source: str | None) -> list[ItemRow]:
    query = select(ItemRow).where(ItemRow.key == item)
    if source is not None:
        query = query.where(ItemRow.source == source)
    rows = list(s.exec(query).all())
    prefix, sep, key = item.partition(":")
    if rows or not sep or source is not None:
        return rows
    # SOURCE:KEY, or TABLE:KEY naming an sql source by its root table
    names = {prefix} | {n for n, src in sources.items() if isinstance(src, SqlSource) and src.root.name == prefix}
    return list(s.exec(select(ItemRow).where(col(ItemRow.source).in_(names), ItemRow.key == key)).all())


def _may_read(s: Session, principal: Principal, item: ItemRow, source: Source | None) -> bool:
    """Records carry the access list they were published with; an item without records falls
    back to the list its source gives it (its path glob's, or the source's), except where access is
    per item (an sql access column or lookup): there only an admin sees it."""
    if principal.admin:
        return True
    access = s.exec(select(RecordRow.access).where(RecordRow.item_id == item.id).limit(1)).first()
    if access is not None:
        return principal.can_read(json.loads(access))
    readers = None if source is None else access_for(source, item.key)
    return readers is not None and principal.can_read(readers)


# -- reading versions -----------------------------------------------------------------------

def _version_number(item: ItemRow, version: int | None) -> int:
    if version is None:
        if item.version < 1:
            raise NotFound(f"item {item.key!r} has no published version yet (state: {item.state})")
        return item.version
    return version


def _version_row(s: Session, item: ItemRow, version: int) -> VersionRow:
    if version < 1:
        raise BadRequest(f"a version is a number from 1; got {version}")
    row = s.exec(select(VersionRow).where(VersionRow.item_id == item.id, VersionRow.version == version)).first()
    if row is None:
        raise NotFound(f"item {item.key!r} has no version {version} (it has {item.version})")
    return row


def _records(s: Session, item: ItemRow, version: int) -> list[Record]:
    """The version's records, current or archived (a version's records are in one table or the
    other), in evidence order: the n-th part of a section is matched with the n-th by a diff."""
    rows: list[Record] = list(s.exec(select(RecordRow).where(RecordRow.item_id == item.id,
                                                             RecordRow.version == version)).all())
    if not rows:
        rows = list(s.exec(select(RecordArchiveRow).where(RecordArchiveRow.item_id == item.id,
                                                          RecordArchiveRow.version == version)).all())
    return sorted(rows, key=_evidence_order)


def _evidence_order(r: Record) -> tuple[str, int, str, str, str]:
    first = (json.loads(r.evidence) or [{}])[0]
    return str(first.get("path", "")), int(first.get("start_line") or 0), r.kind, r.title, r.id


def _item_dict(item: ItemRow) -> dict[str, Any]:
    return {"item": item.key, "source": item.source, "state": item.state, "current_version": item.version,
            "error": item.error}


def _version_dict(v: VersionRow, item: ItemRow) -> dict[str, Any]:
    return {"version": v.version, "created_at": v.created_at, "content_hash": v.content_hash,
            "pipeline_version": v.pipeline_version, "status": v.status, "n_records": v.n_records,
            "current": v.version == item.version and v.status == "published"}


def _record_dict(r: Record) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "title": r.title, "text": r.text, "evidence": json.loads(r.evidence)}


def _brief(r: Record) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "title": r.title, "paths": list(_paths(r))}


def _paths(r: Record) -> tuple[str, ...]:
    """The files (or rows) a record's evidence cites, in order, each once."""
    return tuple(dict.fromkeys(str(e.get("path", "")) for e in json.loads(r.evidence)))


def _changed_fields(old: Record, new: Record) -> list[str]:
    return [name for name in ("text", "evidence", "access") if getattr(old, name) != getattr(new, name)]


def _keyed(records: list[Record]) -> dict[tuple[str, str, tuple[str, ...], int], Record]:
    seen: Counter[tuple[str, str, tuple[str, ...]]] = Counter()
    keyed = {}
    for r in records:
        key = (r.kind, r.title, _paths(r))
        seen[key] += 1
        keyed[(*key, seen[key])] = r
    return keyed
