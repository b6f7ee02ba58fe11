"""MCP as assistants use it: `sleepd mcp` over stdio against a real API over HTTP, and the
daemon's own streamable-HTTP endpoint (/mcp) with the package's client and the API's tokens."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from sleepd import defaults
from sleepd.api import create_app
from sleepd.auth import create_token, revoke
from sleepd.embed import Embedder
from sleepd.ledger import Ledger
from sleepd.pack import ROUTES
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.tokens import get_tokenizer
from sleepd.watchers import Watchers
from tests.helpers import enrich_pending, free_port, wait_for


@pytest.fixture
def api(settings: Settings, tmp_path: Path, embedder: Embedder) -> Iterator[tuple[str, str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "billing.py").write_text(
        'def refund_invoice(invoice_id, reason):\n    """Refund a paid invoice and email the customer."""\n'
        "    return invoice_id, reason\n")
    service = Service.open(settings)
    service._embedder = embedder
    service.ledger.save_source(FileSource(name="repo", path=repo))
    Watchers(service.ledger.sources(), service.ledger, settings).scan_all()
    enrich_pending(service, embedder)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="off"))  # as the daemon runs it
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the API")
    yield f"http://127.0.0.1:{port}", create_token(service.ledger, "assistant")
    server.should_exit = True
    thread.join(timeout=10)
    service.close()
    service.ledger.close()


def _call(env: dict[str, str], tool: str, args: dict[str, Any]) -> tuple[bool, Any]:
    async def run() -> tuple[bool, Any]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "sleepd", "mcp"], env=env)
        async with Client(params, read_timeout_seconds=60) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"query", "status", "refresh"} <= names
            result = await client.call_tool(tool, args)
            text = "".join(getattr(c, "text", "") for c in result.content)
            return bool(result.is_error), (text if result.is_error else json.loads(text))

    return asyncio.run(run())


def test_mcp_query_returns_cited_records(api: tuple[str, str], tmp_path: Path) -> None:
    url, token = api
    env = {**os.environ, "SLEEPD_HOME": str(tmp_path / "client-home"), "SLEEPD_API_URL": url, "SLEEPD_TOKEN": token}
    is_error, body = _call(env, "query", {"q": "how do we refund an invoice?", "budget": 200})
    assert not is_error, body
    assert body["tokens_used"] <= 200
    assert set(body) == {"context", "tokens_used", "budget", "stale_items", "note", "route"} and body["route"] in ROUTES
    first_line = body["context"].split("\n")[0]
    assert first_line.startswith("[") and first_line.split(" ")[1].startswith("repo:billing.py:1-")
    assert get_tokenizer(defaults.TOKENIZER).count(body["context"]) == body["tokens_used"]
    is_error, message = _call(env, "query", {"q": "  ", "budget": 200})
    assert is_error and "non-empty" in message
    is_error, message = _call(env, "refresh", {})  # not an admin token
    assert is_error and "forbidden" in message


def test_mcp_without_a_daemon_says_how_to_start_it(tmp_path: Path) -> None:
    env = {**os.environ, "SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_API_URL": f"http://127.0.0.1:{free_port()}"}
    is_error, message = _call(env, "status", {})
    assert is_error and "sleepd run" in message and f"home {tmp_path / 'home'}" in message


def _http_call(url: str, token: str, tool: str, args: dict[str, Any]) -> tuple[set[str], bool, Any]:
    """The ``mcp`` package's own streamable-HTTP client, as a remote assistant connects."""
    async def run() -> tuple[set[str], bool, Any]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http),
                                read_timeout_seconds=60) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool(tool, args)
            text = "".join(getattr(c, "text", "") for c in result.content)
            return names, bool(result.is_error), (text if result.is_error else json.loads(text))

    return asyncio.run(run())


def test_mcp_over_streamable_http_in_the_daemon(api: tuple[str, str]) -> None:
    url, token = api
    names, is_error, body = _http_call(url, token, "query", {"q": "how do we refund an invoice?", "budget": 200})
    assert {"query", "status", "refresh"} <= names
    assert not is_error, body
    assert body["tokens_used"] <= 200
    assert set(body) == {"context", "tokens_used", "budget", "stale_items", "note", "route"} and body["route"] in ROUTES
    first_line = body["context"].split("\n")[0]
    assert first_line.startswith("[") and first_line.split(" ")[1].startswith("repo:billing.py:1-")
    assert "def refund_invoice" in body["context"]
    assert get_tokenizer(defaults.TOKENIZER).count(body["context"]) == body["tokens_used"]
    _, is_error, status = _http_call(url, token, "status", {})
    assert not is_error and "repo" in json.dumps(status)
    _, is_error, message = _http_call(url, token, "refresh", {})  # the tools answer as the token's principal
    assert is_error and "forbidden" in message and "'assistant'" in message
    _, is_error, message = _http_call(url, token, "query", {"q": "  ", "budget": 200})
    assert is_error and "non-empty" in message


def test_mcp_over_http_refuses_a_missing_bad_or_revoked_token(api: tuple[str, str], settings: Settings) -> None:
    url, token = api
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    ok = httpx.post(f"{url}/mcp", json=initialize, headers={**accept, "Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["result"]["serverInfo"]["name"] == "sleepd"
    for headers in ({}, {"Authorization": "Bearer sk-sleepd-not-a-token"}, {"Authorization": f"Basic {token}"}):
        refused = httpx.post(f"{url}/mcp", json=initialize, headers={**accept, **headers})
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthorized"
    with pytest.raises(Exception, match="unhandled errors") as refused_client:  # the package's client gives up too
        _http_call(url, "sk-sleepd-not-a-token", "status", {})
    assert "error response" in repr(refused_client.value)
    ledger = Ledger(settings.database_url)
    try:
        assert revoke(ledger, "assistant", actor="test")
    finally:
        ledger.close()
    revoked = httpx.post(f"{url}/mcp", json=initialize, headers={**accept, "Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
