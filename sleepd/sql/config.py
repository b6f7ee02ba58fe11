"""SQL sources in the config: the tables (or the query) that make one item per key, where its
access list comes from, and every check a bad value fails with a message naming the key.

``[[sources]]`` tables with ``kind = "sql"`` come here from :func:`sleepd.settings.load_settings`;
``sleepd sources add --sql`` builds one with :func:`sql_source`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sleepd import defaults
from sleepd.errors import ConfigError

__all__ = ["SOURCE_NAME", "SqlAccessLookup", "SqlSource", "SqlTable", "check_query", "check_sql_source",
           "installed_driver", "sql_source", "sql_source_from_toml", "str_list", "typed_value"]

#: a source's name: it is part of item keys, meta keys and URLs
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: table and column names are spliced into SQL (quoted): plain identifiers only
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
#: a PostgreSQL URL that names no driver
_BARE_POSTGRES = re.compile(r"^postgres(?:ql)?://")


def installed_driver(url: str) -> str:
    """A bare ``postgresql://`` (or ``postgres://``) URL made to name psycopg2, the driver sleepd
    installs: SQLAlchemy 2.1 reads a bare URL as psycopg 3, which is not a dependency, so the
    URL the README shows would not open. A URL that names its driver is left as it is."""
    return _BARE_POSTGRES.sub("postgresql+psycopg2://", url)


@dataclass(frozen=True)
class SqlTable:
    """One watched table: ``key`` is the column holding the item key (the root table's own key,
    or in a related table the column that joins to it)."""

    name: str
    key: str
    #: a column set on every insert and update; lets polls find changes with an indexed range query
    updated_at: str | None = None
    #: the column naming one row in evidence (``orders:#W2378156``); guessed when not given
    id: str | None = None


@dataclass(frozen=True)
class SqlAccessLookup:
    """Access from a lookup table: an item's readers are the ``column`` values of the rows of
    ``table`` whose ``key`` equals the item key (one row per principal or group)."""

    table: str
    key: str
    column: str
    #: lets polls see access changes with an indexed range query (revocations, being deletes,
    #: wait for the full diff or a notification)
    updated_at: str | None = None

    def as_table(self) -> SqlTable:
        return SqlTable(name=self.table, key=self.key, updated_at=self.updated_at)


@dataclass(frozen=True)
class SqlSource:
    """Watched tables of a database; one item per value of the root table's key (an account). A
    source declared by ``query`` has one table, named after the source, standing for the query's
    result (``key``, ``updated_at`` and ``id`` are its columns)."""

    name: str
    #: SQLAlchemy URL: sqlite:///path, postgresql+psycopg2://..., mysql+pymysql://...
    url: str
    #: the root table first, then the related tables
    tables: tuple[SqlTable, ...]
    #: a database schema (PostgreSQL) or database (MySQL/MariaDB) the tables live in
    db_schema: str | None = None
    profile: str = "accounts"
    #: static principals and groups; used when ``access_column`` is not set
    access: tuple[str, ...] = ("*",)
    #: ``table.column`` whose values (in the item's rows; comma-separated allowed) are the access list
    access_column: str | None = None
    poll_seconds: float = defaults.SQL_POLL_SECONDS
    full_diff_seconds: float = defaults.SQL_FULL_DIFF_SECONDS
    #: items hashed per key range in a full diff: bounds the watcher's memory
    batch_size: int = defaults.SQL_BATCH_SIZE
    #: LISTEN for the notifications of ``sleepd sql-triggers`` (PostgreSQL), on top of polling
    listen: bool = False
    #: a single SELECT whose result rows, grouped by the key column, are the items
    query: str | None = None
    access_lookup: SqlAccessLookup | None = None
    #: the environment variable holding the password, so the URL stored in the ledger has none
    password_env: str | None = None
    kind: str = "sql"

    @property
    def root(self) -> SqlTable:
        return self.tables[0]

    def table(self, name: str) -> SqlTable | None:
        return next((t for t in self.tables if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "url": self.url,
            "tables": [{"name": t.name, "key": t.key, "updated_at": t.updated_at, "id": t.id} for t in self.tables],
            "db_schema": self.db_schema, "profile": self.profile, "access": list(self.access),
            "access_column": self.access_column, "poll_seconds": self.poll_seconds,
            "full_diff_seconds": self.full_diff_seconds, "batch_size": self.batch_size, "listen": self.listen,
            "query": self.query, "password_env": self.password_env,
            "access_lookup": None if self.access_lookup is None else {
                "table": self.access_lookup.table, "key": self.access_lookup.key,
                "column": self.access_lookup.column, "updated_at": self.access_lookup.updated_at},
        }

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> SqlSource:
        """The inverse of :meth:`as_dict` (the ledger stores sources as JSON)."""
        tables = tuple(SqlTable(name=t["name"], key=t["key"], updated_at=t.get("updated_at"), id=t.get("id"))
                       for t in cfg["tables"])
        return cls(name=cfg["name"], url=cfg["url"], tables=tables, db_schema=cfg.get("db_schema"),
                   profile=cfg.get("profile", "accounts"), access=tuple(cfg.get("access", ("*",))),
                   access_column=cfg.get("access_column"),
                   poll_seconds=float(cfg.get("poll_seconds", defaults.SQL_POLL_SECONDS)),
                   full_diff_seconds=float(cfg.get("full_diff_seconds", defaults.SQL_FULL_DIFF_SECONDS)),
                   batch_size=int(cfg.get("batch_size", defaults.SQL_BATCH_SIZE)),
                   listen=bool(cfg.get("listen", False)), query=cfg.get("query"),
                   access_lookup=SqlAccessLookup(**cfg["access_lookup"]) if cfg.get("access_lookup") else None,
                   password_env=cfg.get("password_env"))

    @property
    def where(self) -> str:
        """The URL without its password, for status and logs."""
        return _redact(self.url)

    def connect_url(self) -> str:
        """The URL to connect with: the password taken from ``password_env`` when that is set
        (read when connecting, so a rotated secret needs only a restart). KeyError names the
        variable when it is not set."""
        if self.password_env is None:
            return self.url
        from sqlalchemy.engine import make_url

        password = os.environ.get(self.password_env)
        if password is None:
            raise KeyError(self.password_env)
        return make_url(self.url).set(password=password).render_as_string(hide_password=False)


def typed_value(key: str, raw: Any, kind: type) -> Any:
    """Coerce one value, or stop with a message naming the key and the value."""
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"Config '{key}' has value {raw!r}. Not a valid bool.")
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"Config '{key}' has value {raw!r}. Not a valid {kind.__name__}.") from None
    if kind in (int, float) and value < 0:
        raise ConfigError(f"Config '{key}' has value {raw!r}. Must not be negative.")
    return value


def str_list(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"Config '{key}' has value {raw!r}. Must be a list of strings.")
    return tuple(raw)


_SQL_KEYS = {"name", "kind", "url", "key", "tables", "updated_at", "ids", "schema", "profile", "access",
             "access_column", "poll_seconds", "full_diff_seconds", "batch_size", "listen", "query", "id",
             "access_lookup", "password_env"}
#: what a query source may be: one SELECT (or WITH ... SELECT), at most a trailing ';'
_SELECT = re.compile(r"^\s*(select|with)\b", re.I)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _table_column(key: str, raw: Any) -> tuple[str, str]:
    """``"orders.user_id"`` -> ("orders", "user_id"), or stop naming the key."""
    parts = raw.split(".") if isinstance(raw, str) else []
    if len(parts) != 2 or not all(_IDENT.match(p) for p in parts):
        raise ConfigError(f"Config '{key}' has value {raw!r}. Use 'table.column' (plain identifiers).")
    return parts[0], parts[1]


def _name_map(key: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"Config '{key}' has value {raw!r}. Use a table of table = \"column\".")
    return dict(raw)


def _sql_tables(where: str, raw: Mapping[str, Any]) -> tuple[SqlTable, ...]:
    if "key" not in raw:
        raise ConfigError(f"Config '{where}.key' is missing: name the root table and its key, e.g. 'users.user_id'.")
    updated = _name_map(f"{where}.updated_at", raw.get("updated_at", {}))
    ids = _name_map(f"{where}.ids", raw.get("ids", {}))
    specs = [_table_column(f"{where}.key", raw["key"])]
    related = raw.get("tables", [])
    if not isinstance(related, list):
        raise ConfigError(f"Config '{where}.tables' has value {related!r}. Use a list of 'table.column'.")
    for i, entry in enumerate(related):
        if isinstance(entry, dict):  # {name = "orders", key = "user_id", updated_at = "...", id = "..."}
            name, column = _table_column(f"{where}.tables[{i}]", f"{entry.get('name')}.{entry.get('key')}")
            if entry.get("updated_at"):
                updated.setdefault(name, str(entry["updated_at"]))
            if entry.get("id"):
                ids.setdefault(name, str(entry["id"]))
            specs.append((name, column))
        else:
            specs.append(_table_column(f"{where}.tables[{i}]", entry))
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"Config '{where}.tables' names a table twice: {names}.")
    for label, mapping in (("updated_at", updated), ("ids", ids)):
        for table, column in mapping.items():
            if table not in names:
                raise ConfigError(f"Config '{where}.{label}.{table}' names a table that is not watched ({names}).")
            if not _IDENT.match(column):
                raise ConfigError(f"Config '{where}.{label}.{table}' has value {column!r}. Not a plain identifier.")
    return tuple(SqlTable(name=n, key=c, updated_at=updated.get(n), id=ids.get(n)) for n, c in specs)


def sql_source_from_toml(where: str, raw: Mapping[str, Any]) -> SqlSource:
    unknown = set(raw) - _SQL_KEYS
    if unknown:
        raise ConfigError(f"Config '{where}' has unknown keys {sorted(unknown)} for kind 'sql'.")
    if not raw.get("url"):
        raise ConfigError(f"Config '{where}.url' is missing: a SQLAlchemy database URL.")
    if "query" in raw:
        source = _query_source(where, raw)
    else:
        tables = _sql_tables(where, raw)
        source = SqlSource(name=str(raw.get("name") or tables[0].name), url=str(raw["url"]), tables=tables)
    if "access_lookup" in raw:
        source = replace(source, access_lookup=_access_lookup(f"{where}.access_lookup", raw["access_lookup"]))
    if raw.get("password_env") is not None:
        source = replace(source, password_env=typed_value(f"{where}.password_env", raw["password_env"], str))
    if raw.get("schema"):
        source = replace(source, db_schema=str(raw["schema"]))
    if "access" in raw:
        source = replace(source, access=str_list(f"{where}.access", raw["access"]))
    for key, kind in (("profile", str), ("access_column", str), ("poll_seconds", float),
                      ("full_diff_seconds", float), ("batch_size", int), ("listen", bool)):
        if key in raw:
            source = replace(source, **{key: typed_value(f"{where}.{key}", raw[key], kind)})
    return check_sql_source(source, where)


def _query_source(where: str, raw: Mapping[str, Any]) -> SqlSource:
    """A source declared by a query: ``key`` (and ``updated_at``, ``id``) name result columns."""
    for other in ("tables", "ids"):
        if other in raw:
            raise ConfigError(f"Config '{where}.{other}' cannot go with '{where}.query': the query is the only table.")
    if not raw.get("name"):
        raise ConfigError(f"Config '{where}.name' is missing: a source declared by a query needs a name.")
    columns: dict[str, str | None] = {}
    for key in ("key", "updated_at", "id"):
        value = raw.get(key)
        if value is None and key != "key":
            columns[key] = None
            continue
        if not isinstance(value, str) or not _IDENT.match(value):
            raise ConfigError(f"Config '{where}.{key}' has value {value!r}. With 'query' name a result column "
                              "(a plain identifier).")
        columns[key] = value
    table = SqlTable(name=str(raw["name"]), key=str(columns["key"]), updated_at=columns["updated_at"],
                     id=columns["id"])
    return SqlSource(name=str(raw["name"]), url=str(raw["url"]), tables=(table,),
                     query=typed_value(f"{where}.query", raw["query"], str))


def _access_lookup(where: str, raw: Any) -> SqlAccessLookup:
    fields = ("table", "key", "column", "updated_at")
    if not isinstance(raw, dict) or set(raw) - set(fields) or not all(raw.get(f) for f in fields[:3]):
        raise ConfigError(f"Config '{where}' has value {raw!r}. Use {{table = \"acl\", key = \"user_id\", "
                          "column = \"principal\"}} (updated_at optional).")
    for field_name in fields:
        value = raw.get(field_name)
        if value is not None and (not isinstance(value, str) or not _IDENT.match(value)):
            raise ConfigError(f"Config '{where}.{field_name}' has value {value!r}. Not a plain identifier.")
    return SqlAccessLookup(**raw)


def check_query(query: str, where: str = "source") -> str:
    """The query without a trailing ';', or ConfigError unless it is one SELECT statement. A ';'
    anywhere else is refused, even in a literal: a second statement must never ride along."""
    body = query.strip()
    body = body[:-1].rstrip() if body.endswith(";") else body
    if not _SELECT.match(body) or ";" in body:
        raise ConfigError(f"Config '{where}.query' has value {query!r}. Use a single SELECT statement "
                          "(no ';' inside).")
    return body


def _check_sql_extras(source: SqlSource, where: str) -> SqlSource:
    """The query, access lookup and password_env checks of :func:`check_sql_source`."""
    from sqlalchemy.engine import make_url

    if source.query is not None:
        source = replace(source, query=check_query(source.query, where))
    if source.access_column is not None and source.access_lookup is not None:
        raise ConfigError(f"Config '{where}.access_column' and '{where}.access_lookup' are both set: choose one.")
    if source.password_env is not None:
        if not _ENV_NAME.match(source.password_env):
            raise ConfigError(f"Config '{where}.password_env' has value {source.password_env!r}. "
                              "Name an environment variable.")
        if make_url(source.url).password is not None:
            raise ConfigError(f"Config '{where}.url' has value {_redact(source.url)!r} with a password, and "
                              f"'{where}.password_env' is set: leave the password out of the URL.")
    return source


def check_sql_source(source: SqlSource, where: str = "source") -> SqlSource:
    """Validate what the TOML parser and the CLI both build; stop naming the key and the value."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not SOURCE_NAME.match(source.name):
        raise ConfigError(f"Config '{where}.name' has value {source.name!r}. Use letters, digits, '_.-'.")
    try:
        backend = make_url(source.url).get_backend_name()
    except ArgumentError:
        raise ConfigError(f"Config '{where}.url' has value {_redact(source.url)!r}. Not a database URL.") from None
    if backend not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ConfigError(f"Config '{where}.url' has value {_redact(source.url)!r}. "
                          "Supported: sqlite, postgresql, mysql/mariadb.")
    if source.profile not in defaults.SQL_PROFILES:
        raise ConfigError(f"Config '{where}.profile' has value {source.profile!r}. One of {defaults.SQL_PROFILES}.")
    if not source.access:
        raise ConfigError(f"Config '{where}.access' is empty: nobody could read this source.")
    if source.db_schema is not None and not _IDENT.match(source.db_schema):
        raise ConfigError(f"Config '{where}.schema' has value {source.db_schema!r}. Not a plain identifier.")
    source = _check_sql_extras(source, where)
    if source.access_column is not None:
        table, _column = _table_column(f"{where}.access_column", source.access_column)
        if source.table(table) is None:
            raise ConfigError(f"Config '{where}.access_column' has value {source.access_column!r}: "
                              f"table {table!r} is not watched.")
    if source.poll_seconds <= 0 or source.full_diff_seconds <= 0:
        raise ConfigError(f"Config '{where}.poll_seconds' / 'full_diff_seconds' have values "
                          f"{source.poll_seconds!r} / {source.full_diff_seconds!r}. Must be positive.")
    if source.batch_size < 1:
        raise ConfigError(f"Config '{where}.batch_size' has value {source.batch_size!r}. Must be at least 1.")
    return source


def sql_source(url: str, name: str, key: str, tables: tuple[str, ...] = (), updated_at: tuple[str, ...] = (),
               **options: Any) -> SqlSource:
    """An sql source from the command line: ``key`` and ``tables`` as 'table.column', ``updated_at``
    as 'table.column' each; ``options`` are other :class:`SqlSource` fields."""
    raw: dict[str, Any] = {"name": name, "url": url, "key": key}
    if options.get("query") is not None:  # the key and updated_at are result columns
        if len(updated_at) > 1:
            raise ConfigError(f"Config '--updated-at' has values {list(updated_at)!r}. With --query give one column.")
        if updated_at:
            raw["updated_at"] = updated_at[0]
    else:
        raw["tables"] = list(tables)
        raw["updated_at"] = dict(_table_column("--updated-at", u) for u in updated_at)
    for option, value in options.items():
        if value is not None:
            raw["schema" if option == "db_schema" else option] = value
    return sql_source_from_toml("source", raw)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"
