"""MCP servers, so an assistant can ask sleepd as it asks any tool: the tools ``query``,
``status`` and ``refresh``, with the same permissions as REST and the CLI.

Two transports share one set of tools:

* **stdio** (:func:`build_server`, the command ``sleepd mcp``): forwards to the running daemon's
  API with the token of the settings (or the local admin token in ``$SLEEPD_HOME/token``).
* **streamable HTTP** (:class:`McpEndpoint`, mounted by the API at ``/mcp``): served by the daemon
  itself, so assistants on other machines reach a team server without running anything locally.
  Every HTTP request carries the same bearer token as REST; it is checked before the MCP layer sees
  the request, and the tools answer as that principal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from sleepd import defaults
from sleepd.auth import Principal, bearer_principal
from sleepd.client import Client
from sleepd.errors import SleepdError, error_body
from sleepd.query import check_query
from sleepd.settings import Settings

__all__ = ["MCP_PATH", "McpEndpoint", "build_server"]

#: where the API serves MCP over streamable HTTP
MCP_PATH = "/mcp"
#: the key of the request's scope state that carries the authenticated principal to the tools
_PRINCIPAL = "sleepd_principal"

INSTRUCTIONS = (
    "sleepd holds an enriched memory of this team's code, documents, contracts and accounts. Call `query` "
    "with a question and a token budget; it returns a context of cited records (each under a line naming "
    "its source, item and lines) that fits the budget. Items listed in stale_items changed since enrichment: "
    "their records carry the current lines. `route` says what served the answer: the enriched memory, "
    "the source's raw text (\"raw\"), or both (\"mixed\")."
)


class Backend(Protocol):
    """What the tools call: the daemon over REST (stdio) or the service in process (HTTP)."""

    async def query(self, ctx: Context, q: str, budget: int) -> dict[str, Any]: ...
    async def status(self, ctx: Context) -> dict[str, Any]: ...
    async def refresh(self, ctx: Context, source: str | None, path: str | None, force: bool) -> dict[str, Any]: ...


def _tools(backend: Backend) -> MCPServer:
    server = MCPServer("sleepd", instructions=INSTRUCTIONS)

    async def guarded(work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        try:
            return await work()
        except SleepdError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None

    @server.tool()
    async def query(ctx: Context, q: str, budget: int = defaults.DEFAULT_BUDGET) -> dict[str, Any]:
        """Answer a question from memory: the most relevant records, each under a line citing its
        source, item and lines, as one text of at most `budget` tokens (16 to 65536)."""
        try:
            check_query(q, budget)
        except SleepdError as exc:
            raise ToolError(exc.message) from None
        body = await guarded(lambda: backend.query(ctx, q, budget))
        # the context the budget was spent on, not the API's JSON around it (scores, ids, versions)
        return {"context": body["context"], "tokens_used": body["tokens_used"], "budget": body["budget"],
                "stale_items": body["stale_items"], "note": body.get("note"), "route": body.get("route")}

    @server.tool()
    async def status(ctx: Context) -> dict[str, Any]:
        """Sources, items by state (pending, enriched, failed with the reason), the queue, daemon health."""
        return await guarded(lambda: backend.status(ctx))

    @server.tool()
    async def refresh(ctx: Context, source: str | None = None, path: str | None = None,
                      force: bool = False) -> dict[str, Any]:
        """Queue items for enrichment ahead of everything else (needs an admin token)."""
        return await guarded(lambda: backend.refresh(ctx, source, path, force))

    return server


class _RemoteBackend:
    """The daemon's REST API, for ``sleepd mcp`` on stdio."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        client = Client.discover(self.settings)
        if client is None:
            raise ToolError(f"no sleepd daemon answers for home {self.settings.home} (looked at "
                            f"{self.settings.base_url}): start it with `sleepd run`")
        try:
            return client.get(path) if method == "GET" else client.post(path, body)
        finally:
            client.close()

    async def query(self, ctx: Context, q: str, budget: int) -> dict[str, Any]:
        return await run_in_threadpool(self._call, "POST", "/v1/query", {"q": q, "budget": budget})

    async def status(self, ctx: Context) -> dict[str, Any]:
        return await run_in_threadpool(self._call, "GET", "/v1/status")

    async def refresh(self, ctx: Context, source: str | None, path: str | None, force: bool) -> dict[str, Any]:
        return await run_in_threadpool(self._call, "POST", "/v1/refresh",
                                       {"source": source, "path": path, "force": force})


def build_server(settings: Settings) -> MCPServer:
    """The stdio server of ``sleepd mcp``: every tool forwards to the daemon's API."""
    return _tools(_RemoteBackend(settings))


class _LocalBackend:
    """The service of the daemon that serves the HTTP endpoint, as the request's principal."""

    def __init__(self, service: Any) -> None:  # a sleepd.service.Service (imported lazily by the API)
        self.service = service

    @staticmethod
    def _principal(ctx: Context) -> Principal:
        request = ctx.request_context.request
        principal = getattr(request.state, _PRINCIPAL, None) if isinstance(request, Request) else None
        if not isinstance(principal, Principal):  # the endpoint authenticates every request first
            raise ToolError("unauthorized: no authenticated principal on this request")
        return principal

    async def query(self, ctx: Context, q: str, budget: int) -> dict[str, Any]:
        principal = self._principal(ctx)
        result = await run_in_threadpool(self.service.query, q, budget, principal)
        return dict(result.as_dict())

    async def status(self, ctx: Context) -> dict[str, Any]:
        self._principal(ctx)
        return dict(await run_in_threadpool(self.service.status))

    async def refresh(self, ctx: Context, source: str | None, path: str | None, force: bool) -> dict[str, Any]:
        principal = self._principal(ctx)
        return dict(await run_in_threadpool(self.service.refresh, principal, source, path, force))


class McpEndpoint:
    """The ASGI app at ``/mcp``: a bearer token on every request (none, unknown or revoked: 401 in
    the API's one error shape), then the MCP streamable-HTTP transport.

    Stateless with JSON responses: no session lives in the daemon between requests, so nothing is
    lost on a restart and several daemons behind a balancer answer alike. DNS-rebinding protection
    (a Host allow-list) is off: it guards servers that trust whoever can reach them, and this one
    trusts nobody without a token; a team server is reached by names we cannot list here.

    The session manager needs a task that outlives requests; it starts on the first request, so
    the endpoint works whether or not the server runs the app's lifespan, and :meth:`aclose` ends it.
    """

    def __init__(self, service: Any) -> None:
        self.service = service
        server = _tools(_LocalBackend(service))
        server.streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.manager: StreamableHTTPSessionManager = server.session_manager
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            principal = await run_in_threadpool(
                bearer_principal, self.service.ledger, Request(scope).headers.get("authorization", ""))
        except SleepdError as exc:
            await _refuse(scope, receive, send, exc.status, exc.code, exc.message)
            return
        except (OperationalError, InterfaceError) as exc:
            await _refuse(scope, receive, send, 503, "unavailable", f"the ledger is unreachable: {type(exc).__name__}")
            return
        scope.setdefault("state", {})[_PRINCIPAL] = principal
        await self._running()
        await self.manager.handle_request(scope, receive, send)

    async def _running(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._serve(), name="sleepd-mcp")
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            self._runner.result()  # the manager failed to start: raise why
            raise RuntimeError("the MCP session manager stopped")

    async def _serve(self) -> None:
        async with self.manager.run():
            self._ready.set()
            await self._stop.wait()

    async def aclose(self) -> None:
        """Stop the session manager (the app's lifespan calls this at shutdown)."""
        if self._runner is not None:
            self._stop.set()
            await self._runner


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    from starlette.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    await JSONResponse(error_body(status, code, message), status_code=status, headers=headers)(scope, receive, send)
