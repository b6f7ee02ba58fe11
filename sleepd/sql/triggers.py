"""The watched database's side of an sql source that sleepd only reads: whether its user could
write (a warning in status), and the PostgreSQL triggers an admin may install for the LISTEN/NOTIFY
fast path (sleepd prints them, never runs them)."""

from __future__ import annotations

import logging
import re

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from sleepd.sql.config import SqlSource, SqlTable
from sleepd.sql.rows import polled_tables, table_name

__all__ = ["channel", "trigger_sql", "write_rights"]

log = logging.getLogger("sleepd.sql")


def write_rights(engine: Engine, source: SqlSource) -> str | None:
    """A warning when the watcher's database user could write (it needs only SELECT), else None."""
    backend = engine.dialect.name
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                if conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
                    return "the database user is a superuser; sleepd needs only SELECT on the watched tables"
                writable = [t.name for _, t in polled_tables(source) if not _is_query(source, t) and conn.execute(
                    text("SELECT has_table_privilege(:t, 'INSERT,UPDATE,DELETE,TRUNCATE')"),
                    {"t": table_name(engine, source, t)}).scalar()]
                if writable:
                    return f"the database user may write to {', '.join(writable)}; sleepd needs only SELECT"
            elif backend in ("mysql", "mariadb"):
                grants = " ".join(str(r[0]) for r in conn.execute(text("SHOW GRANTS")).all())
                if re.search(r"\b(ALL PRIVILEGES|INSERT|UPDATE|DELETE)\b", grants):
                    return "the database user has write grants; sleepd needs only SELECT on the watched tables"
    except SQLAlchemyError as exc:
        log.debug("source %s: cannot check rights: %s", source.name, exc)
    return None


def _is_query(source: SqlSource, table: SqlTable) -> bool:
    return source.query is not None and table is source.root


def channel(source: SqlSource) -> str:
    """The LISTEN/NOTIFY channel of a source."""
    return f"sleepd_{re.sub(r'[^A-Za-z0-9_]', '_', source.name)}"[:63]


def trigger_sql(source: SqlSource) -> str:
    """PostgreSQL triggers that NOTIFY the key of every inserted, updated or deleted row, for an
    admin to review and install; sleepd never runs this itself."""
    schema = f'"{source.db_schema}".' if source.db_schema else ""
    fn = f"{schema}sleepd_notify_key"
    lines = [
        f"-- sleepd: LISTEN/NOTIFY fast path for source {source.name}. Review, then run as an admin.",
        f"-- Set listen = true on the source. Channel: {channel(source)}",
        f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$",
        "BEGIN",
        "  IF TG_OP = 'TRUNCATE' THEN",
        "    PERFORM pg_notify(TG_ARGV[0], '*');",
        "    RETURN NULL;",
        "  END IF;",
        "  IF TG_OP IN ('UPDATE', 'DELETE') THEN",
        "    PERFORM pg_notify(TG_ARGV[0], coalesce(to_jsonb(OLD) ->> TG_ARGV[1], ''));",
        "  END IF;",
        "  IF TG_OP IN ('INSERT', 'UPDATE') THEN",
        "    PERFORM pg_notify(TG_ARGV[0], coalesce(to_jsonb(NEW) ->> TG_ARGV[1], ''));",
        "  END IF;",
        "  RETURN NULL;",
        "END $$;",
    ]
    if source.query is not None:
        lines.insert(2, "-- The tables behind the query are not known here: add the same two triggers to each, "
                        "with the column holding the item key.")
    for _, table in polled_tables(source):
        if _is_query(source, table):
            continue  # the tables behind a query are the admin's to add
        target = f'{schema}"{table.name}"'
        trigger = f"sleepd_{channel(source)}_{table.name}"[:63]
        args = f"'{channel(source)}', '{table.key}'"
        lines += [
            f'DROP TRIGGER IF EXISTS "{trigger}" ON {target};',
            f'CREATE TRIGGER "{trigger}" AFTER INSERT OR UPDATE OR DELETE ON {target}',
            f"  FOR EACH ROW EXECUTE FUNCTION {fn}({args});",
            f'DROP TRIGGER IF EXISTS "{trigger}_t" ON {target};',
            f'CREATE TRIGGER "{trigger}_t" AFTER TRUNCATE ON {target}',
            f"  FOR EACH STATEMENT EXECUTE FUNCTION {fn}({args});",
        ]
    return "\n".join(lines) + "\n"
