"""`sleepd mcp` over stdio, as an assistant runs it, against a real API over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from sleepd import defaults
from sleepd.api import create_app
from sleepd.auth import create_token
from sleepd.embed import Embedder
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
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
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
    assert body["tokens_used"] <= 200 and set(body) == {"context", "tokens_used", "budget", "stale_items"}
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
    assert is_error and "sleepd run" in message
