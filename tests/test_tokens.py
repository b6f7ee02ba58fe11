"""Tokens: list, revoke (by principal or id), a revoked token refused at once with the one
error shape, and every step audited; through the API in-process, the CLI with no daemon, and
the CLI through a real server on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sleepd.api import create_app
from sleepd.audit import audit_entries
from sleepd.auth import create_token, list_tokens
from sleepd.cli import cli
from sleepd.service import Service
from sleepd.settings import Settings
from tests.helpers import free_port, wait_for


@pytest.fixture
def service(settings: Settings) -> Iterator[Service]:
    svc = Service.open(settings)
    yield svc
    svc.close()
    svc.ledger.close()


@pytest.fixture
def api(service: Service) -> TestClient:
    return TestClient(create_app(service))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["code"] == code
    return str(body["error"]["message"])


def test_revoked_token_is_refused_at_once_and_audited(service: Service, api: TestClient) -> None:
    root = create_token(service.ledger, "root", admin=True)
    alice = create_token(service.ledger, "alice", groups=["legal"])
    assert api.get("/v1/status", headers=_bearer(alice)).status_code == 200

    listed = api.get("/v1/tokens", headers=_bearer(root)).json()["tokens"]
    by_name = {t["principal"]: t for t in listed}
    assert by_name["alice"]["groups"] == ["legal"] and not by_name["alice"]["admin"] and by_name["root"]["admin"]
    assert by_name["alice"]["last_used_at"] is not None and by_name["alice"]["revoked_at"] is None
    assert all(alice not in json.dumps(t) and len(t["id"]) == 12 for t in listed)  # no secret, no full hash

    response = api.post("/v1/tokens/revoke", json={"name": "alice"}, headers=_bearer(root))
    assert response.status_code == 200 and response.json()["revoked"] == [by_name["alice"]["id"]]
    message = _assert_error(api.get("/v1/status", headers=_bearer(alice)), 401, "unauthorized")
    assert "revoked" in message
    _assert_error(api.post("/v1/query", json={"q": "anything"}, headers=_bearer(alice)), 401, "unauthorized")

    after = {t["principal"]: t for t in list_tokens(service.ledger)}
    assert after["alice"]["revoked_at"] is not None and after["alice"]["revoked_by"] == "root"
    assert after["root"]["revoked_at"] is None
    actions = [(e["actor"], e["action"]) for e in audit_entries(service.ledger)]
    assert ("cli", "token.create") in actions and ("root", "token.revoke") in actions
    assert actions.count(("alice", "token.refused")) == 2
    # the audit is readable by admins only
    entries = api.get("/v1/audit?action=token.refused", headers=_bearer(root)).json()["entries"]
    assert [e["detail"]["token"] for e in entries] == [by_name["alice"]["id"]] * 2
    assert "not an admin" in _assert_error(api.get("/v1/audit", headers=_bearer(
        create_token(service.ledger, "bob"))), 403, "forbidden")


def test_revoke_by_id_and_errors(service: Service, api: TestClient) -> None:
    root = create_token(service.ledger, "root", admin=True)
    first, second = create_token(service.ledger, "ci"), create_token(service.ledger, "ci")
    ids = [t["id"] for t in list_tokens(service.ledger) if t["principal"] == "ci"]
    response = api.post("/v1/tokens/revoke", json={"name": ids[0]}, headers=_bearer(root))
    assert response.json()["revoked"] == [ids[0]]
    statuses = sorted(api.get("/v1/status", headers=_bearer(t)).status_code for t in (first, second))
    assert statuses == [200, 401]  # the other token of the same principal still works

    assert "no live token" in _assert_error(
        api.post("/v1/tokens/revoke", json={"name": ids[0]}, headers=_bearer(root)), 404, "not_found")
    for name in ("nobody", "______", "%%%%%%", ids[1][:3]):  # no wildcard, no prefix too short to be safe
        _assert_error(api.post("/v1/tokens/revoke", json={"name": name}, headers=_bearer(root)), 404, "not_found")
    assert api.get("/v1/status", headers=_bearer(root)).status_code == 200
    _assert_error(api.post("/v1/tokens/revoke", json={"name": ""}, headers=_bearer(root)), 400, "bad_request")
    _assert_error(api.post("/v1/tokens/revoke", content=b"{", headers=_bearer(root)), 400, "bad_request")
    _assert_error(api.post("/v1/tokens/revoke", json={"name": "ci"}, headers=_bearer(second)), 403, "forbidden")
    _assert_error(api.get("/v1/tokens"), 401, "unauthorized")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {"SLEEPD_HOME": str(settings.home), "SLEEPD_API_PORT": str(settings.api_port), **extra}


def test_cli_without_daemon(settings: Settings, service: Service) -> None:
    alice = create_token(service.ledger, "alice", groups=["legal", "hr"])
    runner = CliRunner()
    listed = runner.invoke(cli, ["token", "list", "--json"], env=_env(settings))
    assert listed.exit_code == 0, listed.output
    assert [(t["principal"], t["groups"]) for t in json.loads(listed.output)["tokens"]] == [("alice", ["legal", "hr"])]
    table = runner.invoke(cli, ["token", "list"], env=_env(settings))
    assert "alice" in table.output and "legal,hr" in table.output

    revoked = runner.invoke(cli, ["token", "revoke", "alice"], env=_env(settings))
    assert revoked.exit_code == 0 and revoked.output.startswith("revoked 1 token of alice: ")
    api = TestClient(create_app(service))
    _assert_error(api.get("/v1/status", headers=_bearer(alice)), 401, "unauthorized")
    assert [e["actor"] for e in audit_entries(service.ledger, action="token.revoke")] == ["cli"]

    audit = runner.invoke(cli, ["audit", "--since", "1h", "--json"], env=_env(settings))
    assert [e["action"] for e in json.loads(audit.output)["entries"]] == ["token.create", "token.revoke",
                                                                          "token.refused"]

    # every CLI error is one line on stderr and a non-zero exit
    for args, words in ((["token", "revoke", "alice"], "no live token"), (["audit", "--since", "yesterday"],
                                                                          "is not a time")):
        done = subprocess.run([sys.executable, "-m", "sleepd", *args], capture_output=True, text=True,
                              env={**os.environ, **_env(settings)}, timeout=60)
        assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_through_a_running_daemon(settings: Settings, service: Service) -> None:
    root = create_token(service.ledger, "root", admin=True)
    create_token(service.ledger, "alice")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="the API server to start")
        env = _env(settings, SLEEPD_API_URL=f"http://127.0.0.1:{port}", SLEEPD_TOKEN=root)
        runner = CliRunner()
        revoked = runner.invoke(cli, ["token", "revoke", "alice"], env=env)
        assert revoked.exit_code == 0, revoked.output
        # the daemon acted for the token's principal: the CLI did not read the ledger itself
        assert [e["actor"] for e in audit_entries(service.ledger, action="token.revoke")] == ["root"]
        listed = json.loads(runner.invoke(cli, ["token", "list", "--json"], env=env).output)["tokens"]
        assert {t["principal"]: t["revoked_by"] for t in listed} == {"root": None, "alice": "root"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
