"""An MCP server on stdio, so an assistant can ask sleepd as it asks any tool.

It forwards to the running daemon's API with the token of the settings (or the local admin token
in ``$SLEEPD_HOME/token``): the same query, status and refresh as REST and the CLI, the same
permissions. Register it with an assistant as the command ``sleepd mcp``.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from sleepd import defaults
from sleepd.client import Client
from sleepd.errors import SleepdError
from sleepd.query import check_query
from sleepd.settings import Settings

__all__ = ["build_server"]

INSTRUCTIONS = (
    "sleepd holds an enriched memory of this team's code, documents, contracts and accounts. Call `query` "
    "with a question and a token budget; it returns a context of cited records (each under a line naming "
    "its source, item and lines) that fits the budget. Items listed in stale_items changed since enrichment: "
    "their records carry the current lines."
)


def build_server(settings: Settings) -> MCPServer:
    server = MCPServer("sleepd", instructions=INSTRUCTIONS)

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        client = Client.discover(settings)
        if client is None:
            raise ToolError(f"the sleepd daemon is not running at {settings.base_url}: start it with `sleepd run`")
        try:
            return client.get(path) if method == "GET" else client.post(path, body)
        except SleepdError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None
        finally:
            client.close()

    @server.tool()
    def query(q: str, budget: int = defaults.DEFAULT_BUDGET) -> dict[str, Any]:
        """Answer a question from memory: the most relevant records, each under a line citing its
        source, item and lines, as one text of at most `budget` tokens (16 to 65536)."""
        try:
            check_query(q, budget)
        except SleepdError as exc:
            raise ToolError(exc.message) from None
        body = call("POST", "/v1/query", {"q": q, "budget": budget})
        # the context the budget was spent on, not the API's JSON around it (scores, ids, versions)
        return {"context": body["context"], "tokens_used": body["tokens_used"], "budget": body["budget"],
                "stale_items": body["stale_items"]}

    @server.tool()
    def status() -> dict[str, Any]:
        """Sources, items by state (pending, enriched, failed with the reason), the queue, daemon health."""
        return call("GET", "/v1/status")

    @server.tool()
    def refresh(source: str | None = None, path: str | None = None, force: bool = False) -> dict[str, Any]:
        """Queue items for enrichment ahead of everything else (needs an admin token)."""
        return call("POST", "/v1/refresh", {"source": source, "path": path, "force": force})

    return server
