"""History, versions and diffs of items over the real pipeline (real files, an SQLite database,
the real model): every version listed, any kept version's records shown with their evidence, a
diff naming the records added, removed and changed, retention pruning old versions' records in
idle maintenance, purge deleting the archive, queries never seeing it, permissions (404, never
content), the REST endpoints, the CLI with no daemon, and the same on PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlmodel import select

from sleepd.api import create_app
from sleepd.auth import Principal, create_token
from sleepd.cli import cli
from sleepd.embed import Embedder
from sleepd.errors import BadRequest, NotFound
from sleepd.history import diff_versions, item_history, item_version
from sleepd.retention import Retention, prune_versions
from sleepd.schema import QueryLogRow, RecordArchiveRow, RecordRow
from sleepd.service import Service
from sleepd.settings import FileSource, Settings, Source, sql_source
from sleepd.watchers import Watchers
from tests.helpers import enrich_pending, free_port, wait_for

ADMIN = Principal("root", admin=True)


def _section(title: str, sentence: str) -> str:
    """A section long enough (~1,800 characters) to be a record of its own, not merged."""
    return f"## {title}\n\n" + " ".join(sentence.format(i=i) for i in range(1, 26)) + "\n\n"


DEPLOYS = _section("Deploys", "Deploy train {i} leaves on Tuesday once every check is green.")
FREEZES = _section("Freezes", "Code freeze {i} starts on the first Monday of December.")
ROLLBACKS = _section("Rollbacks", "Rollback drill {i} needs two approvals from the on-call team.")
#: three versions: v2 adds Rollbacks; v3 changes Deploys (Thursday) and removes Freezes
NOTES_V1 = "# Notes\n\n" + DEPLOYS + FREEZES
NOTES_V2 = NOTES_V1 + ROLLBACKS
NOTES_V3 = "# Notes\n\n" + DEPLOYS.replace("Tuesday", "Thursday") + ROLLBACKS


def _sources(root: Path) -> list[Source]:
    return [FileSource(name="docs", path=root / "docs", profile="docs"),
            FileSource(name="hr", path=root / "hr", profile="docs", access=("hr",))]


def _sync(service: Service, root: Path, embedder: Embedder, sources: list[Source] | None = None) -> None:
    Watchers(sources or _sources(root), service.ledger, service.settings).scan_all()
    enrich_pending(service, embedder)


@pytest.fixture
def enriched(tmp_path: Path, make_settings: Callable[..., Settings], embedder: Embedder,
             request: pytest.FixtureRequest) -> Iterator[Service]:
    """docs/notes.md edited and published three times (v1, v2, v3), hr/salaries.md once."""
    (tmp_path / "docs" / "guides").mkdir(parents=True)
    (tmp_path / "hr").mkdir()
    (tmp_path / "docs" / "guides" / "setup guide.md").write_text("# Setup\n\nInstall with pipx, then run it.\n")
    (tmp_path / "docs" / "notes.md").write_text(NOTES_V1)
    (tmp_path / "hr" / "salaries.md").write_text("# Salaries\n\nThe payroll budget is 4.2M.\n")
    on_pg = getattr(request, "param", None) == "postgresql"
    overrides = {"database_url": request.getfixturevalue("pg_url")} if on_pg else {}
    service = Service.open(make_settings(**overrides))
    service._embedder = embedder
    for source in _sources(tmp_path):
        service.ledger.save_source(source)
    _sync(service, tmp_path, embedder)
    for notes in (NOTES_V2, NOTES_V3):
        (tmp_path / "docs" / "notes.md").write_text(notes)
        _sync(service, tmp_path, embedder)
    yield service
    service.close()
    service.ledger.close()


def _check_history(service: Service) -> None:
    report = item_history(service.ledger, ADMIN, "notes.md")
    assert (report["source"], report["state"], report["current_version"]) == ("docs", "enriched", 3)
    v3, v2, v1 = report["versions"]
    assert [(v["version"], v["status"], v["current"]) for v in (v3, v2, v1)] == [
        (3, "published", True), (2, "superseded", False), (1, "superseded", False)]
    assert len({v["content_hash"] for v in (v1, v2, v3)}) == 3 and v1["pipeline_version"] == v3["pipeline_version"]
    assert v3["created_at"] >= v2["created_at"] >= v1["created_at"] and v2["n_records"] > v1["n_records"] > 0
    for v in (v1, v2, v3):  # every version's records are kept (default keep_versions 5), counted by kind
        assert v["kinds"] is not None and sum(v["kinds"].values()) == v["n_records"]


def _titles(records: list[dict[str, Any]]) -> set[str]:
    return {r["title"] for r in records}


def _check_diff(service: Service) -> None:
    """v1 -> v3: Rollbacks added, Freezes removed, Deploys changed (its text)."""
    across = diff_versions(service.ledger, ADMIN, "notes.md", 1, 3)
    assert across["content_changed"] and not across["pipeline_changed"] and across["records_kept"]
    assert across["note"] is None
    assert _titles(across["added"]) == {"Notes > Rollbacks"}
    assert _titles(across["removed"]) == {"Notes > Freezes"}
    deploys = [c for c in across["changed"] if c["title"] == "Notes > Deploys"]
    assert deploys and all(c["fields"] == ["text"] for c in deploys)
    assert any("Tuesday" in c["text_before"] and "Thursday" in c["text_after"] for c in deploys)
    assert not any("Rollbacks" in c["title"] or "Freezes" in c["title"] for c in across["changed"])
    assert all(r["paths"] == ["notes.md"] for r in across["added"] + across["removed"] + across["changed"])
    same = diff_versions(service.ledger, ADMIN, "docs:notes.md", 2, 2)
    assert same["records_kept"] and same["added"] == same["removed"] == same["changed"] == []
    assert not same["content_changed"]


def test_history_lists_every_version(enriched: Service) -> None:
    _check_history(enriched)


def test_show_any_kept_version_with_evidence(enriched: Service) -> None:
    current = item_version(enriched.ledger, ADMIN, "notes.md")
    assert current["version"]["version"] == 3 and current["records_kept"] and current["note"] is None
    assert len(current["records"]) == current["version"]["n_records"]
    assert any("Thursday" in r["text"] for r in current["records"])
    assert not any("Code freeze" in r["text"] for r in current["records"])
    old = item_version(enriched.ledger, ADMIN, "notes.md", version=1)
    assert old["records_kept"] and old["note"] is None and not old["version"]["current"]
    assert len(old["records"]) == old["version"]["n_records"] > 0
    assert any("Code freeze" in r["text"] for r in old["records"])
    assert not any("Rollback" in r["text"] or "Thursday" in r["text"] for r in old["records"])
    assert all(e["path"] == "notes.md" and e["start_line"] >= 1 for r in old["records"] for e in r["evidence"])
    with pytest.raises(NotFound, match="no version 4"):
        item_version(enriched.ledger, ADMIN, "notes.md", version=4)
    with pytest.raises(BadRequest):
        item_version(enriched.ledger, ADMIN, "notes.md", version=0)


def test_diff(enriched: Service) -> None:
    _check_diff(enriched)


def _archived(service: Service, item: str | None = None) -> list[tuple[str, int]]:
    """(record id, version) of the archive's rows, of one item or all: counted straight in the table."""
    with service.ledger.read() as s:
        query = select(RecordArchiveRow.id, RecordArchiveRow.version)
        if item is not None:
            query = query.where(RecordArchiveRow.path == item)
        return sorted((rid, v) for rid, v in s.exec(query).all())


def _current_ids(service: Service) -> set[str]:
    with service.ledger.read() as s:
        return set(s.exec(select(RecordRow.id)).all())


def _check_retention(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    """keep_versions=1: idle maintenance prunes v1's records, keeps v2's; v1's row stays."""
    assert {v for _, v in _archived(service, "notes.md")} == {1, 2}
    service.ledger.log_query(QueryLogRow(at=time.time(), principal="bob", query="deploys", budget=100,
                                         tokens_used=1, n_records=1, latency_ms=1.0))
    busy = Retention(service.ledger, replace(service.settings, keep_versions=1, idle_seconds=3600.0))
    assert busy.run_if_due() is None  # a query just now: not idle, nothing pruned
    assert {v for _, v in _archived(service, "notes.md")} == {1, 2}
    busy.settings = replace(busy.settings, idle_seconds=0.0)
    assert busy.run_if_due() is None  # idle now, but a busy machine is looked at again only after `retry`
    idle = Retention(service.ledger, replace(service.settings, keep_versions=1))
    with caplog.at_level(logging.INFO, logger="sleepd.retention"):
        report = idle.run_if_due()
    assert report is not None and (report.items, report.versions) == (1, 1) and report.records > 0
    assert "pruned the records of 1 old versions" in caplog.text
    assert {v for _, v in _archived(service, "notes.md")} == {2}
    assert idle.run_if_due() is None  # paced: not again within the interval
    history = item_history(service.ledger, ADMIN, "notes.md")
    assert [(v["version"], v["kinds"] is None) for v in history["versions"]] == [(3, False), (2, False), (1, True)]
    gone = item_version(service.ledger, ADMIN, "notes.md", version=1)
    assert not gone["records_kept"] and gone["records"] == [] and "version 1 are no longer kept" in gone["note"]
    across = diff_versions(service.ledger, ADMIN, "notes.md", 1, 3)
    assert not across["records_kept"] and across["added"] is None and "version 1" in across["note"]
    assert diff_versions(service.ledger, ADMIN, "notes.md", 2, 3)["records_kept"]


def test_retention_prunes_old_versions_in_idle_maintenance(enriched: Service,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    _check_retention(enriched, caplog)


def test_retention_per_source(enriched: Service) -> None:
    """A [[sources]] keep_versions overrides the global one: docs keeps none, the rest keep 5."""
    settings = replace(enriched.settings, source_keep_versions=(("docs", 0),))
    assert (settings.keep_versions_for("docs"), settings.keep_versions_for("hr")) == (0, 5)
    report = prune_versions(enriched.ledger, settings)
    assert report.versions == 2 and _archived(enriched, "notes.md") == []
    assert prune_versions(enriched.ledger, settings).versions == 0


def test_queries_never_see_archived_records(enriched: Service) -> None:
    archived = {rid for rid, _ in _archived(enriched)}
    assert archived and not archived & _current_ids(enriched)
    assert enriched.index.ids() == _current_ids(enriched)  # old records are not in the vector index
    result = enriched.query("When does the code freeze start in December?", 4000, ADMIN)
    assert result.records and all(r.version == 3 for r in result.records if r.item == "notes.md")
    assert "Code freeze" not in result.context and "Tuesday" not in result.context


def _check_purge(service: Service) -> None:
    archived, everywhere = len(_archived(service, "notes.md")), len(_archived(service))
    assert archived > 0
    preview = service.purge(ADMIN, "docs", "notes.md", dry_run=True)
    assert preview["archived"] == archived and len(_archived(service)) == everywhere
    receipt = service.purge(ADMIN, "docs", "notes.md")  # with the source's aggregates, which drew on it
    assert receipt["archived"] == everywhere - len(_archived(service)) >= archived and receipt["versions"] >= 3
    assert _archived(service, "notes.md") == []  # counted in the table: nothing of any version left
    assert _archived(service, "salaries.md") == [] and _current_ids(service)  # the rest untouched


def test_purge_deletes_archived_records(enriched: Service) -> None:
    _check_purge(enriched)


def test_a_deleted_item_keeps_its_history(enriched: Service, tmp_path: Path, embedder: Embedder) -> None:
    """Retracting an item archives its last records: out of the index and the queries, still
    shown by version until retention or a purge removes them."""
    (tmp_path / "docs" / "notes.md").unlink()
    _sync(enriched, tmp_path, embedder)
    report = item_history(enriched.ledger, ADMIN, "notes.md")
    assert report["state"] == "deleted" and report["versions"][0]["status"] == "retracted"
    assert all(v["kinds"] for v in report["versions"])
    last = item_version(enriched.ledger, ADMIN, "notes.md", version=3)
    assert last["records_kept"] and any("Thursday" in r["text"] for r in last["records"])
    assert {v for _, v in _archived(enriched, "notes.md")} == {1, 2, 3}
    assert not {rid for rid, _ in _archived(enriched)} & enriched.index.ids()
    report_pruned = prune_versions(enriched.ledger, replace(enriched.settings, keep_versions=1))
    assert report_pruned.versions == 2 and {v for _, v in _archived(enriched, "notes.md")} == {3}


def test_an_unreadable_item_is_not_found(enriched: Service) -> None:
    bob, carol = Principal("bob"), Principal("carol", groups=("hr",))
    assert item_history(enriched.ledger, carol, "salaries.md")["source"] == "hr"
    assert item_history(enriched.ledger, bob, "notes.md")["source"] == "docs"
    with pytest.raises(NotFound) as hidden:
        item_version(enriched.ledger, bob, "salaries.md")
    with pytest.raises(NotFound) as missing:
        item_version(enriched.ledger, bob, "wages.md")
    assert str(hidden.value).replace("salaries", "wages") == str(missing.value)


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["status"] == status
    return str(body["error"]["message"])


def test_rest(enriched: Service) -> None:
    api = TestClient(create_app(enriched))
    bob = {"Authorization": f"Bearer {create_token(enriched.ledger, 'bob')}"}
    hr = {"Authorization": f"Bearer {create_token(enriched.ledger, 'carol', groups=['hr'])}"}
    history = api.get("/v1/items/notes.md/history", headers=bob).json()
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    shown = api.get("/v1/items/docs:notes.md?version=3", headers=bob).json()
    assert shown["records_kept"] and shown["records"][0]["evidence"]
    old = api.get("/v1/items/notes.md?version=1", headers=bob).json()
    assert old["records_kept"] and any("Code freeze" in r["text"] for r in old["records"])
    diff = api.get("/v1/items/notes.md/diff?a=1&b=3", headers=bob).json()
    assert diff["content_changed"] and _titles(diff["added"]) == {"Notes > Rollbacks"}
    assert _titles(diff["removed"]) == {"Notes > Freezes"} and "Notes > Deploys" in _titles(diff["changed"])
    assert api.get("/v1/items/salaries.md", headers=hr).json()["records"]
    for path in ("/v1/items/salaries.md", "/v1/items/salaries.md/history", "/v1/items/hr:salaries.md/diff?a=1&b=1"):
        message = _error(api.get(path, headers=bob), 404, "not_found")
        assert "payroll" not in message
    _error(api.get("/v1/items/notes.md?version=two", headers=bob), 400, "bad_request")
    _error(api.get("/v1/items/notes.md?version=7", headers=bob), 404, "not_found")
    _error(api.get("/v1/items/notes.md/diff?a=1", headers=bob), 400, "bad_request")
    _error(api.get("/v1/items/notes.md/history"), 401, "unauthorized")


def test_cli_without_daemon(enriched: Service) -> None:
    settings = enriched.settings
    env = {"SLEEPD_HOME": str(settings.home), "SLEEPD_API_PORT": str(settings.api_port)}
    runner = CliRunner()
    history = runner.invoke(cli, ["history", "notes.md", "--json"], env=env)
    assert history.exit_code == 0, history.output
    assert [v["current"] for v in json.loads(history.output)["versions"]] == [True, False, False]
    table = runner.invoke(cli, ["history", "notes.md"], env=env).output
    assert "docs:notes.md" in table and "current version" in table
    shown = runner.invoke(cli, ["show", "notes.md"], env=env).output
    assert "two approvals" in shown and "notes.md:" in shown and "Code freeze" not in shown
    old = runner.invoke(cli, ["show", "notes.md", "--version", "1"], env=env).output
    assert "Code freeze" in old and "version 1 (superseded)" in old and "two approvals" not in old
    diff = runner.invoke(cli, ["diff", "notes.md", "1", "3"], env=env, terminal_width=200).output
    assert "content changed" in diff and "1 added" not in diff
    rows = {line.split("│")[1].strip() + " " + line.split("│")[3].strip() for line in diff.splitlines()
            if line.count("│") >= 5}
    assert {"+ Notes > Rollbacks", "- Notes > Freezes", "~ Notes > Deploys"} <= rows
    as_json = json.loads(runner.invoke(cli, ["diff", "notes.md", "1", "3", "--json"], env=env).output)
    assert _titles(as_json["removed"]) == {"Notes > Freezes"}
    missing = runner.invoke(cli, ["history", "wages.md"], env=env)
    assert missing.exit_code != 0 and isinstance(missing.exception, NotFound)
    for args, words in ((["show", "notes.md", "--version", "0"], "a version is a number from 1"),
                        (["diff", "wages.md", "1", "2"], "no item 'wages.md'")):
        done = subprocess.run([sys.executable, "-m", "sleepd", *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=60)
        assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_through_a_running_daemon(enriched: Service) -> None:
    """As a non-admin token: the daemon applies that token's permissions, the CLI's own admin
    reading of the ledger is not used."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(enriched), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="the API server to start")
        env = {"SLEEPD_HOME": str(enriched.settings.home), "SLEEPD_API_URL": f"http://127.0.0.1:{port}",
               "SLEEPD_TOKEN": create_token(enriched.ledger, "bob")}
        runner = CliRunner()
        nested = runner.invoke(cli, ["history", "guides/setup guide.md", "--json"], env=env)
        assert nested.exit_code == 0, nested.output
        assert json.loads(nested.output)["versions"][0]["kinds"]
        shown = json.loads(runner.invoke(cli, ["show", "notes.md", "--version", "1", "--json"], env=env).output)
        assert shown["records_kept"] and any("Code freeze" in r["text"] for r in shown["records"])
        hidden = runner.invoke(cli, ["show", "hr:salaries.md"], env=env)
        assert hidden.exit_code != 0 and getattr(hidden.exception, "code", None) == "not_found"
        audit = runner.invoke(cli, ["audit"], env=env)
        assert getattr(audit.exception, "code", None) == "forbidden"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("enriched", ["postgresql"], indirect=True)
def test_history_on_postgresql(enriched: Service, caplog: pytest.LogCaptureFixture) -> None:
    assert enriched.ledger.url.startswith("postgresql")
    _check_history(enriched)
    _check_diff(enriched)
    _check_retention(enriched, caplog)
    _check_purge(enriched)


def test_sql_item_by_table_and_key(tmp_path: Path, settings: Settings, embedder: Embedder) -> None:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, note TEXT, owner TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)",
                         [(1, "Acme", "renewal due in March", "bob"), (2, "Globex", "asked for a refund", "dana")])
    source = sql_source(f"sqlite:///{db}", "crm", "customers.id", access_column="customers.owner")
    service = Service.open(settings)
    service._embedder = embedder
    try:
        service.ledger.save_source(source)
        _sync(service, tmp_path, embedder, [source])
        bob = Principal("bob")
        report = item_history(service.ledger, bob, "customers:1")  # the root table names the source
        assert (report["source"], report["item"], [v["version"] for v in report["versions"]]) == ("crm", "1", [1])
        assert any("Acme" in r["text"] for r in item_version(service.ledger, bob, "crm:1")["records"])
        with pytest.raises(NotFound):
            item_history(service.ledger, bob, "customers:2")  # dana's account
    finally:
        service.close()
        service.ledger.close()
