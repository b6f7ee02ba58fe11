"""``sleepd status``: sources and their items by state, the scheduler and its queue, failures, the
daemon; from the daemon's API when one answers, else from the ledger."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table

from sleepd.cli.common import daemon_starting, json_option, load_settings, out, print_json
from sleepd.progress import first_pass_line, seconds_text

__all__ = ["scheduler_line", "status"]


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Sources and their items by state, the scheduler and its queue, failures, the daemon."""
    from sleepd.client import Client
    from sleepd.ledger import Ledger
    from sleepd.scheduler import backlog
    from sleepd.status import status_report

    settings = load_settings()
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
        # the home looked in: a daemon of another home (SLEEPD_HOME, the config's) is not this one
        report["daemon"] = {"state": "starting" if daemon_starting(settings) else "not running",
                            "home": str(settings.home)}
    if as_json:
        print_json(report)
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    table = Table(title="sleepd sources")
    for column in ("source", "path", "pending", "enriched", "failed", "skipped", "deleted", "error"):
        table.add_column(column, overflow="fold")
    for src in report["sources"]:
        items = src["items"]
        skipped = src.get("skipped", {}).get("count", 0)  # binaries: not failures, nothing to fix
        table.add_row(src["name"], str(src["path"]), str(items["pending"]), str(items["enriched"]),
                      str(items["failed"]), str(skipped), str(items["deleted"]), src["error"] or "")
    out.print(table)
    queue = ", ".join(f"{n} {state}" for state, n in sorted(report["queue"].items())) or "empty"
    out.print(f"changes: {queue}   records: {report['records']}   index lag: {report['index_lag']}   "
              f"daemon: {report['daemon'].get('state')}{_readiness(report['daemon'])}"
              + (f" (home {report['daemon']['home']})" if report["daemon"].get("home") else ""), highlight=False)
    if report.get("first_pass", {}).get("state") == "running":  # once done, "memory ready" says how long it took
        out.print(first_pass_line(report["first_pass"]), highlight=False)
    scheduler = report.get("scheduler", {})
    out.print(scheduler_line(scheduler), highlight=False)
    if scheduler.get("queue"):
        waiting = Table(title="waiting for enrichment", title_justify="left")
        for column in ("source", "pending", "oldest", "max staleness", "forced in"):
            waiting.add_column(column, justify="left" if column == "source" else "right")
        for row in scheduler["queue"]:
            waiting.add_row(row["source"], str(row["pending"]), seconds_text(row["oldest_age_s"]),
                            seconds_text(row["max_staleness_s"]), seconds_text(row["forced_in_s"]))
        out.print(waiting)
    queries = report.get("queries")
    if queries and queries["logged"]:
        shares = ", ".join(f"{route} {share:.0%}" for route, share in queries["shares"].items() if share)
        out.print(f"queries: {queries['logged']} logged; served by {shares}", highlight=False)
    if "llm" in report:
        llm = report["llm"]
        out.print(f"llm {llm['model']}: {llm['tokens_today']:,} tokens today, {llm['budget_left']:,} left, "
                  f"{llm['calls']} requests, {llm['dropped_claims']} claims dropped, cost {llm['cost_today']:.4f}")
    for src in report["sources"]:
        for failure in src["failed"]:
            out.print(f"[red]failed[/red] {src['name']}:{failure['item']}: {failure['error']}")
        if src.get("purged"):
            out.print(f"purged {src['name']}: {', '.join(src['purged'])} (not tracked again; `sleepd purge --lift`)")


def scheduler_line(scheduler: dict[str, Any]) -> str:
    """One sentence: what the scheduler does, why it waits, how old the backlog is."""
    state = str(scheduler.get("state", "unknown"))
    line = f"scheduler: {state.replace('_', ' ')}"
    if scheduler.get("reason"):
        line += f" ({scheduler['reason']})"
    if scheduler.get("oldest_pending_age_s") is not None:
        line += f"; oldest pending change {seconds_text(scheduler['oldest_pending_age_s'])} old"
        if scheduler.get("reason") and scheduler.get("forced_in_s") is not None:
            line += f", enriched anyway in {seconds_text(scheduler['forced_in_s'])}"
    if scheduler.get("error"):
        line += f"; error: {scheduler['error']}"
    return line


def _readiness(daemon: dict[str, Any]) -> str:
    """", memory ready (first pass 41 s)" once the first scan's work is published and indexed."""
    if daemon.get("model") == "loading":
        return ", loading the embedding model (queries wait for it)"
    if str(daemon.get("model", "")).startswith("error"):
        return f", embedding model {daemon['model']}"
    if "ready" not in daemon:
        return ""
    return f", memory ready (first pass {seconds_text(daemon['first_pass_s'])})" if daemon["ready"] \
        else ", first pass in progress"
