"""The memory's commands: ``query`` it, ``refresh`` items ahead of the queue, ``purge`` them,
``reindex`` the vectors. Each goes through the running daemon's API, or opens the library in this
process when no daemon owns the home."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape

from sleepd import defaults
from sleepd.cli.common import LOCAL_ADMIN, call, err, json_option, load_settings, out, print_json, reach
from sleepd.ledger.refresh import freshness_counts

__all__ = ["EXIT_NOT_FRESH", "purge", "query", "refresh", "reindex"]

#: the exit code of `refresh --wait` when items failed or were not fresh in time
EXIT_NOT_FRESH = 1


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
@click.option("--wait", is_flag=True, help="Wait until the queued items are fresh (published at their current "
              "content); exit 1 naming those that failed or were not fresh in time. Needs a running daemon.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="With --wait: give up after this "
              f"many seconds (default {defaults.REFRESH_WAIT_SECONDS:g}).")
@json_option
def refresh(source: str | None, pattern: str | None, force: bool, wait: bool, timeout: float | None,
            as_json: bool) -> None:
    """Queue items for enrichment ahead of everything else, and say which."""
    from sleepd.errors import Unavailable

    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    settings = load_settings()
    body = {"source": source, "path": pattern, "force": force}
    with reach(settings) as (client, service):
        result = client.post("/v1/refresh", body) if client is not None \
            else service.refresh(LOCAL_ADMIN, source, pattern, force)
        if not wait:
            _print_queued(result, force, as_json)
            return
        if client is None:
            _print_queued(result, force, as_json)
            raise Unavailable(f"cannot wait without a daemon: none runs for home {settings.home}; the "
                              f"{result['queued']} items are queued and `sleepd run` will enrich them")
        if not as_json:
            _print_queued(result, force, False)
        ids = [item["id"] for item in result["items"]]
        began = time.monotonic()
        states = _wait_fresh(lambda chunk: client.post("/v1/refresh/state", {"items": chunk})["items"], ids,
                             defaults.REFRESH_WAIT_SECONDS if timeout is None else timeout)
    waited = round(time.monotonic() - began, 1)
    report = {**result, "items": states, **freshness_counts(states), "waited_s": waited}
    if as_json:
        print_json(report)
    else:
        click.echo(f"{report['fresh']} fresh, {report['failed']} failed, {report['deleted'] + report['gone']} "
                   f"gone, {report['waiting']} not fresh yet, after {waited:g} s")
    bad = [i for i in states if i["state"] in ("failed", "waiting")]
    if bad:
        named = "; ".join(f"{i['source']}:{i['item']} {i['state']}" + (f" ({i['error']})" if i.get("error") else "")
                          for i in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        err.print(f"[red]error[/red]: {escape(f'{len(bad)} of {len(states)} items not fresh: {named}{more}')}",
                  highlight=False)
        sys.exit(EXIT_NOT_FRESH)


def _print_queued(result: dict[str, Any], force: bool, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    names = [f"{i['source']}:{i['item']}" for i in result["items"]]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    click.echo(f"queued {result['queued']} items for refresh" + (" (forced)" if force else "")
               + (f": {shown}" if shown else ""))


def _wait_fresh(ask: Callable[[list[int]], list[dict[str, Any]]], ids: list[int],
                timeout: float) -> list[dict[str, Any]]:
    """Ask where the items stand until none is waiting or ``timeout`` seconds passed; the last
    answer for each, in the order given. Items settled are not asked about again."""
    deadline = time.monotonic() + timeout
    last: dict[int, dict[str, Any]] = {}
    waiting = list(ids)
    while True:
        for start in range(0, len(waiting), defaults.REFRESH_STATE_MAX):
            for state in ask(waiting[start:start + defaults.REFRESH_STATE_MAX]):
                last[state["id"]] = state
        waiting = [i for i in waiting if last[i]["state"] == "waiting"]
        if not waiting or time.monotonic() >= deadline:
            return [last[i] for i in ids]
        time.sleep(min(defaults.REFRESH_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


@click.command()
@click.option("--source", help="Purge a whole source (and forget it).")
@click.option("--path", "pattern", help="Purge items whose path matches this glob.")
@click.option("--lift", is_flag=True, help="Undo the exclusion a purge by --path left: those files are "
              "scanned and queued at once, and the count found is printed.")
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
    if as_json:
        print_json(result)
        return
    if lift:
        names = ", ".join(result["items"]) + (" ..." if result["found"] > len(result["items"]) else "")
        click.echo(f"lifted the purge of {pattern}: {result['found']} items found and tracked again"
                   + (f": {names}" if names else ""))
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
