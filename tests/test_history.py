"""History, versions and diffs of items over the real pipeline (real files, an SQLite database,
the real model): every version listed, the current one's records shown with their evidence,
older ones said to be no longer kept, permissions (404, never content), the REST endpoints, the
CLI with no daemon, and one history on PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sleepd.api import create_app
from sleepd.auth import Principal, create_token
from sleepd.cli import cli
from sleepd.embed import Embedder
from sleepd.errors import BadRequest, NotFound
from sleepd.history import diff_versions, item_history, item_version
from sleepd.service import Service
from sleepd.settings import FileSource, Settings, Source, sql_source
from sleepd.watchers import Watchers
from tests.helpers import enrich_pending, free_port, wait_for

ADMIN = Principal("root", admin=True)


def _section(title: str, sentence: str) -> str:
    """A section long enough (~1,800 characters) to be a record of its own, not merged."""
    return f"## {title}\n\n" + " ".join(sentence.format(i=i) for i in range(1, 26)) + "\n\n"


NOTES_V1 = "# Notes\n\n" + _section("Deploys", "Deploy train {i} leaves on Tuesday once every check is green.")
NOTES_V2 = NOTES_V1 + _section("Rollbacks", "Rollback drill {i} needs two approvals from the on-call team.")


def _sources(root: Path) -> list[Source]:
    return [FileSource(name="docs", path=root / "docs", profile="docs"),
            FileSource(name="hr", path=root / "hr", profile="docs", access=("hr",))]


def _sync(service: Service, root: Path, embedder: Embedder, sources: list[Source] | None = None) -> None:
    Watchers(sources or _sources(root), service.ledger, service.settings).scan_all()
    enrich_pending(service, embedder)


@pytest.fixture
def enriched(tmp_path: Path, make_settings: Callable[..., Settings], embedder: Embedder,
             request: pytest.FixtureRequest) -> Iterator[Service]:
    """docs/notes.md published twice (v1, then v2 with a new section), hr/salaries.md once."""
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
    (tmp_path / "docs" / "notes.md").write_text(NOTES_V2)
    _sync(service, tmp_path, embedder)
    yield service
    service.close()
    service.ledger.close()


def _check_history(service: Service) -> None:
    report = item_history(service.ledger, ADMIN, "notes.md")
    assert (report["source"], report["state"], report["current_version"]) == ("docs", "enriched", 2)
    v2, v1 = report["versions"]
    assert (v2["version"], v2["status"], v2["current"]) == (2, "published", True)
    assert (v1["version"], v1["status"], v1["current"]) == (1, "superseded", False)
    assert v1["content_hash"] != v2["content_hash"] and v1["pipeline_version"] == v2["pipeline_version"]
    assert v2["created_at"] >= v1["created_at"] and v2["n_records"] > v1["n_records"] > 0
    assert sum(v2["kinds"].values()) == v2["n_records"] and v1["kinds"] is None  # v1's records are gone


def test_history_lists_every_version(enriched: Service) -> None:
    _check_history(enriched)


def test_show_current_records_with_evidence_and_says_when_gone(enriched: Service) -> None:
    current = item_version(enriched.ledger, ADMIN, "notes.md")
    assert current["version"]["version"] == 2 and current["records_kept"] and current["note"] is None
    assert len(current["records"]) == current["version"]["n_records"]
    assert any("two approvals" in r["text"] for r in current["records"])
    assert all(e["path"] == "notes.md" and e["start_line"] >= 1 for r in current["records"] for e in r["evidence"])
    old = item_version(enriched.ledger, ADMIN, "notes.md", version=1)
    assert old["version"]["n_records"] > 0 and not old["records_kept"] and old["records"] == []
    assert "version 1 are no longer kept" in old["note"]
    with pytest.raises(NotFound, match="no version 3"):
        item_version(enriched.ledger, ADMIN, "notes.md", version=3)
    with pytest.raises(BadRequest):
        item_version(enriched.ledger, ADMIN, "notes.md", version=0)


def test_diff(enriched: Service) -> None:
    across = diff_versions(enriched.ledger, ADMIN, "notes.md", 1, 2)
    assert across["content_changed"] and not across["pipeline_changed"] and across["records_delta"] > 0
    assert not across["records_kept"] and across["added"] is None and "version 1" in across["note"]
    same = diff_versions(enriched.ledger, ADMIN, "docs:notes.md", 2, 2)
    assert same["records_kept"] and same["added"] == same["removed"] == same["changed"] == []
    assert not same["content_changed"]


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
    assert [v["version"] for v in history["versions"]] == [2, 1]
    shown = api.get("/v1/items/docs:notes.md?version=2", headers=bob).json()
    assert shown["records_kept"] and shown["records"][0]["evidence"]
    assert not api.get("/v1/items/notes.md?version=1", headers=bob).json()["records_kept"]
    assert api.get("/v1/items/notes.md/diff?a=1&b=2", headers=bob).json()["content_changed"]
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
    assert [v["current"] for v in json.loads(history.output)["versions"]] == [True, False]
    table = runner.invoke(cli, ["history", "notes.md"], env=env).output
    assert "docs:notes.md" in table and "current version" in table
    shown = runner.invoke(cli, ["show", "notes.md"], env=env).output
    assert "two approvals" in shown and "notes.md:" in shown
    old = runner.invoke(cli, ["show", "notes.md", "--version", "1"], env=env).output
    assert "no longer kept" in old
    diff = runner.invoke(cli, ["diff", "notes.md", "1", "2"], env=env).output
    assert "content changed" in diff and "no longer kept" in diff
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
        assert not shown["records_kept"]
        hidden = runner.invoke(cli, ["show", "hr:salaries.md"], env=env)
        assert hidden.exit_code != 0 and getattr(hidden.exception, "code", None) == "not_found"
        audit = runner.invoke(cli, ["audit"], env=env)
        assert getattr(audit.exception, "code", None) == "forbidden"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("enriched", ["postgresql"], indirect=True)
def test_history_on_postgresql(enriched: Service) -> None:
    assert enriched.ledger.url.startswith("postgresql")
    _check_history(enriched)


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
