"""Access that an admin changes: a source's list (REST, CLI on the home, a changed declaration at a
daemon's start) and lists per path glob take effect on the very next query, in the ledger and in
the index's payloads, with no re-enrichment (versions, hashes and record ids unchanged); aggregates
built for the old groups are gone at once and rebuilt for the new ones, never naming an item their
reader may not see. Over the real pipeline: real model, real index, real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from sleepd.access import access_for, with_access
from sleepd.aggregates import is_aggregate
from sleepd.api import create_app
from sleepd.audit import audit_entries
from sleepd.auth import create_token
from sleepd.defaults import EMBED_DIM
from sleepd.embed import Embedder
from sleepd.errors import BadRequest, ConfigError
from sleepd.index import open_index
from sleepd.ledger import Ledger
from sleepd.schema import ItemRow, RecordRow, VersionRow
from sleepd.service import Service
from sleepd.settings import FileSource, Settings, load_settings
from sleepd.sql.config import sql_source
from tests.helpers import enrich_once, enrich_pending, free_port, wait_for
from tests.test_daemon import cli, settled

FILES = {
    "orbit/orbit_router.py": ('"""Routes orbitix requests to the right orbit handler."""\n\n'
                              "from orbit.orbit_cache import orbit_lookup\n\n\n"
                              "def orbit_route(path):\n    \"\"\"Pick the orbitix handler for a path.\"\"\"\n"
                              "    return orbit_lookup(path) or 'default'\n"),
    "orbit/orbit_cache.py": ('"""An LRU cache of orbitix routes."""\n\n_CACHE = {}\n\n\n'
                             "def orbit_lookup(path):\n    \"\"\"The cached orbitix handler of a path.\"\"\"\n"
                             "    return _CACHE.get(path)\n"),
    "private/zephyr_payroll.py": ('"""Monthly zephyr payroll: salaries and the bonus pool."""\n\n'
                                  "def zephyr_salary(grade):\n    \"\"\"The zephyr salary of a grade.\"\"\"\n"
                                  "    return 100_000 + grade * 12_000\n"),
    "tests/test_orbit_router.py": ("from orbit.orbit_router import orbit_route\n\n\n"
                                   "def test_orbit_route_default():\n    assert orbit_route('/x') == 'default'\n"),
}
PAYROLL = "private/zephyr_payroll.py"
ORBIT_Q = "How are orbitix requests routed by orbit_route?"
PAYROLL_Q = "What is the zephyr salary of a grade?"


def _sources(root: Path) -> list[FileSource]:
    return [FileSource(name="core", path=root / "core", profile="code", access=("eng",)),
            FileSource(name="handbook", path=root / "handbook", profile="docs")]


def _write(root: Path) -> None:
    for rel, text in FILES.items():
        (root / "core" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "core" / rel).write_text(text)
    (root / "handbook").mkdir()
    (root / "handbook" / "welcome.md").write_text("# Welcome\n\nHow to install the tools and find the rota.\n")


@pytest.fixture(scope="module")
def enriched(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    root = tmp_path_factory.mktemp("access")
    _write(root)
    return enrich_once(root, _sources(root), embedder)


@pytest.fixture
def root(tmp_path: Path, enriched: Path, settings: Settings) -> Path:
    """A copy of the enriched memory, its sources pointing at the copies."""
    for name in ("core", "handbook", "home"):
        shutil.copytree(enriched / name, tmp_path / name)
    ledger = Ledger(settings.database_url)
    for source in _sources(tmp_path):
        ledger.save_source(source)
    ledger.close()
    return tmp_path


@pytest.fixture
def service(settings: Settings, root: Path, embedder: Embedder) -> Iterator[Service]:
    svc = Service.open(settings)
    svc._embedder = embedder
    yield svc
    svc.close()
    svc.ledger.close()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as c:
        yield c


def _bearer(service: Service, name: str, *groups: str, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(service.ledger, name, groups, admin)}"}


def _items(client: TestClient, who: dict[str, str], q: str) -> set[tuple[str, str]]:
    body = client.post("/v1/query", json={"q": q, "budget": 4000}, headers=who).json()
    return {(r["source"], r["item"]) for r in body["records"]}


def _memory(service: Service) -> dict[str, Any]:
    """What re-enrichment would change: each file item's version, hash and record ids, and the
    number of versions of files."""
    with service.ledger.read() as s:
        items = [i for i in s.exec(select(ItemRow)).all() if not is_aggregate(i.key)]
        ids = {i.id for i in items}
        records = sorted(r.id for r in s.exec(select(RecordRow)).all() if r.item_id in ids)
        versions = sum(1 for v in s.exec(select(VersionRow)).all() if v.item_id in ids)
    return {"items": sorted((i.source, i.key, i.version, i.enriched_hash) for i in items),
            "records": records, "versions": versions}


def _record_access(service: Service, source: str) -> dict[str, dict[str, list[str]]]:
    """For each record of the source's files: its access list in the ledger and in the index payload."""
    with service.ledger.read() as s:
        rows = [r for r in s.exec(select(RecordRow).where(RecordRow.source == source)).all()
                if not is_aggregate(r.path)]
    payloads = service.index.payloads([r.id for r in rows])
    return {r.id: {"item": r.path, "ledger": json.loads(r.access),  # type: ignore[dict-item]
                   "index": payloads[r.id]["access"]} for r in rows}


def _aggregates(service: Service, source: str) -> list[tuple[list[str], str, list[str]]]:
    """Each current aggregate record of the source: its access, its text, the paths of its evidence."""
    with service.ledger.read() as s:
        rows = s.exec(select(RecordRow).where(RecordRow.source == source)).all()
    return [(json.loads(r.access), r.text, [e["path"] for e in json.loads(r.evidence)])
            for r in rows if is_aggregate(r.path)]


def test_a_changed_access_list_holds_from_the_next_query_without_re_enrichment(
        service: Service, client: TestClient) -> None:
    admin = _bearer(service, "root", admin=True)
    ann, lea = _bearer(service, "ann", "eng"), _bearer(service, "lea", "legal")
    before, core_records = _memory(service), len(_record_access(service, "core"))
    assert ("core", "orbit/orbit_router.py") in _items(client, ann, ORBIT_Q)
    assert not {s for s, _ in _items(client, lea, ORBIT_Q)} & {"core"}
    assert _aggregates(service, "core"), "the memory has aggregates to guard"

    r = client.post("/v1/sources/core/access", json={"access": ["legal"]}, headers=admin)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["source"] == "core" and receipt["access"] == ["legal"] and receipt["items"] == len(FILES)
    assert receipt["records"] == core_records > 0
    assert receipt["aggregates_retracted"] > 0
    # the very next query
    assert not {s for s, _ in _items(client, ann, ORBIT_Q)} & {"core"}
    assert ("core", "orbit/orbit_router.py") in _items(client, lea, ORBIT_Q)
    access = _record_access(service, "core")
    assert access and all(a["ledger"] == ["legal"] and a["index"] == ["legal"] for a in access.values()), access
    # no aggregate built for the old group is left for eng to read
    assert all("eng" not in a for a, _, _ in _aggregates(service, "core"))
    assert _memory(service) == before, "nothing was enriched again"

    # and back
    r = client.post("/v1/sources/core/access", json={"access": ["eng"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert ("core", "orbit/orbit_router.py") in _items(client, ann, ORBIT_Q)
    assert not {s for s, _ in _items(client, lea, ORBIT_Q)} & {"core"}
    assert all(a["index"] == ["eng"] for a in _record_access(service, "core").values())
    assert _memory(service) == before

    entries = audit_entries(service.ledger, action="access")
    assert [(e["actor"], e["detail"]["access"]) for e in entries] == [("root", ["legal"]), ("root", ["eng"])]
    assert all(e["at"] > 0 and e["detail"]["source"] == "core" for e in entries)


def test_access_per_path_glob_and_aggregates_rebuilt_for_the_new_groups(
        service: Service, client: TestClient, embedder: Embedder) -> None:
    admin = _bearer(service, "root", admin=True)
    ann, hal = _bearer(service, "ann", "eng"), _bearer(service, "hal", "hr")
    before = _memory(service)
    assert ("core", PAYROLL) in _items(client, ann, PAYROLL_Q)
    r = client.post("/v1/sources/core/access", json={"access": ["eng"], "paths": {"private/**": ["hr"]}},
                    headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == 1 and r.json()["paths"] == {"private/**": ["hr"]}
    assert ("core", PAYROLL) not in _items(client, ann, PAYROLL_Q)
    assert _items(client, hal, PAYROLL_Q) & {("core", PAYROLL)}
    assert not {k for s, k in _items(client, hal, ORBIT_Q) if s == "core" and k != PAYROLL}
    for a in _record_access(service, "core").values():
        wanted = ["hr"] if a["item"] == PAYROLL else ["eng"]
        assert a["ledger"] == wanted and a["index"] == wanted, a
    # retracted at once: until rebuilt, no aggregate of core at all
    assert _aggregates(service, "core") == []
    outcomes = enrich_pending(service, embedder)
    assert outcomes and all(o.status in ("published", "deleted", "unchanged") for o in outcomes)
    assert _memory(service) == before, "only aggregates were built again"
    aggregates = _aggregates(service, "core")
    assert {tuple(a) for a, _, _ in aggregates} == {("eng",), ("hr",)}, "one group per access list"
    for readers, text, paths in aggregates:
        if readers == ["eng"]:
            assert "zephyr" not in text.lower() and PAYROLL not in paths, text
        else:
            assert "orbit" not in text.lower() and all(p == PAYROLL or is_aggregate(p) for p in paths), text
    # the rebuilt aggregates are found by their readers only
    assert not any("zephyr" in r["text"].lower() for r in client.post(
        "/v1/query", json={"q": "repository map of the code: payroll and orbit", "budget": 4000},
        headers=ann).json()["records"])


def test_an_access_change_is_for_admins_and_bad_ones_are_refused(service: Service, client: TestClient) -> None:
    admin = _bearer(service, "root", admin=True)
    url = "/v1/sources/core/access"
    assert client.post(url, json={"access": ["x"]}, headers=_bearer(service, "ann", "eng")).status_code == 403
    assert client.post(url, json={"access": ["x"]}).status_code == 401
    for body, status, says in [
        ({"access": []}, 400, "'access' must be a non-empty list"),
        ({"access": "eng"}, 400, "'access' must be a non-empty list"),
        ({"access": ["eng"], "paths": ["private/**"]}, 400, "Must be a table"),
        ({"access": ["eng"], "paths": {"/etc/**": ["hr"]}}, 400, "relative to the source's folder"),
        ({"access": ["eng"], "paths": {"private/**": []}}, 400, "Name at least one principal"),
        ([1], 400, "JSON object"),
    ]:
        r = client.post(url, json=body, headers=admin)
        assert r.status_code == status and says in r.json()["error"]["message"], (body, r.text)
    r = client.post("/v1/sources/nope/access", json={"access": ["eng"]}, headers=admin)
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    crm = sql_source("sqlite:///crm.db", "crm", "accounts.id", access_column="accounts.readers")
    with pytest.raises(BadRequest, match=r"takes each item's readers from accounts\.readers"):
        with_access(crm, ["eng"])
    assert audit_entries(service.ledger, action="access") == []


def test_the_cli_changes_access_on_the_home_when_no_daemon_runs(
        root: Path, settings: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sleepd.cli import main

    monkeypatch.setenv("SLEEPD_HOME", str(settings.home))
    monkeypatch.setenv("SLEEPD_CONFIG", "")
    monkeypatch.setenv("SLEEPD_API_PORT", str(settings.api_port))
    main(["sources", "access", "core", "eng", "--path", "private/**=hr,legal", "--json"])  # exits only on error
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 1 and report["paths"] == {"private/**": ["hr", "legal"]}
    svc = Service.open(settings)
    svc._embedder = embedder
    try:
        access = _record_access(svc, "core")
        assert {tuple(a["index"]) for a in access.values() if a["item"] == PAYROLL} == {("hr", "legal")}
        assert {tuple(a["index"]) for a in access.values() if a["item"] != PAYROLL} == {("eng",)}
        assert [e["actor"] for e in audit_entries(svc.ledger, action="access")] == ["local-admin"]
    finally:
        svc.close()
        svc.ledger.close()
    main(["sources", "list"])
    assert "\taccess=eng\tpaths=private/**=hr,legal" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["sources", "access", "core", "eng", "--path", "private/**"])
    assert done.value.code == 2 and "is not GLOB=READER" in capsys.readouterr().err


@pytest.mark.parametrize(("table", "says"), [
    ('access_paths = ["private/**"]', "Config 'sources[0].access_paths' has value ['private/**']. Must be a table"),
    ('access_paths = {"private/**" = []}', "Name at least one principal or group"),
    ('access_paths = {"/abs/**" = ["hr"]}', "has glob '/abs/**'. Use a path glob relative"),
    ('access_paths = {"private/**" = [1]}', "has readers [1]"),
])
def test_bad_access_paths_in_the_config_name_the_key(tmp_path: Path, table: str, says: str) -> None:
    config = tmp_path / "sleepd.toml"
    config.write_text(f'[[sources]]\nname = "core"\npath = "."\n{table}\n')
    with pytest.raises(ConfigError) as raised:
        load_settings({"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)})
    assert says in raised.value.message


def test_access_paths_in_the_config_keep_their_order(tmp_path: Path) -> None:
    config = tmp_path / "sleepd.toml"
    config.write_text('[[sources]]\nname = "core"\npath = "."\naccess = ["eng"]\n'
                      '[sources.access_paths]\n"private/keys/**" = ["ops"]\n"private/**" = ["legal", "hr"]\n'
                      '\n[[sources]]\nname = "crm"\nkind = "sql"\nurl = "sqlite:///x.db"\nkey = "a.id"\n'
                      '[sources.access_paths]\n"x" = ["y"]\n')
    with pytest.raises(ConfigError, match=r"'sources\[1\]\.access_paths' is for files sources"):
        load_settings({"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)})
    config.write_text(config.read_text().split("\n[[sources]]\nname = \"crm\"")[0])
    source = load_settings({"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)}).sources[0]
    assert isinstance(source, FileSource)
    assert source.access_paths == (("private/keys/**", ("ops",)), ("private/**", ("legal", "hr")))
    assert access_for(source, "private/keys/a.pem") == ("ops",)  # the first glob that matches wins
    assert access_for(source, "private/b.md") == ("legal", "hr")
    assert access_for(source, "public/private/c.md") == ("eng",)  # anchored at the source's folder
    assert access_for(source, "readme.md") == ("eng",)


def _daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sleepd", "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: proc.poll() is not None or cli(env, "check", check=False).returncode == 0,
             timeout=90, interval=0.5, what="daemon healthy")
    assert proc.poll() is None, log.read_text()
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _asked(env: dict[str, str], token: str, q: str) -> set[str]:
    """The items of the one source a principal's query returns, through the daemon's API."""
    r = httpx.post(f"http://127.0.0.1:{env['SLEEPD_API_PORT']}/v1/query", json={"q": q, "budget": 4000},
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    return {rec["item"] for rec in r.json()["records"]}


def test_a_running_daemon_and_a_changed_config_file_change_access_in_place(tmp_path: Path) -> None:
    """`sleepd sources access` through a running daemon, then the config file's list changed while it
    was stopped: both hold on the next query, and neither enriches anything again."""
    repo = tmp_path / "proj"
    for rel, text in FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    config = tmp_path / "sleepd.toml"
    declared = f'[[sources]]\nname = "proj"\npath = "{repo}"\nprofile = "code"\n'
    config.write_text(declared + 'access = ["eng"]\n')
    env = {**os.environ, "SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_API_PORT": str(free_port()),
           "SLEEPD_CONFIG": str(config), "SLEEPD_IDLE_SECONDS": "1", "SLEEPD_DEBOUNCE_SECONDS": "0.3",
           "SLEEPD_BUSY_LOAD_PER_CORE": "1000"}
    tokens = {name: cli(env, "token", "create", name, "--group", group).stdout.strip()
              for name, group in (("ann", "eng"), ("lea", "legal"), ("otto", "ops"), ("hal", "hr"))}
    ledger = Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    try:
        proc = _daemon(env, tmp_path / "daemon.log")
        try:
            wait_for(lambda: settled(env), timeout=180, interval=1.0, what="first pass enriched")
            versions = {k: (i.version, i.enriched_hash) for k, i in ledger.known_items("proj").items()}
            assert "orbit/orbit_router.py" in _asked(env, tokens["ann"], ORBIT_Q)
            report = json.loads(cli(env, "sources", "access", "proj", "legal", "--json").stdout)
            assert report["items"] == len(FILES) and report["access"] == ["legal"]
            assert not _asked(env, tokens["ann"], ORBIT_Q) & set(FILES)
            assert "orbit/orbit_router.py" in _asked(env, tokens["lea"], ORBIT_Q)
        finally:
            _stop(proc)
        assert [e["actor"] for e in audit_entries(ledger, action="access")] == ["admin"]  # the daemon's token

        config.write_text(declared + 'access = ["ops"]\n[sources.access_paths]\n"private/**" = ["hr"]\n')
        proc = _daemon(env, tmp_path / "daemon.log")
        try:
            assert not _asked(env, tokens["lea"], ORBIT_Q) & set(FILES)
            assert "orbit/orbit_router.py" in _asked(env, tokens["otto"], ORBIT_Q)
            assert PAYROLL not in _asked(env, tokens["otto"], PAYROLL_Q)
            assert PAYROLL in _asked(env, tokens["hal"], PAYROLL_Q)
            assert not _asked(env, tokens["hal"], ORBIT_Q) & (set(FILES) - {PAYROLL})
        finally:
            _stop(proc)
        assert {k: (i.version, i.enriched_hash) for k, i in ledger.known_items("proj").items()} == versions
        entries = audit_entries(ledger, action="access")
        assert [e["actor"] for e in entries] == ["admin", "config"]
        assert entries[-1]["detail"]["paths"] == {"private/**": ["hr"]}
        with ledger.read() as s:
            rows = [r for r in s.exec(select(RecordRow).where(RecordRow.source == "proj")).all()
                    if not is_aggregate(r.path)]
    finally:
        ledger.close()
    index = open_index(tmp_path / "home", EMBED_DIM)
    try:
        payloads = index.payloads([r.id for r in rows])
    finally:
        index.close()
    assert {(r.path == PAYROLL, tuple(payloads[r.id]["access"])) for r in rows} == {(True, ("hr",)), (False, ("ops",))}  # type: ignore[arg-type]
