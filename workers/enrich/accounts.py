"""The accounts enricher: one account's rows (an sql item) into memory records, with no model and
no I/O. Input is the JSON document :func:`sleepd.sql.rows.account_document` makes::

    {"source": "retail", "key": "yusuf_rossi_9620",
     "tables": [{"name": "users", "key": "user_id", "id": null}, {"name": "orders", ...}],
     "rows": {"users": [{...}], "orders": [{...}, ...]}}

The first table is the root (the account itself; when it has several rows for the key, as a
query source's result does, the first is the account and the rest are related rows). Records:

* ACCOUNT, the brief: who, contact, payment methods, every related row in one line (an order: its
  id, state, what was in it, what was paid), open rows and refunds; evidence: every row.
* TIMELINE: the account's events (rows and the transactions inside them), by time when the rows
  carry one, else in table order.
* FLAGS (when any): rows open a long time, refunds, several payment methods used, cancellations,
  deliveries to another address; each flag cites its rows.
* ROW: each related row in full (an order with its items, fulfilments and payments).
* QUESTIONS: likely questions with their answers (how to reach the customer, how they pay, where each
  table's rows stand, each open row's state, refunds), each answer citing its rows.

Evidence is ``Evidence("orders:#W2378156", 1, 1)``: table and row id (see :class:`Evidence`).
Nothing here knows a particular schema: columns are recognised by common names (``*name*``,
``email``, ``zip``, ``status``, ``*_at``, ``amount``, ``payment_method*``...; see
:mod:`workers.enrich.account_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sleepd.records import Draft, RecordKind
from sleepd.settings import SqlTable
from workers.enrich.account_rows import (
    AMOUNT_COLUMN,
    CONTACT_COLUMN,
    METHOD_COLUMN,
    NAME_COLUMN,
    STATUS_COLUMNS,
    ZIP_COLUMN,
    Row,
    amount_of,
    contact_lines,
    count_each,
    describe_element,
    element_label,
    flat,
    parse_json_text,
    person_name,
    present,
    unique_rows,
)
from workers.enrich.digest import QA, qa_draft

__all__ = ["enrich_account"]

#: an order (or ticket) still open after this many days is flagged
OPEN_TOO_LONG_DAYS = 14
#: related rows listed in the brief before "and N more"
BRIEF_ROWS = 40
#: open rows asked about one by one in the likely questions
QA_OPEN_ROWS = 5
#: states of a row that is still open
OPEN_STATES = frozenset({"pending", "processing", "processed", "open", "new", "on hold", "awaiting", "in progress"})
def enrich_account(path: str, text: str) -> list[Draft]:
    """Draft records for one account document (``path`` is the item key, for titles only)."""
    doc = json.loads(text)
    tables = [SqlTable(name=t["name"], key=t["key"], id=t.get("id")) for t in doc["tables"]]
    rows = {t.name: [Row(t, r) for r in doc["rows"].get(t.name, [])] for t in tables}
    root_rows = rows[tables[0].name]
    if not root_rows:
        return []
    root = root_rows[0]
    # a source declared by a query has one table with several rows per key: the first row is the
    # account, the others are related rows like those of other tables
    related = root_rows[1:] + [r for t in tables[1:] for r in rows[t.name]]
    listed = tables if len(root_rows) > 1 else tables[1:]
    who = person_name(root.values) or str(doc["key"])
    account = f"account {doc['key']}" + (f" ({who})" if who != str(doc["key"]) else "")
    drafts = [_brief(account, root, related, listed, {**rows, tables[0].name: root_rows[1:]}),
              _timeline(account, root, related)]
    flags = _flags(account, root, related)
    if flags is not None:
        drafts.append(flags)
    drafts += [_row_record(account, row) for row in related]
    qa = qa_draft(account, _likely_questions(who, root, related, listed, {**rows, tables[0].name: root_rows[1:]}),
                  {"account": str(root.values.get(root.table.key))})
    return drafts + ([qa] if qa else [])


def _likely_questions(who: str, root: Row, related: list[Row], tables: list[SqlTable],
                      rows: Mapping[str, list[Row]]) -> list[QA]:
    """What support asks about an account, answered from its rows."""
    pairs = []
    contact = contact_lines(root.values)
    if contact:
        pairs.append(QA(f"How do I reach {who}, and where do they live?", "; ".join(contact), root.cite))
    methods = [v for k, v in root.values.items() if METHOD_COLUMN.search(k) and present(v)]
    used = sorted({m for r in related for m in _methods_used(r)})
    if methods or used:
        on_file = flat(methods[0]) if methods else ""
        answer = "; ".join(p for p in (f"on file: {on_file}" if on_file else "",
                                       f"used: {', '.join(used)}" if used else "") if p)
        pairs.append(QA(f"Which payment methods does {who} have?", answer[:400], root.cite))
    for table in tables:
        table_rows = rows[table.name]
        if table_rows:
            noun = table.name.replace("_", " ")
            if any(r.status for r in table_rows):
                listed = "; ".join(f"{r.id} {r.status or 'no state'}" for r in table_rows[:BRIEF_ROWS])
                question = f"What {noun} does {who} have, and where does each stand?"
            else:
                listed = "; ".join(_summary(r)[:120] for r in table_rows[:BRIEF_ROWS])
                question = f"What {noun} does {who} have?"
            pairs.append(QA(question, f"{len(table_rows)} {noun}: {listed}", table_rows[0].cite))
    for row in [r for r in related if (r.status or "").lower() in OPEN_STATES][:QA_OPEN_ROWS]:
        pairs.append(QA(f"What is the status of {row.table.name.rstrip('s')} {row.id}?", _summary(row)[:400],
                        row.cite))
    refunds = _refunds(related)
    if refunds:
        pairs.append(QA(f"Has {who} been refunded?", "; ".join(f"{r.id} {flat(t)}" for r, t in refunds)[:400],
                        refunds[0][0].cite))
    return pairs


# -- the brief --------------------------------------------------------------------------------

def _brief(account: str, root: Row, related: list[Row], tables: list[SqlTable],
           rows: Mapping[str, list[Row]]) -> Draft:
    lines = [f"Account {root.values.get(root.table.key)}: {person_name(root.values) or 'name unknown'}"]
    contact = contact_lines(root.values)
    if contact:
        lines.append("Contact: " + "; ".join(contact))
    other = [f"{k} {flat(v)}" for k, v in root.values.items()
             if k != root.table.key and not CONTACT_COLUMN.search(k) and not NAME_COLUMN.search(k) and present(v)]
    if other:
        lines.append("Details: " + "; ".join(other))
    for table in tables:
        table_rows = rows[table.name]
        if not table_rows:
            continue
        states = count_each(r.status for r in table_rows if r.status)
        head = f"{table.name.replace('_', ' ').capitalize()} ({len(table_rows)}"
        head += f"; {', '.join(f'{n} {s}' for s, n in states.items())})" if states else ")"
        shown = [f"- {_summary(r)}" for r in table_rows[:BRIEF_ROWS]]
        if len(table_rows) > BRIEF_ROWS:
            shown.append(f"- and {len(table_rows) - BRIEF_ROWS} more")
        lines += [head + ":", *shown]
    refunds = _refunds(related)
    if refunds:
        lines.append("Refunds: " + "; ".join(f"{r.id} {flat(t)}" for r, t in refunds))
    return Draft(kind=RecordKind.ACCOUNT, text="\n".join(lines), title=f"{account}: brief",
                 evidence=tuple(r.cite for r in (root, *related)),
                 meta={"account": str(root.values.get(root.table.key)), "table": root.table.name})


def _summary(row: Row) -> str:
    """One line: id, state, the names in its lists (items), its amounts and methods."""
    parts = [row.id + (f" {row.status}" if row.status else "") + ":"]
    skip = {row.table.key, row.table.id, "id", *STATUS_COLUMNS}
    for column, value in row.values.items():
        if column in skip or not present(value) or str(value) == row.id:
            continue
        parsed = parse_json_text(value)
        if isinstance(parsed, list):
            labels = [element_label(x) for x in parsed]
            labels = [x for x in labels if x]
            if labels:
                parts.append(f"{column.replace('_', ' ')}: {', '.join(labels)};")
        elif not isinstance(parsed, dict) and len(str(parsed)) <= 80:
            parts.append(f"{column.replace('_', ' ')} {parsed};")
    return " ".join(parts).rstrip(";")


# -- timeline ---------------------------------------------------------------------------------

def _timeline(account: str, root: Row, related: list[Row]) -> Draft:
    dated = sorted(((r.when(), i, r) for i, r in enumerate(related)), key=lambda x: (x[0] is None, x[0] or 0, x[1]))
    any_time = any(when is not None for when, _, _ in dated)
    lines = [f"Timeline of {account}" + ("" if any_time else " (no timestamps: rows in table order)") + ":"]
    for when, _, row in dated:
        stamp = when.isoformat(sep=" ", timespec="minutes") if when else "-"
        lines.append(f"{stamp} {row.table.name} {row.id}" + (f" {row.status}" if row.status else ""))
        for column, event in _transactions(row):
            lines.append(f"    {column.replace('_', ' ')}: {flat(event)}")
    return Draft(kind=RecordKind.TIMELINE, text="\n".join(lines), title=f"{account}: timeline",
                 evidence=tuple(r.cite for r in (root, *related)),
                 meta={"account": str(root.values.get(root.table.key))})


def _transactions(row: Row) -> list[tuple[str, dict[str, Any]]]:
    """Dicts with an amount inside the row's list columns (payments, refunds)."""
    found = []
    for column, value in row.values.items():
        parsed = parse_json_text(value)
        if isinstance(parsed, list):
            found += [(column, x) for x in parsed if isinstance(x, dict) and any(AMOUNT_COLUMN.search(k) for k in x)
                      and not any(k in x for k in ("name", "title"))]
    return found


# -- flags ------------------------------------------------------------------------------------

def _flags(account: str, root: Row, related: list[Row]) -> Draft | None:
    flags: list[tuple[str, list[Row]]] = []
    now = datetime.now()
    stale = [r for r in related if (r.status or "").lower() in OPEN_STATES and (w := r.when()) is not None
             and (now - w.replace(tzinfo=None)).days >= OPEN_TOO_LONG_DAYS]
    if stale:
        flags.append((f"open for {OPEN_TOO_LONG_DAYS}+ days: " + ", ".join(f"{r.id} {r.status}" for r in stale), stale))
    refunds = _refunds(related)
    if refunds:
        total = sum(amount_of(t) for _, t in refunds)
        flags.append((f"{len(refunds)} refund(s), {total:.2f} in all: " + ", ".join(r.id for r, _ in refunds),
                      unique_rows(r for r, _ in refunds)))
    cancelled = [r for r in related if (r.status or "").lower().startswith(("cancel", "void"))]
    if cancelled:
        flags.append((f"{len(cancelled)} cancelled: " + ", ".join(r.id for r in cancelled), cancelled))
    methods: dict[str, list[Row]] = {}
    for row in related:
        for method in _methods_used(row):
            methods.setdefault(method, []).append(row)
    if len(methods) > 1:
        flags.append((f"paid with {len(methods)} payment methods: " + ", ".join(sorted(methods)),
                      unique_rows(r for rs in methods.values() for r in rs)))
    home = _zip(root.values)
    moved = [r for r in related if home and (z := _zip(r.values)) and z != home]
    if moved:
        flags.append((f"shipped away from the account's zip {home}: " + ", ".join(f"{r.id} to {_zip(r.values)}"
                                                                                 for r in moved), moved))
    if not flags:
        return None
    text = f"Flags for {account}:\n" + "\n".join(f"- {f}" for f, _ in flags)
    cited = unique_rows(r for _, rs in flags for r in rs)
    return Draft(kind=RecordKind.FLAGS, text=text, title=f"{account}: flags", evidence=tuple(r.cite for r in cited),
                 meta={"account": str(root.values.get(root.table.key)), "flags": str(len(flags))})


def _refunds(rows: Iterable[Row]) -> list[tuple[Row, dict[str, Any]]]:
    return [(r, t) for r in rows for _, t in _transactions(r) if any("refund" in str(v).lower() for v in t.values())]


def _methods_used(row: Row) -> set[str]:
    # a payment-method row's own id is a method on file, not one used
    used = {str(v) for k, v in row.values.items() if METHOD_COLUMN.search(k) and present(v) and k != row.table.id}
    for _, tx in _transactions(row):
        used |= {str(v) for k, v in tx.items() if METHOD_COLUMN.search(k) and present(v)}
    return used


def _zip(values: Mapping[str, Any]) -> str | None:
    for column, value in values.items():
        if ZIP_COLUMN.match(column) and present(value):
            return str(value)
        parsed = parse_json_text(value)
        if isinstance(parsed, dict):
            inner = _zip(parsed)
            if inner:
                return inner
    return None


# -- one row ----------------------------------------------------------------------------------

def _row_record(account: str, row: Row) -> Draft:
    lines = [f"{row.table.name} {row.id} of {account}"]
    for column, value in row.values.items():
        if column == row.table.key or not present(value):
            continue
        parsed = parse_json_text(value)
        if not present(parsed):
            continue
        if isinstance(parsed, list):
            lines.append(f"{column}:")
            lines += [f"- {describe_element(x)}" for x in parsed]
        else:
            lines.append(f"{column}: {flat(parsed)}")
    return Draft(kind=RecordKind.ROW, text="\n".join(lines), title=f"{row.table.name} {row.id} ({account})",
                 evidence=(row.cite,), meta={"table": row.table.name, "row": row.id})
