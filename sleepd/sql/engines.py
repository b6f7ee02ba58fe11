"""Connections to a watched SQL database: read-only engines and one snapshot transaction per read.

SQLite is opened with ``mode=ro``, PostgreSQL sessions are ``default_transaction_read_only``,
MySQL sessions ``READ ONLY``; every read is one REPEATABLE READ transaction, rolled back at the
end, and a database error becomes :class:`~sleepd.errors.Unavailable` naming the source. The rows
read through them are :mod:`sleepd.sql.rows`'s. Nothing here ever writes to the watched database.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from sleepd.errors import Unavailable
from sleepd.sql.config import SqlSource, installed_driver

__all__ = ["CONNECT_TIMEOUT_S", "STATEMENT_TIMEOUT_S", "open_engine", "reading", "shared_engine"]

#: a statement slower than this is cancelled (PostgreSQL) or its read times out (MySQL)
STATEMENT_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10


def open_engine(source: SqlSource) -> Engine:
    """A read-only engine for the source's database: SQLite opened with ``mode=ro``, PostgreSQL
    sessions with ``default_transaction_read_only``, MySQL sessions ``READ ONLY``; each read is
    one REPEATABLE READ (snapshot) transaction so an item's rows come from one moment."""
    try:
        raw_url = source.connect_url()
    except KeyError:
        raise Unavailable(f"source {source.name}: environment variable {source.password_env} "
                          "(password_env) is not set") from None
    raw_url = installed_driver(raw_url)
    url = make_url(raw_url)
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(raw_url)
        if backend == "postgresql":
            options = f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_S}s"
            return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2,
                                 isolation_level="REPEATABLE READ",
                                 connect_args={"options": options, "connect_timeout": CONNECT_TIMEOUT_S})
        args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": STATEMENT_TIMEOUT_S}
        if "charset" not in url.query:
            args["charset"] = "utf8mb4"
        engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2,
                               isolation_level="REPEATABLE READ", connect_args=args)
    except (SQLAlchemyError, ImportError) as exc:
        raise Unavailable(f"source {source.name}: cannot open {source.where}: {exc}") from None

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    return engine


def _sqlite_engine(raw_url: str) -> Engine:
    url = make_url(raw_url)
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        url = url.set(database=f"file:{database}", query={**url.query, "mode": "ro", "uri": "true"})
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": STATEMENT_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves: one snapshot per read
        # a TEXT cell that is not UTF-8 must not stop the whole scan
        dbapi_conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
        dbapi_conn.execute("PRAGMA query_only=1")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(source: SqlSource) -> Engine:
    """One engine per URL per process, for the worker (the watcher owns its own)."""
    with _engines_lock:
        if source.url not in _engines:
            _engines[source.url] = open_engine(source)
        return _engines[source.url]


@contextmanager
def reading(engine: Engine, source: SqlSource, what: str) -> Iterator[Connection]:
    """One read transaction, rolled back at the end; a database error becomes Unavailable
    naming the source and ``what`` was being read."""
    try:
        with engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()
    except DBAPIError as exc:
        raise Unavailable(f"source {source.name}: {what}: {_describe(exc)}") from None
    except SQLAlchemyError as exc:
        raise Unavailable(f"source {source.name}: {what}: {exc}") from None


def _describe(exc: DBAPIError) -> str:
    detail = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    if exc.connection_invalidated or _CONNECT.search(detail):
        return f"database unreachable ({detail})"
    return detail


_CONNECT = re.compile(r"could not connect|connection refused|can't connect|unable to open|server closed|"
                      r"timeout expired|lost connection", re.I)
