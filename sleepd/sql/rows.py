"""Reading a watched SQL database: an item's rows in canonical form and their hash, through the
read-only engines of :mod:`sleepd.sql.engines`. The sql watcher and the worker both read through
here, so both compute the same hash for the same rows. Nothing here ever writes to the watched database.

An item is one value of the root table's key (an account) with every row, in every watched
table, whose key column holds that value. Its canonical form is ``{table: [row, ...]}`` with
rows as JSON-safe dicts sorted by their JSON text; ``updated_at`` columns are left out, so a
touch that changes nothing else is not a change. A source declared by a query reads its one
table as the subquery ``(<query>) q``. With an access lookup table, the item's rows there are
under :data:`ACCESS_ROWS` too, so an access change is a change of the item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text

from sleepd import defaults
from sleepd.sql.config import SqlSource, SqlTable
from sleepd.sql.engines import reading, shared_engine

__all__ = [
    "ACCESS_ROWS", "ItemRows", "account_document", "dump_mark", "item_access", "item_hash", "iter_items",
    "load_items", "load_mark", "max_marks", "polled_tables", "read_item", "row_id", "shape", "table_name",
    "touched_keys",
]

log = logging.getLogger("sleepd.sql")

#: table name -> the item's rows in that table, canonical and sorted
ItemRows = dict[str, list[dict[str, Any]]]
#: where an item's rows of the access lookup table go (no table name starts with '@')
ACCESS_ROWS = "@access"


# -- SQL text ---------------------------------------------------------------------------------

def table_name(engine: Engine, source: SqlSource, table: SqlTable) -> str:
    """What to read ``table`` from: the quoted table, or for a query source the query as a
    subquery (on lines of its own, so a trailing ``--`` comment cannot swallow the alias)."""
    if source.query is not None and table is source.root:
        return f"(\n{source.query}\n) q"
    quote = engine.dialect.identifier_preparer.quote
    return f"{quote(source.db_schema)}.{quote(table.name)}" if source.db_schema else quote(table.name)


def polled_tables(source: SqlSource) -> list[tuple[str, SqlTable]]:
    """(watermark name, table) of every table read by watermark: the watched tables and the
    access lookup table."""
    found = [(t.name, t) for t in source.tables]
    if source.access_lookup is not None:
        found.append((ACCESS_ROWS, source.access_lookup.as_table()))
    return found


def _col(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


# -- canonical rows -----------------------------------------------------------------------------

def _text(value: str) -> str:
    # lone surrogates (bad decodes) and NUL (PostgreSQL text refuses it) become U+FFFD
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if len(clean) <= defaults.SQL_MAX_CELL_CHARS:
        return clean
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{clean[:defaults.SQL_MAX_CELL_CHARS]} [...cut: {len(value)} chars, sha256 {digest[:16]}]"


def _cell(value: Any) -> Any:
    """A JSON-safe, deterministic form of one value; the hash covers all of a cut value."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if b"\0" not in raw[:8192]:
            try:
                return _text(raw.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        return {"$binary": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cell(v) for v in value]
    if isinstance(value, Decimal | timedelta):
        return str(value)
    return _text(str(value))  # uuid, enums, ranges...


def _row(table: SqlTable, mapping: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): _cell(v) for k, v in mapping.items() if k != table.updated_at}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def item_hash(rows: ItemRows) -> str:
    """sha256 over the canonical JSON of all the item's rows."""
    return hashlib.sha256(_dumps(rows).encode("ascii")).hexdigest()


def item_size(rows: ItemRows) -> int:
    return len(_dumps(rows))


def key_text(value: Any) -> str:
    """The ledger key of a key value: ``42`` and ``"42"`` name the same item."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def row_id(table: SqlTable, row: Mapping[str, Any]) -> str:
    """What names one row in evidence: the table's ``id`` column, else ``<singular>_id``, ``id``,
    the first ``*_id`` column other than the key, or the key itself."""
    singular = table.name[:-1] if table.name.endswith("s") else table.name
    for column in (table.id, f"{singular}_id", "id"):
        if column and row.get(column) is not None:
            return key_text(row[column])
    for column, value in row.items():
        if column.endswith("_id") and column != table.key and value is not None:
            return key_text(value)
    return key_text(row.get(table.key))


# -- reading items ----------------------------------------------------------------------------

def load_items(conn: Connection, source: SqlSource, keys: Sequence[Any]) -> dict[str, ItemRows]:
    """The canonical rows of the items with these key values (native values or their text), by
    ledger key. A key whose root row does not exist is absent from the result."""
    if not keys:
        return {}
    engine = conn.engine
    found: dict[str, ItemRows] = {}
    empty = [t.name for t in source.tables] + ([ACCESS_ROWS] if source.access_lookup is not None else [])
    for table in source.tables:
        query = text(f"SELECT * FROM {table_name(engine, source, table)} WHERE {_col(engine, table.key)} IN :keys")
        result = conn.execute(query.bindparams(bindparam("keys", expanding=True)), {"keys": list(keys)})
        for row in result.mappings():
            value = row.get(table.key)
            if value is None:
                continue
            key = key_text(value)
            if table is source.root:
                found.setdefault(key, {name: [] for name in empty})
            if key in found:
                found[key][table.name].append(_row(table, row))
    lookup = source.access_lookup
    if lookup is not None and found:
        table = lookup.as_table()
        key_col, column = _col(engine, lookup.key), _col(engine, lookup.column)
        query = text(f"SELECT {key_col}, {column} FROM {table_name(engine, source, table)} WHERE {key_col} IN :keys")
        result = conn.execute(query.bindparams(bindparam("keys", expanding=True)), {"keys": list(keys)})
        for key_value, principal in result.all():
            if key_value is not None and key_text(key_value) in found:
                found[key_text(key_value)][ACCESS_ROWS].append({lookup.column: _cell(principal)})
    for rows in found.values():
        for name, table_rows in rows.items():
            rows[name] = sorted(table_rows, key=_dumps)
    return found


def iter_items(engine: Engine, source: SqlSource, batch: int) -> Iterator[tuple[str, ItemRows]]:
    """Every item, in key order, read one key range of ``batch`` items per transaction (memory
    stays bounded by one range however large the tables are)."""
    root, last = source.root, None
    key = _col(engine, root.key)
    distinct = "DISTINCT " if source.query is not None else ""  # a query has many rows per key
    while True:
        after = f" AND {key} > :last" if last is not None else ""
        query = text(f"SELECT {distinct}{key} FROM {table_name(engine, source, root)} WHERE {key} IS NOT NULL{after} "
                     f"ORDER BY {key} LIMIT :n")
        with reading(engine, source, f"reading table {root.name}") as conn:
            values = list(conn.execute(query, {"last": last, "n": batch}).scalars())
            items = load_items(conn, source, values) if values else {}
        yield from sorted(items.items())
        if len(values) < batch:
            return
        last = values[-1]


def read_item(source: SqlSource, key: str, engine: Engine | None = None) -> tuple[ItemRows, str] | None:
    """The current rows of one item and their hash, None if its root row is gone; Unavailable if
    the database cannot be read."""
    engine = engine or shared_engine(source)
    with reading(engine, source, f"reading item {key}") as conn:
        rows = load_items(conn, source, [key]).get(key)
    return None if rows is None else (rows, item_hash(rows))


def account_document(source: SqlSource, key: str, rows: ItemRows) -> str:
    """The text an enricher reads for one item: its tables (root first) and canonical rows, as JSON
    (not the access rows: who may read an item is no part of what it says)."""
    tables = [{"name": t.name, "key": t.key, "id": t.id} for t in source.tables]
    content = {name: table_rows for name, table_rows in rows.items() if name != ACCESS_ROWS}
    return json.dumps({"source": source.name, "key": key, "tables": tables, "rows": content}, ensure_ascii=False)


def item_access(source: SqlSource, rows: ItemRows) -> tuple[str, ...]:
    """The access list of an item: the static list, the values of ``access_column`` in its rows
    (comma- or space-separated), or its rows' values in the access lookup table. An item with no
    such value is readable by admins only."""
    if source.access_lookup is not None:
        column = source.access_lookup.column
        return tuple(sorted({str(r[column]) for r in rows.get(ACCESS_ROWS, []) if r.get(column) is not None}))
    if source.access_column is None:
        return source.access
    table, column = source.access_column.split(".", 1)
    values = {part for row in rows.get(table, []) if row.get(column) is not None
              for part in re.split(r"[,\s]+", str(row[column])) if part}
    return tuple(sorted(values))


# -- watermarks -------------------------------------------------------------------------------

def max_marks(conn: Connection, source: SqlSource) -> dict[str, Any]:
    """The highest ``updated_at`` of each table that has one (an indexed max, not a scan)."""
    engine = conn.engine
    marks: dict[str, Any] = {}
    for name, table in polled_tables(source):
        if table.updated_at:
            query = f"SELECT max({_col(engine, table.updated_at)}) FROM {table_name(engine, source, table)}"
            marks[name] = conn.execute(text(query)).scalar()
    return marks


def shape(conn: Connection, source: SqlSource) -> str:
    """A fingerprint of what the source reads: its declaration and the columns of each table (or
    of the query's result). Stored watermarks are trusted only while it stays the same."""
    engine = conn.engine
    columns = {name: list(conn.execute(text(f"SELECT * FROM {table_name(engine, source, table)} WHERE 1 = 0")).keys())
               for name, table in polled_tables(source)}
    declared = {k: v for k, v in source.as_dict().items() if k not in ("poll_seconds", "full_diff_seconds",
                                                                        "batch_size", "listen", "url")}
    return hashlib.sha256(_dumps({"source": declared, "columns": columns}).encode()).hexdigest()[:16]


def dump_mark(value: Any) -> str | None:
    """A watermark as JSON for the ledger, None for a type that cannot round-trip."""
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps({"value": value})
    if isinstance(value, datetime | date):  # datetime first: it is a date too
        return json.dumps({"datetime" if isinstance(value, datetime) else "date": value.isoformat()})
    if isinstance(value, Decimal):
        return json.dumps({"Decimal": str(value)})
    return None


def load_mark(raw: str) -> Any:
    """The inverse of :func:`dump_mark`; ValueError when it is not one."""
    stored = json.loads(raw)
    if not isinstance(stored, dict) or len(stored) != 1:
        raise ValueError(f"not a stored watermark: {raw!r}")
    kind, value = next(iter(stored.items()))
    if value is None or kind == "value":
        return value
    loaders: dict[str, Any] = {"datetime": datetime.fromisoformat, "date": date.fromisoformat, "Decimal": Decimal}
    if kind not in loaders:
        raise ValueError(f"not a stored watermark: {raw!r}")
    return loaders[kind](value)


def touched_keys(conn: Connection, source: SqlSource, table: SqlTable, mark: Any,
                 limit: int) -> tuple[list[Any], Any, bool]:
    """Key values of rows updated after ``mark`` (an indexed range query), the highest
    ``updated_at`` read, and whether ``limit`` was hit (the rest waits: only a full diff is then
    sure to see rows sharing the last timestamp). ``mark`` None reads every dated row."""
    assert table.updated_at is not None
    engine = conn.engine
    stamp, key = _col(engine, table.updated_at), _col(engine, table.key)
    where = f"{stamp} > :mark" if mark is not None else f"{stamp} IS NOT NULL"
    query = text(f"SELECT {key}, {stamp} FROM {table_name(engine, source, table)} WHERE {where} "
                 f"ORDER BY {stamp} LIMIT :n")
    rows = conn.execute(query, {"mark": mark, "n": limit}).all()
    if not rows:
        return [], mark, False
    return [r[0] for r in rows if r[0] is not None], rows[-1][1], len(rows) >= limit
