"""An account's rows as the accounts enricher reads them: a row with its id, state and time, and
values flattened to text. Columns are recognised by common names (``*name*``, ``email``, ``zip``,
``status``, ``*_at``, ``amount``, ``payment_method*``...), never by a particular schema. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sleepd.records import Evidence
from sleepd.settings import SqlTable
from sleepd.sql.rows import row_id

__all__ = ["AMOUNT_COLUMN", "CONTACT_COLUMN", "METHOD_COLUMN", "NAME_COLUMN", "STATUS_COLUMNS", "TIME_COLUMN",
           "ZIP_COLUMN", "Row", "amount_of", "contact_lines", "count_each", "describe_element", "element_label",
           "flat", "parse_json_text", "parse_time", "person_name", "present", "unique_rows"]

CONTACT_COLUMN = re.compile(r"email|phone|mobile|address|street|city|state|province|zip|postal|country", re.I)
NAME_COLUMN = re.compile(r"(^|_)(first_?name|last_?name|full_?name|name)$", re.I)
STATUS_COLUMNS = ("status", "state")
TIME_COLUMN = re.compile(r"(_at|_on|_date|_time|^date|^time|timestamp)$", re.I)
AMOUNT_COLUMN = re.compile(r"amount|total|price|balance", re.I)
METHOD_COLUMN = re.compile(r"payment_?method", re.I)
ZIP_COLUMN = re.compile(r"^(zip|zip_?code|postal_?code|postcode)$", re.I)
_LABEL = ("name", "title", "label", "description", "transaction_type", "type")


@dataclass
class Row:
    """One row of an account's tables, with the table it came from."""

    table: SqlTable
    values: dict[str, Any]

    @property
    def id(self) -> str:
        return row_id(self.table, self.values)

    @property
    def cite(self) -> Evidence:
        return Evidence(f"{self.table.name}:{self.id}", 1, 1)

    @property
    def status(self) -> str | None:
        for column in STATUS_COLUMNS:
            value = self.values.get(column)
            if isinstance(value, str) and value:
                return value
        return None

    def when(self) -> datetime | None:
        for column, value in self.values.items():
            if TIME_COLUMN.search(column) and isinstance(value, str):
                stamp = parse_time(value)
                if stamp is not None:
                    return stamp
        return None


# -- values -----------------------------------------------------------------------------------

def parse_json_text(value: Any) -> Any:
    """JSON text columns (a list of items, an address) as structures; anything else as is."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def flat(value: Any) -> str:
    """A dict or list on one line: scalars joined, nested values flattened."""
    value = parse_json_text(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {flat(v)}" if not _is_plain(k) else flat(v) for k, v in value.items()
                         if present(v))
    if isinstance(value, list):
        return ", ".join(flat(v) for v in value if present(v))
    return str(value)


def _is_plain(key: str) -> bool:
    """Keys whose value reads well alone (an address line, a city)."""
    return bool(re.match(r"^(address\d?|street|city|state|province|country|zip|postal_?code|name)$", key, re.I))


def element_label(value: Any) -> str:
    """A short name for one element of a list column (an item's name, a payment's type+amount)."""
    if not isinstance(value, dict):
        return "" if isinstance(value, list) else str(value)
    for key in _LABEL:
        if present(value.get(key)) and not isinstance(value[key], dict | list):
            head = str(value[key])
            amount = next((v for k, v in value.items() if AMOUNT_COLUMN.search(k) and isinstance(v, int | float)), None)
            return f"{head} {amount}" if amount is not None and key not in ("name", "title") else head
    scalars = [str(v) for v in value.values() if isinstance(v, str | int | float) and not isinstance(v, bool)]
    return " ".join(scalars[:3])


def describe_element(value: Any) -> str:
    """One element of a list column in full: its label first, then every other field."""
    if not isinstance(value, dict):
        return flat(value)
    head = next((str(value[k]) for k in ("name", "title") if present(value.get(k))), "")
    rest = [f"{k} {flat(v)}" for k, v in value.items() if k not in ("name", "title") and present(v)]
    return (head + (" (" + "; ".join(rest) + ")" if rest else "")) if head else "; ".join(rest)


def contact_lines(values: Mapping[str, Any]) -> list[str]:
    """"email x", "zip y": the account's contact columns that hold something."""
    return [f"{k} {flat(v)}" for k, v in values.items() if CONTACT_COLUMN.search(k) and present(v)]


def person_name(values: Mapping[str, Any]) -> str:
    parts = []
    for column, value in values.items():
        if NAME_COLUMN.search(column) and present(value):
            parsed = parse_json_text(value)
            parts.append(" ".join(str(v) for v in parsed.values()) if isinstance(parsed, dict) else str(parsed))
    return " ".join(parts)


def amount_of(tx: Mapping[str, Any]) -> float:
    for key, value in tx.items():
        if AMOUNT_COLUMN.search(key) and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return 0.0


def parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def count_each(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def unique_rows(rows: Iterable[Row]) -> list[Row]:
    seen: dict[str, Row] = {}
    for row in rows:
        seen.setdefault(f"{row.table.name}:{row.id}", row)
    return list(seen.values())
