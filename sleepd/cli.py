"""The command line: parse, build settings, call the library (or the running daemon), print.

While a daemon owns the home (its lock is held) the CLI never opens the index itself: it talks to
the daemon's API, waiting for it while the daemon starts. Exit codes: 0 done, 1 `sleepd check`
found the daemon unhealthy, 2 an error (bad input or configuration, nothing reachable), 3 the
daemon is starting and its API did not answer in time (try again).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sleepd import defaults
from sleepd.auth import Principal
from sleepd.cli_admin import audit, diff, history, show, token_list, token_revoke
from sleepd.errors import SleepdError
from sleepd.settings import FileSource, Settings, load_settings, source_from_path

__all__ = ["main"]

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay on one line for scripts and grep
F = TypeVar("F", bound=Callable[..., Any])
LOCAL_ADMIN = Principal("local-admin", admin=True)
#: the exit code when the daemon is starting and its API did not answer in time
EXIT_DAEMON_STARTING = 3


def _settings() -> Settings:
    return load_settings()


def _daemon_starting(settings: Settings) -> bool:
    """A daemon holds the home but its API does not answer (yet)."""
    from sleepd.daemon import DAEMON_LOCK, HomeLock

    return HomeLock.held(settings.home / DAEMON_LOCK)


def _reach(settings: Settings, wait: float = defaults.DAEMON_START_WAIT_SECONDS) -> tuple[Any, Any]:
    """The running daemon's client, or else the home's index lock for working in this process:
    ``(client, None)`` or ``(None, lock)``. A daemon that holds the home but does not answer yet
    is waited for (never opened from under: it would then fail to open its own index)."""
    import time

    from sleepd.client import Client, DaemonStarting
    from sleepd.daemon import INDEX_LOCK, HomeLock
    from sleepd.errors import Unavailable

    deadline = time.monotonic() + wait
    told = False
    while True:
        client = Client.discover(settings)
        if client is not None:
            return client, None
        starting = _daemon_starting(settings)
        if not starting:
            lock = HomeLock.try_take(settings.home / INDEX_LOCK)
            if lock is not None:
                return None, lock
        if time.monotonic() >= deadline:
            if starting:
                raise DaemonStarting(f"the sleepd daemon of home {settings.home} is starting: its API "
                                     f"({settings.base_url}) did not answer within {wait:g} s; try again")
            raise Unavailable(f"the index in home {settings.home} is in use by another sleepd command")
        if starting and not told:
            err.print(f"daemon is starting... (home {settings.home}; waiting up to {wait:g} s for its API)",
                      highlight=False)
            told = True
        time.sleep(0.5)


@contextmanager
def _service(settings: Settings, lock: Any) -> Iterator[Any]:
    """The library in this process, for when no daemon runs; ``lock`` is the home's index lock,
    held until the command is done."""
    from sleepd.errors import Unavailable
    from sleepd.service import Service

    try:
        try:
            service = Service.open(settings)
        except Exception as exc:
            raise Unavailable(f"no daemon answers for home {settings.home} and its memory cannot be opened "
                              f"here: {type(exc).__name__}: {exc}") from None
        try:
            yield service
        finally:
            service.close()
            service.ledger.close()
    finally:
        lock.release()


def _call(settings: Settings, method: str, path: str, body: dict[str, Any] | None,
          local: Callable[[Any], Any]) -> dict[str, Any]:
    """Through the daemon's API when one answers, else in this process."""
    client, lock = _reach(settings)
    if client is not None:
        try:
            return client.get(path) if method == "GET" else client.post(path, body)  # type: ignore[no-any-return]
        finally:
            client.close()
    with _service(settings, lock) as service:
        result = local(service)
        return result if isinstance(result, dict) else result.as_dict()  # type: ignore[no-any-return]


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def cli(verbose: bool) -> None:
    """sleepd: enrich your context while idle, answer within a token budget."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "watchdog", "celery", "kombu", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option("--profile", type=click.Choice(defaults.FILE_PROFILES), default="auto", show_default=True)
@click.option("--access", multiple=True, help="Principals or groups that may read these paths (default: any token).")
@click.option("--port", type=int, envvar="SLEEPD_API_PORT", help=f"API port (default {defaults.API_PORT}).")
def run(paths: tuple[str, ...], profile: str, access: tuple[str, ...], port: int | None) -> None:
    """Run the daemon: watch PATHS (and configured sources), enrich while idle, serve the API."""
    from dataclasses import replace

    from sleepd.daemon import Daemon, take_daemon_lock

    settings = _settings()
    # the very first thing: from now on a CLI command waits for this daemon's API instead of
    # opening the index itself (loading the model and the index take seconds)
    lock = take_daemon_lock(settings.home)
    if port is not None:
        settings = replace(settings, api_port=port)
    missing = [p for p in paths if not os.path.isdir(p)]
    if missing:
        raise click.BadParameter(f"not a folder: {', '.join(missing)}", param_hint="PATHS")
    sources = tuple(source_from_path(p, profile=profile, access=access or ("*",)) for p in paths)
    daemon = Daemon(settings, extra_sources=sources, lock=lock)
    if sys.stderr.isatty():
        threading.Thread(target=_progress, args=(daemon,), daemon=True).start()
    daemon.run_forever()


def _progress(daemon: Any) -> None:
    """A progress bar for the first pass, on a terminal."""
    daemon.stop_event.wait(2.0)
    with Progress(TextColumn("enriching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("enrich", total=None)
        while not daemon.stop_event.wait(1.0):
            try:
                status = daemon.ledger.status()
            except Exception:
                continue
            counts = [s["items"] for s in status["sources"]]
            total = sum(c["pending"] + c["enriched"] + c["failed"] for c in counts)
            done = sum(c["enriched"] + c["failed"] for c in counts)
            bar.update(task, total=total, completed=done)
            if total and done >= total:
                return


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Sources and their items by state, the scheduler and its queue, failures, the daemon."""
    from sleepd.client import Client
    from sleepd.ledger import Ledger
    from sleepd.llm_budget import status_report
    from sleepd.scheduler import backlog

    settings = _settings()
    client = Client.discover(settings)
    if client is not None:
        try:
            report = client.get("/v1/status")
        finally:
            client.close()
    else:
        ledger = Ledger(settings.database_url)
        try:
            report = status_report(ledger, settings)
            now = time.time()
            report["scheduler"] = {"state": "not running",
                                   "queue": [b.as_dict(now) for b in backlog(ledger, settings)]}
        finally:
            ledger.close()
        report["daemon"] = {"state": "starting" if _daemon_starting(settings) else "not running"}
    if as_json:
        _print_json(report)
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    table = Table(title="sleepd sources")
    for column in ("source", "path", "pending", "enriched", "failed", "deleted", "error"):
        table.add_column(column, overflow="fold")
    for src in report["sources"]:
        items = src["items"]
        table.add_row(src["name"], str(src["path"]), str(items["pending"]), str(items["enriched"]),
                      str(items["failed"]), str(items["deleted"]), src["error"] or "")
    out.print(table)
    queue = ", ".join(f"{n} {state}" for state, n in sorted(report["queue"].items())) or "empty"
    out.print(f"changes: {queue}   records: {report['records']}   index lag: {report['index_lag']}   "
              f"daemon: {report['daemon'].get('state')}", highlight=False)
    scheduler = report.get("scheduler", {})
    out.print(_scheduler_line(scheduler), highlight=False)
    if scheduler.get("queue"):
        waiting = Table(title="waiting for enrichment", title_justify="left")
        for column in ("source", "pending", "oldest", "max staleness", "forced in"):
            waiting.add_column(column, justify="left" if column == "source" else "right")
        for row in scheduler["queue"]:
            waiting.add_row(row["source"], str(row["pending"]), _seconds(row["oldest_age_s"]),
                            _seconds(row["max_staleness_s"]), _seconds(row["forced_in_s"]))
        out.print(waiting)
    if "llm" in report:
        llm = report["llm"]
        out.print(f"llm {llm['model']}: {llm['tokens_today']:,} tokens today, {llm['budget_left']:,} left, "
                  f"{llm['calls']} requests, {llm['dropped_claims']} claims dropped, cost {llm['cost_today']:.4f}")
    for src in report["sources"]:
        for failure in src["failed"]:
            out.print(f"[red]failed[/red] {src['name']}:{failure['item']}: {failure['error']}")
        if src.get("purged"):
            out.print(f"purged {src['name']}: {', '.join(src['purged'])} (not tracked again; `sleepd purge --lift`)")


def _scheduler_line(scheduler: dict[str, Any]) -> str:
    """One sentence: what the scheduler does, why it waits, how old the backlog is."""
    state = str(scheduler.get("state", "unknown"))
    line = f"scheduler: {state.replace('_', ' ')}"
    if scheduler.get("reason"):
        line += f" ({scheduler['reason']})"
    if scheduler.get("oldest_pending_age_s") is not None:
        line += f"; oldest pending change {_seconds(scheduler['oldest_pending_age_s'])} old"
        if scheduler.get("reason") and scheduler.get("forced_in_s") is not None:
            line += f", enriched anyway in {_seconds(scheduler['forced_in_s'])}"
    if scheduler.get("error"):
        line += f"; error: {scheduler['error']}"
    return line


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


@cli.command()
@click.argument("q")
@click.option("--budget", type=int, default=defaults.DEFAULT_BUDGET, show_default=True, help="Token budget.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def query(q: str, budget: int, as_json: bool) -> None:
    """Answer Q from memory: a cited context pack within the budget."""
    from sleepd.query import check_query

    check_query(q, budget)  # before reaching a daemon or loading a model
    settings = _settings()
    result = _call(settings, "POST", "/v1/query", {"q": q, "budget": budget},
                   lambda s: s.query(q, budget, LOCAL_ADMIN))
    if as_json:
        _print_json(result)
        return
    for rec in result["records"]:
        span = rec["evidence"][0] if rec["evidence"] else {}
        where = f"{rec['source']}:{rec['item']}:{span.get('start_line', '?')}-{span.get('end_line', '?')}"
        fresh = "" if rec["fresh"] else " [yellow](changed since enriched)[/yellow]"
        out.print(f"[bold]{where}[/bold] {rec['kind']} score={rec['score']}{fresh}")
        out.print(rec["text"], markup=False, highlight=False)
        out.print()
    out.print(f"{result['tokens_used']}/{result['budget']} tokens, {len(result['records'])} records")


@cli.command()
@click.option("--source", help="Only this source.")
@click.option("--path", "pattern", help="Only items whose path matches this glob.")
@click.option("--force", is_flag=True, help="Re-enrich even if the content did not change.")
def refresh(source: str | None, pattern: str | None, force: bool) -> None:
    """Queue items for enrichment ahead of everything else."""
    settings = _settings()
    body = {"source": source, "path": pattern, "force": force}
    result = _call(settings, "POST", "/v1/refresh", body,
                   lambda s: s.refresh(LOCAL_ADMIN, source, pattern, force))
    click.echo(f"queued {result['queued']} items for refresh" + (" (forced)" if force else ""))


@cli.command()
@click.option("--source", help="Purge a whole source (and forget it).")
@click.option("--path", "pattern", help="Purge items whose path matches this glob.")
@click.option("--lift", is_flag=True, help="Undo the exclusion a purge by --path left: the next scan tracks "
              "those files again.")
@click.option("--json", "as_json", is_flag=True)
def purge(source: str | None, pattern: str | None, lift: bool, as_json: bool) -> None:
    """Remove memory: records, every version, index points and query-log text. Paths purged by
    --path stay out of memory (the watchers skip them) until --lift."""
    if source is None and pattern is None:
        raise click.UsageError("give --source or --path (or both)")
    if lift and pattern is None:
        raise click.UsageError("--lift needs the --path glob that was purged")
    settings = _settings()
    result = _call(settings, "POST", "/v1/purge", {"source": source, "path": pattern, "lift": lift},
                   lambda s: s.purge(LOCAL_ADMIN, source, pattern, lift))
    if as_json or lift:
        _print_json(result)
        return
    click.echo(f"purged {result['items']} items: {result['records']} records, {result['versions']} versions, "
               f"{result['index_points']} index points, {result['changes']} changes, "
               f"{result['query_log']} query-log entries")


@cli.command()
def reindex() -> None:
    """Rebuild the vector index from the ledger (no re-embedding)."""
    settings = _settings()
    result = _call(settings, "POST", "/v1/reindex", None, lambda s: s.reindex(LOCAL_ADMIN))
    click.echo(f"reindexed {result['points']} points")


@cli.command()
def check() -> None:
    """Exit 0 when the daemon is healthy, 1 otherwise (for health probes)."""
    from sleepd.client import Client

    settings = _settings()
    client = Client.discover(settings)
    if client is None:
        state = "starting" if _daemon_starting(settings) else "not running"
        click.echo(f"unhealthy: daemon {state} (home {settings.home})", err=True)
        sys.exit(1)
    try:
        code, report = client.health()
    finally:
        client.close()
    if code != 200:
        bad = {k: v for k, v in report.get("components", {}).items() if v != "ok"}
        click.echo(f"unhealthy: {bad or report}", err=True)
        sys.exit(1)
    click.echo("ok")


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Lower the worker's CPU priority by this much, so queries on the same machine come first.")
def worker(loglevel: str, nice: int) -> None:
    """Run a Celery worker for S(c) (started by the daemon, or alone for a team)."""
    from workers.app import configure

    if nice:
        os.nice(nice)
    app = configure(_settings())
    _exit_with_parent()
    app.worker_main(["worker", "--pool=solo", "-Q", defaults.QUEUE, f"--loglevel={loglevel}",
                     "--without-gossip", "--without-mingle", "-n", f"sleepd-{os.getpid()}@%h"])


def _exit_with_parent() -> None:
    """The embedded worker must not outlive its daemon."""
    parent = os.environ.get("SLEEPD_PARENT_PID")
    if not parent:
        return

    def watch() -> None:
        while True:
            if os.getppid() != int(parent):
                os._exit(0)
            threading.Event().wait(1.0)

    threading.Thread(target=watch, daemon=True).start()


@cli.command()
def mcp() -> None:
    """Serve MCP on stdio for an assistant (forwards to the running daemon)."""
    from sleepd.mcp_server import build_server

    logging.getLogger().setLevel(logging.WARNING)  # stdout is the protocol; logs go to stderr only
    build_server(_settings()).run("stdio")


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.argument("principal")
@click.option("--group", "groups", multiple=True, help="Groups the principal belongs to.")
@click.option("--admin", is_flag=True, help="May refresh, purge and read everything.")
def token_create(principal: str, groups: tuple[str, ...], admin: bool) -> None:
    """Create a token for PRINCIPAL and print it (once)."""
    from sleepd.auth import create_token
    from sleepd.ledger import Ledger

    ledger = Ledger(_settings().database_url)
    click.echo(create_token(ledger, principal, groups, admin))
    ledger.close()


@cli.group()
def sources() -> None:
    """Declared sources."""


@sources.command("add")
@click.argument("path", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--name", help="Source name (default: the folder name, or the root table).")
@click.option("--profile", type=click.Choice(defaults.PROFILES), help="Enrichment profile "
              "(default: auto for a folder, accounts for --sql).")
@click.option("--access", multiple=True, help="Principals or groups that may read it (default: any token).")
@click.option("--sql", "sql_url", metavar="URL", envvar="SLEEPD_SQL_URL",
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
@click.option("--password-env", metavar="VAR", envvar="SLEEPD_SQL_PASSWORD_ENV",
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
    ledger = Ledger(_settings().database_url)
    ledger.save_source(source)
    ledger.close()
    click.echo(f"added source {source.name}: {where}")


@cli.command("sql-triggers")
@click.argument("source_name", metavar="SOURCE")
def sql_triggers(source_name: str) -> None:
    """Print PostgreSQL trigger SQL for SOURCE's LISTEN/NOTIFY fast path, for an admin to review and
    install (sleepd never alters a watched database). Then set listen = true on the source."""
    from sleepd.ledger import Ledger
    from sleepd.settings import SqlSource
    from sleepd.sqlrows import trigger_sql

    settings = _settings()
    ledger = Ledger(settings.database_url)
    source = next((s for s in settings.sources if s.name == source_name), None) or ledger.get_source(source_name)
    ledger.close()
    if not isinstance(source, SqlSource):
        raise click.BadParameter(f"no sql source named {source_name!r}", param_hint="SOURCE")
    if not source.url.startswith("postgresql"):
        raise click.BadParameter(f"source {source_name!r} is not PostgreSQL: LISTEN/NOTIFY needs PostgreSQL",
                                 param_hint="SOURCE")
    click.echo(trigger_sql(source), nl=False)


@sources.command("list")
def sources_list() -> None:
    from sleepd.ledger import Ledger

    ledger = Ledger(_settings().database_url)
    for source in ledger.sources():
        where = source.path if isinstance(source, FileSource) else source.where
        click.echo(f"{source.name}\t{source.kind}\t{where}\tprofile={source.profile}\t"
                   f"access={','.join(source.access)}")
    ledger.close()


@cli.command()
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              envvar="SLEEPD_BENCH_DATA", help="The evaluation data folder (cuad/, swebench-lite.jsonl, tau2/).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where report.json, report.md and recall.png go (and the bench's work folders).")
@click.option("--corpus", "corpora", default="contracts,code,accounts,airline", show_default=True,
              help="Comma-separated: contracts, code, accounts (tau2 retail), airline (tau2 airline).")
@click.option("--quick", is_flag=True, help="A small slice of each corpus: a smoke test for CI.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), envvar="SLEEPD_BENCH_CACHE",
              help="Where sdists are downloaded once (default ~/.cache/sleepd-bench).")
@click.option("--contracts", type=int, help="Number of contracts (a seeded sample; default 20 quick, else all).")
@click.option("--per-contract", type=int, help="Questions per contract (default 3 quick, else 5).")
@click.option("--repos", help="Comma-separated SWE-bench repositories, e.g. psf/requests,pytest-dev/pytest.")
@click.option("--max-issues", type=int, help="Issues per repository, or tau2 tasks (default 10 quick, else all).")
def bench(data_dir: str, out_dir: str, corpora: str, quick: bool, cache_dir: str | None, contracts: int | None,
          per_contract: int | None, repos: str | None, max_issues: int | None) -> None:
    """Measure recall per live token, latency and throughput against plain RAG; write reports to OUT."""
    from pathlib import Path

    from sleepd.bench import BenchConfig, run_bench

    config = BenchConfig(data=Path(data_dir), out=Path(out_dir), quick=quick,
                         corpora=tuple(c.strip() for c in corpora.split(",") if c.strip()),
                         contracts=contracts, per_contract=per_contract, max_issues=max_issues,
                         repos=tuple(r.strip() for r in repos.split(",") if r.strip()) if repos else None,
                         progress=sys.stderr.isatty())
    if cache_dir:
        config.cache = Path(cache_dir)
    report = run_bench(config)
    for name, corpus in report["corpora"].items():
        out.print(f"{name}: recall@1024 sleepd {corpus['recall']['sleepd']['1024']['recall']:.3f} vs baseline "
                  f"{corpus['recall']['baseline']['1024']['recall']:.3f}; token-reduction factor "
                  f"{corpus['reduction']['text']}")
    out.print(f"wrote {Path(out_dir) / 'report.md'}, report.json and recall.png")


@cli.group()
def llm() -> None:
    """The optional LLM layer (llm_base_url and llm_model in [sleepd])."""


@llm.command("estimate")
@click.option("--source", help="Only this source.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def llm_estimate(source: str | None, as_json: bool) -> None:
    """What a full LLM pass over the current items would cost (no model is called)."""
    from sleepd.ledger import Ledger
    from workers.llm import estimate_pass

    settings = _settings()
    ledger = Ledger(settings.database_url)
    try:
        report = estimate_pass(ledger, settings, source)
    finally:
        ledger.close()
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"LLM pass estimate ({settings.llm_model or 'no llm_model configured'})")
    for column in ("source", "items", "input tokens", "output tokens (est.)"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, part in report["by_source"].items():
        table.add_row(name, str(part["items"]), f"{part['input_tokens']:,}", f"{part['output_tokens_estimate']:,}")
    out.print(table)
    out.print(f"items: {report['items']}   input tokens: {report['input_tokens']:,}   output tokens (est.): "
              f"{report['output_tokens_estimate']:,}   cost: {report['cost']:.4f} "
              f"(at {settings.llm_price_per_1k_input}/{settings.llm_price_per_1k_output} per 1k in/out)   "
              f"days at the daily budget: {report['days_at_daily_budget']}")


for _command in (history, show, diff, audit):
    cli.add_command(_command)
token.add_command(token_list)
token.add_command(token_revoke)


def main() -> None:
    from sleepd.client import DaemonStarting

    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except DaemonStarting as exc:
        err.print(f"[yellow]daemon starting[/yellow]: {exc.message}", highlight=False)
        sys.exit(EXIT_DAEMON_STARTING)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SleepdError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}", highlight=False)
        sys.exit(2)
