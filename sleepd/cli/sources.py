"""The declared sources: ``sources add`` a folder or a database, ``sources list`` them, change who
may read one (``sources access``), and ``sql-triggers`` for a PostgreSQL source's LISTEN/NOTIFY fast
path. ``add`` and ``list`` read and write the ledger directly (the daemon picks new sources up at its
next start); ``access`` goes through the running daemon, or works on the home when none runs."""

from __future__ import annotations

from urllib.parse import quote

import click

from sleepd import defaults
from sleepd.cli.common import LOCAL_ADMIN, call, env_option, json_option, load_settings, print_json
from sleepd.settings import FileSource, source_from_path

__all__ = ["sources", "sql_triggers"]


@click.group()
def sources() -> None:
    """Declared sources."""


@sources.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--name", help="Source name (default: the folder name, or the root table).")
@click.option("--profile", type=click.Choice(defaults.PROFILES), help="Enrichment profile "
              "(default: auto for a folder, accounts for --sql).")
@click.option("--access", multiple=True, help="Principals or groups that may read it (default: any token).")
@env_option("--sql", "sql_url", metavar="URL", envvar="SLEEPD_SQL_URL",
            help="Watch a database instead of a folder (SQLAlchemy URL: sqlite:///x.db, postgresql://..., "
                 "mysql+pymysql://...).")
@click.option("--key", metavar="TABLE.COLUMN", help="With --sql: the root table and the key naming one item "
              "(with --query: the result column).")
@click.option("--query", help="With --sql: a single SELECT whose rows, grouped by --key, are the items "
              "(instead of --table).")
@click.option("--table", "tables", multiple=True, metavar="TABLE.COLUMN",
              help="With --sql: a related table and its column holding the key (repeat).")
@click.option("--updated-at", "updated_at", multiple=True, metavar="TABLE.COLUMN",
              help="With --sql: a table's updated_at column, polled by watermark (repeat).")
@click.option("--access-column", metavar="TABLE.COLUMN", help="With --sql: the column holding each item's readers.")
@click.option("--access-lookup", metavar="TABLE.KEY.COLUMN",
              help="With --sql: a table with one row per reader: KEY holds the item key, COLUMN the principal.")
@env_option("--password-env", metavar="VAR", envvar="SLEEPD_SQL_PASSWORD_ENV",
            help="With --sql: the environment variable holding the database password (leave it out of the URL "
                 "so no secret is stored).")
@click.option("--schema", "db_schema", help="With --sql: the schema (PostgreSQL) or database (MySQL) of the tables.")
@click.option("--poll-seconds", type=float, help="With --sql: seconds between watermark polls.")
@click.option("--full-diff-seconds", type=float, help="With --sql: seconds between full diffs by row hash.")
def sources_add(path: str | None, name: str | None, profile: str | None, access: tuple[str, ...],
                sql_url: str | None, key: str | None, query: str | None, tables: tuple[str, ...],
                updated_at: tuple[str, ...], access_column: str | None, access_lookup: str | None,
                password_env: str | None, db_schema: str | None, poll_seconds: float | None,
                full_diff_seconds: float | None) -> None:
    """Add a folder (PATH) or a database (--sql) to watch; the daemon picks it up at its next start.

    Example: sleepd sources add --sql postgresql://reader@db/shop --key users.user_id
    --table orders.user_id --updated-at users.updated_at --updated-at orders.updated_at
    --password-env SHOP_DB_PASSWORD"""
    from sleepd.ledger import Ledger
    from sleepd.settings import Source, sql_source

    source: Source
    if sql_url:
        if path or not key:
            raise click.UsageError("with --sql give --key TABLE.COLUMN (and no PATH)")
        if query and (tables or not name):
            raise click.UsageError("with --query give --name and no --table")
        lookup = dict(zip(("table", "key", "column"), access_lookup.split(".", 2), strict=False)) \
            if access_lookup else None
        source = sql_source(sql_url, name or key.split(".")[0], key, tables, updated_at, query=query,
                            access=list(access) or None, access_column=access_column, access_lookup=lookup,
                            password_env=password_env, db_schema=db_schema, profile=profile,
                            poll_seconds=poll_seconds, full_diff_seconds=full_diff_seconds)
        where = source.where
    else:
        if not path:
            raise click.UsageError("give a folder PATH, or --sql URL --key TABLE.COLUMN")
        source = source_from_path(path, name=name, profile=profile or "auto", access=access or ("*",))
        where = str(source.path)
    ledger = Ledger(load_settings().database_url)
    ledger.save_source(source, actor="cli")
    ledger.close()
    click.echo(f"added source {source.name}: {where}")


@sources.command("list")
def sources_list() -> None:
    """Every declared source: name, kind, where, profile, access (and its path globs' lists)."""
    from sleepd.ledger import Ledger

    ledger = Ledger(load_settings().database_url)
    for source in ledger.sources():
        where = source.path if isinstance(source, FileSource) else source.where
        globs = ";".join(f"{glob}={','.join(r)}" for glob, r in getattr(source, "access_paths", ()))
        click.echo(f"{source.name}\t{source.kind}\t{where}\tprofile={source.profile}\t"
                   f"access={','.join(source.access)}" + (f"\tpaths={globs}" if globs else ""))
    ledger.close()


@sources.command("access")
@click.argument("name")
@click.argument("readers", nargs=-1, required=True, metavar="READER...")
@click.option("--path", "paths", multiple=True, metavar="GLOB=READER[,READER]",
              help="Readers of the items whose path matches GLOB (gitignore syntax, e.g. 'private/**=legal'); "
                   "repeat, the first matching glob wins. Replaces the source's globs; without --path they stay.")
@click.option("--no-paths", is_flag=True, help="Drop the source's path globs: every item gets READER...")
@json_option
def sources_access(name: str, readers: tuple[str, ...], paths: tuple[str, ...], no_paths: bool,
                   as_json: bool) -> None:
    """Let READER... (principals or groups; '*': any token) read source NAME, from the next query on.

    Records keep their version: nothing is enriched again. Aggregates are rebuilt for the new groups.
    Example: sleepd sources access contracts legal --path 'hr/**=hr,legal'"""
    if paths and no_paths:
        raise click.UsageError("give --path or --no-paths, not both")
    rules: dict[str, list[str]] | None = {} if no_paths else None
    for rule in paths:
        glob, sep, names = rule.rpartition("=")
        if not sep or not glob.strip() or not names.strip():
            raise click.BadParameter(f"{rule!r} is not GLOB=READER[,READER]", param_hint="--path")
        if rules is None:
            rules = {}
        rules[glob.strip()] = [n.strip() for n in names.split(",") if n.strip()]
    body = {"access": list(readers), "paths": rules}
    report = call(load_settings(), "POST", f"/v1/sources/{quote(name, safe='')}/access", body,
                  lambda svc: svc.change_access(LOCAL_ADMIN, name, list(readers), rules))
    if as_json:
        print_json(report)
        return
    globs = "".join(f", {glob}={','.join(r)}" for glob, r in report["paths"].items())
    click.echo(f"source {report['source']}: access={','.join(report['access'])}{globs}; {report['records']} records "
               f"of {report['items']} items now carry their new list (none enriched again); "
               f"{report['aggregates_retracted']} aggregates retracted until rebuilt")


@click.command("sql-triggers")
@click.argument("source_name", metavar="SOURCE")
def sql_triggers(source_name: str) -> None:
    """Print PostgreSQL trigger SQL for SOURCE's LISTEN/NOTIFY fast path, for an admin to review and
    install (sleepd never alters a watched database). Then set listen = true on the source."""
    from sleepd.ledger import Ledger
    from sleepd.settings import SqlSource
    from sleepd.sql.triggers import trigger_sql

    settings = load_settings()
    ledger = Ledger(settings.database_url)
    source = next((s for s in settings.sources if s.name == source_name), None) or ledger.get_source(source_name)
    ledger.close()
    if not isinstance(source, SqlSource):
        raise click.BadParameter(f"no sql source named {source_name!r}", param_hint="SOURCE")
    if not source.url.startswith("postgresql"):
        raise click.BadParameter(f"source {source_name!r} is not PostgreSQL: LISTEN/NOTIFY needs PostgreSQL",
                                 param_hint="SOURCE")
    click.echo(trigger_sql(source), nl=False)
