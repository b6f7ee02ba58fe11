"""The HTTP API in-process over the real pipeline: query shape and budget, auth, the one
error shape, permissions, purge, refresh and where its items stand, reindex, stale items."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from sleepd.api import create_app
from sleepd.auth import Principal, create_token
from sleepd.embed import Embedder
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.tokens import get_tokenizer
from sleepd.watchers import Watchers
from tests.helpers import click_repo, enrich_once, enrich_pending


def _write_repo(root: Path) -> None:
    click_repo(root / "repo", ("core.py", "decorators.py", "termui.py"),
               {"README.md": "# Widgets\n\nHow to install.\n\n## Redirects\n\nRedirects follow 30x.\n"})
    click_repo(root / "secret", (), {"salaries.md": "# Salaries\n\nThe payroll budget for engineering is 4.2M.\n"})


def _sources(root: Path) -> list[FileSource]:
    return [FileSource(name="click", path=root / "repo"),
            FileSource(name="hr", path=root / "secret", access=("hr",))]


@pytest.fixture(scope="module")
def enriched(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """The sources and a home enriched once for the module; each test gets its own copy."""
    root = tmp_path_factory.mktemp("enriched")
    _write_repo(root)
    return enrich_once(root, _sources(root), embedder)


@pytest.fixture
def repo(tmp_path: Path, enriched: Path) -> Path:
    for name in ("repo", "secret", "home"):
        shutil.copytree(enriched / name, tmp_path / name)
    return tmp_path / "repo"


@pytest.fixture
def service(settings: Settings, repo: Path, embedder: Embedder) -> Iterator[Service]:
    svc = Service.open(settings)
    svc._embedder = embedder
    for source in _sources(repo.parent):  # the copies live under this test's tmp_path
        svc.ledger.save_source(source)
    assert not svc.ledger.due_changes(10, lease_seconds=1), "the copied home is fully enriched"
    yield svc
    svc.close()
    svc.ledger.close()


@pytest.fixture
def admin(service: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(service.ledger, 'root', admin=True)}"}


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as c:
        yield c


def test_query_returns_the_symbol_with_evidence_within_budget(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/v1/query", json={"q": "how does the decorator create a click command?", "budget": 512},
                    headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"query", "budget", "tokens_used", "records", "stale_items", "note", "route", "context"}
    assert 0 < body["tokens_used"] <= 512 and body["note"] is None
    # which records served it: enriched memory, the source's raw windows, or both
    raw = [rec["kind"] == "window" for rec in body["records"]]
    assert body["route"] == ("raw" if all(raw) else "mixed" if any(raw) else "memory")
    assert body["context"] == "\n".join(rec["header"] + rec["text"] for rec in body["records"])
    first = body["records"][0]
    assert set(first) >= {"text", "kind", "source", "item", "version", "score", "fresh", "evidence"}
    items = [rec["item"] for rec in body["records"][:3]]
    assert "decorators.py" in items
    ev = first["evidence"][0]
    assert set(ev) == {"path", "start_line", "end_line"} and ev["start_line"] <= ev["end_line"]


def test_tokens_used_is_a_real_count_and_never_exceeds_the_budget(service: Service,
                                                                  client: TestClient, admin: dict[str, str]) -> None:
    tok = get_tokenizer("cl100k_base")
    for budget in (16, 100, 300, 2000):
        body = client.post("/v1/query", json={"q": "progress bar rendering", "budget": budget}, headers=admin).json()
        assert body["tokens_used"] <= budget
        cited = set()
        for rec in body["records"]:
            span = rec["evidence"][0]
            lines = f"{span['start_line']}-{span['end_line']}"
            # an item's first record names it in full; the next ones say "same item"
            full = f"[{rec['kind']}] {rec['source']}:{rec['item']}:{lines}\n"
            assert rec["header"] == (f"[{rec['kind']}] same item, lines {lines}\n" if rec["item"] in cited else full)
            cited.add(rec["item"])
        assert tok.count(body["context"]) == body["tokens_used"], "counted over exactly the returned text"
    assert body["records"], "a 2000-token budget returns something"


def test_evidence_lines_point_at_the_symbol(client: TestClient, admin: dict[str, str], repo: Path) -> None:
    body = client.post("/v1/query", json={"q": "prompt the user for input on the terminal", "budget": 1024},
                       headers=admin).json()
    symbols = [r for r in body["records"] if r["kind"] == "symbol"]
    assert symbols
    for rec in symbols:
        ev = rec["evidence"][0]
        lines = (repo / ev["path"]).read_text().splitlines()
        name = rec["title"].rsplit(".", 1)[-1]
        assert name in lines[ev["start_line"] - 1] or name in "\n".join(lines[ev["start_line"] - 1:ev["end_line"]])


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"q": "", "budget": 100}, 400, "non-empty"),
    ({"q": "   ", "budget": 100}, 400, "non-empty"),
    ({"budget": 100}, 400, "non-empty"),
    ({"q": "x", "budget": 0}, 400, "out of range"),
    ({"q": "x", "budget": 10**9}, 400, "out of range"),
    ({"q": "x", "budget": "lots"}, 400, "integer"),
    ({"q": "x" * 9000, "budget": 100}, 400, "limit"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_requests_get_the_one_error_shape(client: TestClient, admin: dict[str, str], body: object,
                                              status: int, fragment: str) -> None:
    r = client.post("/v1/query", json=body, headers=admin)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"status", "code", "message"} and error["status"] == status
    assert fragment in error["message"]


def test_error_shape_for_auth_json_and_routes(client: TestClient, admin: dict[str, str]) -> None:
    cases = [
        (client.post("/v1/query", json={"q": "x"}), 401, "unauthorized"),
        (client.post("/v1/query", json={"q": "x"}, headers={"Authorization": "Bearer nope"}), 401, "unauthorized"),
        (client.get("/v1/status"), 401, "unauthorized"),
        (client.post("/v1/query", content=b"{not json", headers=admin), 400, "bad_request"),
        (client.get("/v1/nothing", headers=admin), 404, "not_found"),
        (client.get("/v1/query", headers=admin), 405, "method_not_allowed"),
        (client.post("/v1/refresh", json={"source": "nope"}, headers=admin), 404, "not_found"),
        (client.post("/v1/purge", json={}, headers=admin), 400, "bad_request"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json() == {"error": {"status": status, "code": code,
                                             "message": response.json()["error"]["message"]}}
    assert client.get("/health").status_code == 200  # the one endpoint without a token


def test_permissions_travel_to_the_query(service: Service, client: TestClient, admin: dict[str, str]) -> None:
    outsider = {"Authorization": f"Bearer {create_token(service.ledger, 'bob')}"}
    hr = {"Authorization": f"Bearer {create_token(service.ledger, 'carol', groups=['hr'])}"}
    q = {"q": "payroll budget for engineering", "budget": 2000}
    sources_seen = {r["source"] for r in client.post("/v1/query", json=q, headers=outsider).json()["records"]}
    assert "hr" not in sources_seen
    hr_records = client.post("/v1/query", json=q, headers=hr).json()["records"]
    assert hr_records[0]["source"] == "hr" and "4.2M" in hr_records[0]["text"]
    r = client.post("/v1/purge", json={"source": "hr"}, headers=outsider)
    assert r.status_code == 403


def test_purge_removes_records_index_points_and_query_log(service: Service, client: TestClient,
                                                          admin: dict[str, str]) -> None:
    q = {"q": "payroll budget for engineering", "budget": 1000}
    assert client.post("/v1/query", json=q, headers=admin).json()["records"][0]["source"] == "hr"
    before = service.index.count()
    r = client.post("/v1/purge", json={"source": "hr"}, headers=admin)
    assert r.status_code == 200
    receipt = r.json()
    # the file and the source's overview aggregate, one version each
    assert receipt["items"] == 1 and receipt["aggregates"] == 1 and receipt["records"] >= 1 and receipt["versions"] == 2
    assert receipt["index_points"] == receipt["records"] and receipt["query_log"] == 1
    assert service.index.count() == before - receipt["records"]
    sources = {rec["source"] for rec in client.post("/v1/query", json=q, headers=admin).json()["records"]}
    assert "hr" not in sources


def test_purge_dry_run_removes_nothing_and_a_glob_matching_nothing_is_refused(
        service: Service, client: TestClient, admin: dict[str, str]) -> None:
    before = service.index.count()
    r = client.post("/v1/purge", json={"source": "click", "path": "*.py", "dry_run": True}, headers=admin)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["dry_run"] is True and preview["items"] == 3 and preview["records"] > 3
    assert preview["keys"] == ["click:core.py", "click:decorators.py", "click:termui.py"]
    assert service.index.count() == before and service.ledger.purged_paths() == {}
    # a typo matches nothing: refused, nothing excluded
    r = client.post("/v1/purge", json={"source": "click", "path": "*.pyy"}, headers=admin)
    assert r.status_code == 400 and "matches '*.pyy'" in r.json()["error"]["message"]
    assert service.ledger.purged_paths() == {}
    # unless the admin means it: the glob is kept out of memory from now on
    r = client.post("/v1/purge", json={"source": "click", "path": "vendor/**", "keep_excluded": True}, headers=admin)
    assert r.status_code == 200 and r.json()["items"] == 0
    assert service.ledger.purged_paths() == {"click": ["vendor/**"]}


def test_reindex_gives_the_same_results(service: Service, client: TestClient, admin: dict[str, str]) -> None:
    q = {"q": "echo a message to standard output", "budget": 1500}
    before = client.post("/v1/query", json=q, headers=admin).json()
    ids_before = service.index.ids()
    r = client.post("/v1/reindex", headers=admin)
    assert r.json()["points"] == len(ids_before)
    assert service.index.ids() == ids_before
    after = client.post("/v1/query", json=q, headers=admin).json()
    assert [(x["item"], x["text"]) for x in after["records"]] == [(x["item"], x["text"]) for x in before["records"]]


def test_changed_item_is_marked_stale_with_its_raw_region(service: Service, client: TestClient,
                                                          admin: dict[str, str], repo: Path,
                                                          settings: Settings) -> None:
    readme = repo / "README.md"
    readme.write_text(readme.read_text().replace("Redirects follow 30x.", "Redirects are capped at 7 hops."))
    Watchers(service.ledger.sources(), service.ledger, settings).scan_all()
    body = client.post("/v1/query", json={"q": "how are redirects handled", "budget": 1000}, headers=admin).json()
    readme_recs = [r for r in body["records"] if r["item"] == "README.md"]
    assert readme_recs and not readme_recs[0]["fresh"]
    assert {"source": "click", "item": "README.md", "state": "pending"} in body["stale_items"]
    assert any("7 hops" in r["text"] for r in readme_recs)


def test_a_blocked_ledger_write_does_not_stall_health(service: Service, client: TestClient,
                                                      admin: dict[str, str], settings: Settings) -> None:
    """A refresh waiting for the SQLite write lock runs off the event loop: /health still answers."""
    entered = threading.Event()

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("BEGIN IMMEDIATE") and threading.current_thread() is not threading.main_thread():
            entered.set()  # a write transaction is starting: the one the held lock blocks

    holder = sqlite3.connect(settings.database_url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    event.listen(service.ledger.engine, "before_cursor_execute", on_execute)
    refreshed: list[int] = []
    healthy: list[int] = []
    refresh = threading.Thread(target=lambda: refreshed.append(
        client.post("/v1/refresh", json={"source": "click"}, headers=admin).status_code))
    health = threading.Thread(target=lambda: healthy.append(client.get("/health").status_code))
    try:
        refresh.start()
        assert entered.wait(30), "the refresh never began its write"
        health.start()
        health.join(timeout=10)
        assert healthy == [200], "/health stalled behind a refresh waiting for the ledger lock"
        assert refresh.is_alive() and not refreshed, "the refresh was still blocked by the held lock"
    finally:
        holder.rollback()
        holder.close()
        refresh.join(timeout=60)
        health.join(timeout=60)
        event.remove(service.ledger.engine, "before_cursor_execute", on_execute)
    assert refreshed == [200]


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)


def test_binary_files_are_skipped_in_status_not_failures(make_settings: Callable[..., Settings], tmp_path: Path,
                                                         embedder: Embedder) -> None:
    """Images and NUL-byte files are counted as skipped, with the reason; invalid UTF-8 and
    too-large files stay failures. A skipped file that becomes text is enriched; a text file
    that becomes binary leaves memory and joins the skipped."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.md").write_text("# Notes\n\nRelease on Fridays.\n")
    (folder / "logo.png").write_bytes(PNG)
    (folder / "blob.bin.txt").write_bytes(b"\x00\x01binary" * 100)
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "huge.txt").write_text("word " * 2000)
    settings = make_settings(max_file_bytes=4096)
    svc = Service.open(settings)
    svc._embedder = embedder
    source = FileSource(name="docs", path=folder)
    svc.ledger.save_source(source)
    watchers = Watchers([source], svc.ledger, settings)
    token = {"Authorization": f"Bearer {create_token(svc.ledger, 'ann')}"}

    def status() -> dict[str, Any]:
        with TestClient(create_app(svc)) as c:
            r = c.get("/v1/status", headers=token)
        assert r.status_code == 200, r.text
        entry: dict[str, Any] = r.json()["sources"][0]
        return entry

    try:
        watchers.scan_all()
        enrich_pending(svc, embedder)
        docs = status()
        assert docs["skipped"]["count"] == 2
        assert docs["skipped"]["reasons"] == {"binary file (image)": 1, "binary file (NUL bytes)": 1}
        assert {s["item"] for s in docs["skipped"]["items"]} == {"logo.png", "blob.bin.txt"}
        failed = {f["item"]: f["error"] for f in docs["failed"]}
        assert set(failed) == {"latin1.txt", "huge.txt"}
        assert "UTF-8" in failed["latin1.txt"] and "too large" in failed["huge.txt"]
        assert docs["items"]["enriched"] == 1 and docs["items"]["failed"] == 2

        (folder / "blob.bin.txt").write_text("The blob is text now.\n")
        (folder / "notes.md").write_bytes(b"\x00" * 32)
        watchers.scan_all()
        enrich_pending(svc, embedder)
        docs = status()
        assert {s["item"]: s["reason"] for s in docs["skipped"]["items"]} == {
            "logo.png": "binary file (image)", "notes.md": "binary file (NUL bytes)"}
        assert docs["items"]["enriched"] == 1 and docs["items"]["deleted"] == 1, docs["items"]
        answered = {r.item for r in svc.query("Is the blob text now?", 400, Principal("ann")).records}
        assert "blob.bin.txt" in answered and "notes.md" not in answered
    finally:
        svc.close()
        svc.ledger.close()


def test_refresh_names_its_items_and_says_when_they_are_fresh(service: Service, client: TestClient,
                                                              admin: dict[str, str], embedder: Embedder) -> None:
    """POST /v1/refresh returns the items it queued; POST /v1/refresh/state says each is waiting
    until the pipeline has run it, then fresh; an id that no longer exists is gone."""
    body = client.post("/v1/refresh", json={"source": "click", "path": "*.py", "force": True}, headers=admin).json()
    assert body["queued"] == 3 and [(i["source"], i["item"]) for i in body["items"]] == [
        ("click", "core.py"), ("click", "decorators.py"), ("click", "termui.py")]
    ids = [i["id"] for i in body["items"]]
    state = client.post("/v1/refresh/state", json={"items": [*ids, 987654]}, headers=admin).json()
    assert [i["state"] for i in state["items"]] == ["waiting", "waiting", "waiting", "gone"]
    assert (state["waiting"], state["fresh"], state["gone"]) == (3, 0, 1)
    enrich_pending(service, embedder)
    state = client.post("/v1/refresh/state", json={"items": ids}, headers=admin).json()
    assert [(i["item"], i["state"], i["version"]) for i in state["items"]] == [
        ("core.py", "fresh", 2), ("decorators.py", "fresh", 2), ("termui.py", "fresh", 2)]  # forced: a new version
    for bad in ({"items": "core.py"}, {"items": [True]}, {}):
        r = client.post("/v1/refresh/state", json=bad, headers=admin)
        assert r.status_code == 400 and "'items' must be a list of item ids" in r.json()["error"]["message"], bad
    r = client.post("/v1/refresh/state", json=[1, 2], headers=admin)
    assert r.status_code == 400 and r.json()["error"]["message"] == "request body must be a JSON object"
    reader = {"Authorization": f"Bearer {create_token(service.ledger, 'ana')}"}
    assert client.post("/v1/refresh/state", json={"items": ids}, headers=reader).status_code == 403


def test_refresh_wait_gives_up_after_its_timeout_naming_what_waits(
        service: Service, settings: Settings, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A daemon's API with no worker behind it: nothing gets fresh, so `refresh --wait` exits 1
    after its timeout, naming the item still waiting."""
    import uvicorn

    from sleepd.cli import main
    from tests.helpers import free_port, wait_for

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the API")
    monkeypatch.setenv("SLEEPD_HOME", str(settings.home))
    monkeypatch.setenv("SLEEPD_CONFIG", "")
    monkeypatch.setenv("SLEEPD_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SLEEPD_TOKEN", admin["Authorization"].removeprefix("Bearer "))
    try:
        with pytest.raises(SystemExit) as exited:
            main(["refresh", "--path", "README.md", "--force", "--wait", "--timeout", "1"])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    out, err = capsys.readouterr()
    assert exited.value.code == 1
    queued, waited = out.splitlines()
    assert queued == "queued 1 items for refresh (forced): click:README.md"
    assert waited.startswith("0 fresh, 0 failed, 0 gone, 1 not fresh yet, after ")
    assert float(waited.split("after ")[1].removesuffix(" s")) >= 1.0
    assert "1 of 1 items not fresh: click:README.md waiting" in err and "\n" not in err.strip()
