"""The memory's commands: ``query`` it, ``refresh`` items ahead of the queue, ``purge`` them,
``reindex`` the vectors. Each goes through the running daemon's API, or opens the library in this
process when no daemon owns the home."""

from __future__ import annotations

import click

from sleepd import defaults
from sleepd.cli.common import LOCAL_ADMIN, call, json_option, load_settings, out, print_json

__all__ = ["purge", "query", "refresh", "reindex"]


@click.command()
@click.argument("q")
@click.option("--budget", type=int, default=defaults.DEFAULT_BUDGET, show_default=True, help="Token budget.")
@json_option
def query(q: str, budget: int, as_json: bool) -> None:
    """Answer Q from memory: a cited context pack within the budget."""
    from sleepd.query import check_query

    check_query(q, budget)  # before reaching a daemon or loading a model
    settings = load_settings()
    result = call(settings, "POST", "/v1/query", {"q": q, "budget": budget},
                  lambda s: s.query(q, budget, LOCAL_ADMIN))
    if as_json:
        print_json(result)
        return
    for rec in result["records"]:
        span = rec["evidence"][0] if rec["evidence"] else {}
        where = f"{rec['source']}:{rec['item']}:{span.get('start_line', '?')}-{span.get('end_line', '?')}"
        fresh = "" if rec["fresh"] else " [yellow](changed since enriched)[/yellow]"
        out.print(f"[bold]{where}[/bold] {rec['kind']} score={rec['score']}{fresh}")
        out.print(rec["text"], markup=False, highlight=False)
        out.print()
    out.print(f"{result['tokens_used']}/{result['budget']} tokens, {len(result['records'])} records")
    if result.get("note"):
        out.print(f"note: {result['note']}", markup=False, highlight=False)


@click.command()
@click.option("--source", help="Only this source.")
@click.option("--path", "pattern", help="Only items whose path matches this glob.")
@click.option("--force", is_flag=True, help="Re-enrich even if the content did not change.")
def refresh(source: str | None, pattern: str | None, force: bool) -> None:
    """Queue items for enrichment ahead of everything else."""
    settings = load_settings()
    body = {"source": source, "path": pattern, "force": force}
    result = call(settings, "POST", "/v1/refresh", body,
                  lambda s: s.refresh(LOCAL_ADMIN, source, pattern, force))
    click.echo(f"queued {result['queued']} items for refresh" + (" (forced)" if force else ""))


@click.command()
@click.option("--source", help="Purge a whole source (and forget it).")
@click.option("--path", "pattern", help="Purge items whose path matches this glob.")
@click.option("--lift", is_flag=True, help="Undo the exclusion a purge by --path left: the next scan tracks "
              "those files again.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--keep-excluded", is_flag=True, help="Purge a --path glob that matches nothing tracked, to keep "
              "matching files out of memory from now on (refused otherwise, as a likely typo).")
@json_option
def purge(source: str | None, pattern: str | None, lift: bool, dry_run: bool, keep_excluded: bool,
          as_json: bool) -> None:
    """Remove memory: records, every version, index points and query-log text. Paths purged by
    --path stay out of memory (the watchers skip them) until --lift."""
    if source is None and pattern is None:
        raise click.UsageError("give --source or --path (or both)")
    if lift and pattern is None:
        raise click.UsageError("--lift needs the --path glob that was purged")
    settings = load_settings()
    body = {"source": source, "path": pattern, "lift": lift, "dry_run": dry_run, "keep_excluded": keep_excluded}
    result = call(settings, "POST", "/v1/purge", body,
                  lambda s: s.purge(LOCAL_ADMIN, source, pattern, lift, dry_run, keep_excluded))
    if as_json or lift:
        print_json(result)
        return
    if dry_run:
        click.echo(f"would purge {result['items']} items: {result['records']} records, {result['archived']} "
                   f"archived records, {result['versions']} versions (nothing removed)")
        for key in result["keys"]:
            click.echo(f"  {key}")
        return
    click.echo(f"purged {result['items']} items: {result['records']} records, {result['archived']} archived records, "
               f"{result['versions']} versions, "
               f"{result['index_points']} index points, {result['changes']} changes, "
               f"{result['query_log']} query-log entries")


@click.command()
def reindex() -> None:
    """Rebuild the vector index from the ledger (no re-embedding)."""
    settings = load_settings()
    result = call(settings, "POST", "/v1/reindex", None, lambda s: s.reindex(LOCAL_ADMIN))
    click.echo(f"reindexed {result['points']} points")
