"""The admin's commands: ``history``, ``show``, ``diff``, ``audit`` and ``token create``, ``list``,
``revoke``. Each but ``token create`` goes through the running daemon's API when one answers (with the token
of the settings or the home folder) and reads the ledger directly otherwise: none of them needs
the index or the model, so no daemon is required."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import click
from rich.markup import escape
from rich.table import Table

from sleepd import defaults
from sleepd.cli.common import LOCAL_ADMIN, json_option, load_settings, out, print_json
from sleepd.ledger import Ledger

__all__ = ["audit", "diff", "history", "show", "token"]


def _fetch(method: str, path: str, local: Callable[[Ledger], dict[str, Any]],
           body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Through the daemon's API when one answers, else from the ledger in this process."""
    from sleepd.client import Client

    settings = load_settings()
    client = Client.discover(settings)
    if client is not None:
        try:
            return client.get(path) if method == "GET" else client.post(path, body)
        finally:
            client.close()
    ledger = Ledger(settings.database_url)
    try:
        return local(ledger)
    finally:
        ledger.close()


def _item_path(item: str, suffix: str = "", **params: object) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"/v1/items/{quote(item, safe='/:@')}{suffix}" + (f"?{query}" if query else "")


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


_source_option = click.option("--source", help="The item's source, when the same key is in several.")


@click.command()
@click.argument("item")
@_source_option
@json_option
def history(item: str, source: str | None, as_json: bool) -> None:
    """Every version of ITEM (a path, or TABLE:KEY for an sql source), newest first."""
    from sleepd.history import item_history

    report = _fetch("GET", _item_path(item, "/history", source=source),
                    lambda led: item_history(led, LOCAL_ADMIN, item, source))
    if as_json:
        print_json(report)
        return
    table = Table(title=f"{report['source']}:{report['item']} ({report['state']})")
    for column in ("version", "published", "status", "content hash", "pipeline", "records", "by kind"):
        table.add_column(column, overflow="fold")
    for v in report["versions"]:
        kinds = ", ".join(f"{k} {n}" for k, n in v["kinds"].items()) if v["kinds"] is not None else "(not kept)"
        table.add_row(f"{v['version']}{' *' if v['current'] else ''}", _when(v["created_at"]), v["status"],
                      v["content_hash"][:12], v["pipeline_version"], str(v["n_records"]), kinds)
    out.print(table)
    out.print("* current version; (not kept): records pruned by retention (keep_versions)")


@click.command()
@click.argument("item")
@click.option("--version", type=int, help="Which version (default: the current one).")
@_source_option
@json_option
def show(item: str, version: int | None, source: str | None, as_json: bool) -> None:
    """The records of one version of ITEM, with their evidence."""
    from sleepd.history import item_version

    report = _fetch("GET", _item_path(item, version=version, source=source),
                    lambda led: item_version(led, LOCAL_ADMIN, item, version, source))
    if as_json:
        print_json(report)
        return
    v = report["version"]
    out.print(f"[bold]{report['source']}:{report['item']}[/bold] version {v['version']} ({v['status']}"
              f"{', current' if v['current'] else ''}) published {_when(v['created_at'])} "
              f"hash {v['content_hash'][:12]} pipeline {v['pipeline_version']}: {v['n_records']} records",
              highlight=False)
    if not report["records_kept"]:
        out.print(report["note"], markup=False, highlight=False)
    for rec in report["records"]:
        spans = "; ".join(f"{e.get('path')}:{e.get('start_line')}-{e.get('end_line')}" for e in rec["evidence"])
        out.print(f"\n[bold]{rec['kind']}[/bold] {rec['title']}  [dim]{spans}[/dim]", highlight=False)
        out.print(rec["text"], markup=False, highlight=False)


@click.command()
@click.argument("item")
@click.argument("a", type=int)
@click.argument("b", type=int)
@_source_option
@json_option
def diff(item: str, a: int, b: int, source: str | None, as_json: bool) -> None:
    """What changed in ITEM from version A to version B: records added, removed, changed."""
    from sleepd.history import diff_versions

    report = _fetch("GET", _item_path(item, "/diff", a=a, b=b, source=source),
                    lambda led: diff_versions(led, LOCAL_ADMIN, item, a, b, source))
    if as_json:
        print_json(report)
        return
    old, new = report["a"], report["b"]
    out.print(f"{report['source']}:{report['item']} v{a} -> v{b}: content "
              f"{'changed' if report['content_changed'] else 'same'} ({old['content_hash'][:12]} -> "
              f"{new['content_hash'][:12]}), pipeline {old['pipeline_version']} -> {new['pipeline_version']}, "
              f"records {old['n_records']} -> {new['n_records']}", markup=False, highlight=False)
    if not report["records_kept"]:
        out.print(report["note"], markup=False, highlight=False)
        return
    table = Table(title=f"records v{a} -> v{b}")
    for column in ("", "kind", "title", "evidence", "what changed"):
        table.add_column(column, overflow="fold")
    for label, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for rec in report[key]:
            table.add_row(label, rec["kind"], escape(rec["title"]), escape(", ".join(rec["paths"])),
                          ", ".join(rec.get("fields", [])))
    out.print(table)
    out.print(f"{len(report['added'])} added, {len(report['removed'])} removed, {len(report['changed'])} changed")


@click.command()
@click.option("--since", help="From this time: 30m, 2h, 7d, an ISO date or time (UTC), or Unix seconds.")
@click.option("--action", help="Only this action (token.create, token.revoke, token.refused, refresh, purge, "
              "purge.lift, reindex, source.add, source.change, source.remove).")
@click.option("--limit", type=int, default=defaults.AUDIT_LIMIT, show_default=True,
              help="The newest this many entries.")
@json_option
def audit(since: str | None, action: str | None, limit: int, as_json: bool) -> None:
    """The audit log: who created and revoked tokens, refused requests, refreshed, purged, lifted a
    purge, reindexed, and added, changed or removed a source; and when."""
    from sleepd.audit import audit_entries, parse_since

    start = parse_since(since)  # a bad time fails here, before reaching a daemon
    query = urlencode({k: v for k, v in {"since": start, "action": action, "limit": limit}.items() if v is not None})
    report = _fetch("GET", f"/v1/audit?{query}",
                    lambda led: {"since": start, "entries": audit_entries(led, start, limit, action)})
    if as_json:
        print_json(report)
        return
    for entry in report["entries"]:
        click.echo(f"{_when(entry['at'])}  {entry['actor']}  {entry['action']}  "
                   f"{json.dumps(entry['detail'], default=str)}")


@click.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.argument("principal")
@click.option("--group", "groups", multiple=True, help="Groups the principal belongs to.")
@click.option("--admin", is_flag=True, help="May refresh, purge and read everything.")
def token_create(principal: str, groups: tuple[str, ...], admin: bool) -> None:
    """Create a token for PRINCIPAL and print it (once)."""
    from sleepd.auth import create_token

    ledger = Ledger(load_settings().database_url)
    click.echo(create_token(ledger, principal, groups, admin))
    ledger.close()


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """Every token: principal, groups, admin, created, last used, revoked."""
    from sleepd.auth import list_tokens

    report = _fetch("GET", "/v1/tokens", lambda led: {"tokens": list_tokens(led)})
    if as_json:
        print_json(report)
        return
    table = Table(title="sleepd tokens")
    for column in ("id", "principal", "groups", "admin", "created", "last used", "revoked"):
        table.add_column(column, overflow="fold")
    for t in report["tokens"]:
        revoked = f"{_when(t['revoked_at'])} by {t['revoked_by']}" if t["revoked_at"] else ""
        table.add_row(t["id"], t["principal"], ",".join(t["groups"]), "yes" if t["admin"] else "",
                      _when(t["created_at"]), _when(t["last_used_at"]), revoked)
    out.print(table)


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke NAME's tokens (a principal, or a token id from `sleepd token list`): refused at once."""
    from sleepd.auth import revoke

    report = _fetch("POST", "/v1/tokens/revoke", lambda led: {"name": name, "revoked": revoke(led, name, "cli")},
                    {"name": name})
    ids = report["revoked"]
    click.echo(f"revoked {len(ids)} token{'s' if len(ids) != 1 else ''} of {name}: {', '.join(ids)}")
