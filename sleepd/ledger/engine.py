"""The ledger's engine: one writer engine and one snapshot reader over the same database, the
session helpers, and what every concern shares (meta keys, the audit log, purged globs).

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for writers (so two processes never deadlock
upgrading a lock) and a separate reader engine whose deferred transactions see one consistent
snapshot.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, false, func
from sqlmodel import Session, SQLModel, col, select

from sleepd.schema import (
    OPEN_CHANGES,
    AuditRow,
    IndexEventRow,
    ItemRow,
    MetaRow,
    upgrade,
)

__all__ = ["OPEN", "PURGED_META", "LedgerBase", "count_index_lag", "delete_where", "is_purged", "matching_items",
           "purged_globs", "write_meta"]

#: the states of a change still to be done (handed out or not)
OPEN = OPEN_CHANGES


#: meta key of the globs purged by path: {source name or "*": [glob, ...]}
PURGED_META = "purged_paths"


def _make_engine(url: str, immediate: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class LedgerBase:
    """The connection to the ledger's database; each concern's mixin adds its operations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url, immediate=True)
        # a read sees one snapshot: SQLite's deferred transactions do; PostgreSQL's READ COMMITTED
        # takes a new one per statement, so a read of records then items could pair two versions
        self.reader = (_make_engine(url, immediate=False) if url.startswith("sqlite")
                       else self.engine.execution_options(isolation_level="REPEATABLE READ"))
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()

    @contextmanager
    def write(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.reader, expire_on_commit=False) as session, session.begin():
            yield session

    # -- meta and audit ---------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.read() as s:
            row = s.get(MetaRow, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as s:
            write_meta(s, key, value)

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        with self.write() as s:
            s.add(AuditRow(at=time.time(), actor=actor, action=action, detail=json.dumps(detail)))


def count_index_lag(s: Session) -> int:
    """Index events not applied yet."""
    return int(s.exec(select(func.count()).select_from(IndexEventRow)
                      .where(col(IndexEventRow.applied) == false())).one())


def purged_globs(s: Session) -> dict[str, list[str]]:
    row = s.get(MetaRow, PURGED_META)
    return dict(json.loads(row.value)) if row else {}


def is_purged(s: Session, source: str, key: str) -> bool:
    excluded = purged_globs(s)
    return any(fnmatch.fnmatchcase(key, g) for g in [*excluded.get(source, []), *excluded.get("*", [])])


def write_meta(s: Session, key: str, value: str) -> None:
    row = s.get(MetaRow, key)
    if row is None:
        s.add(MetaRow(key=key, value=value))
    else:
        row.value = value


def matching_items(s: Session, source: str | None, pattern: str | None) -> list[ItemRow]:
    query = select(ItemRow)
    if source is not None:
        query = query.where(ItemRow.source == source)
    items = list(s.exec(query).all())
    if pattern is not None:
        items = [i for i in items if fnmatch.fnmatchcase(i.key, pattern)]
    return items


def delete_where(s: Session, table: type[SQLModel], condition: Any) -> int:
    result = s.exec(delete(table).where(condition))  # type: ignore[call-overload]
    return int(result.rowcount or 0)
