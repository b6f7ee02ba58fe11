"""The HTTP API. Every endpoint but /health needs a bearer token; every error has one shape:
``{"error": {"status", "code", "message"}}``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Route

from sleepd import defaults
from sleepd.api_admin import admin_router
from sleepd.auth import Principal, bearer_principal
from sleepd.errors import BadRequest, SleepdError, error_body
from sleepd.mcp_server import MCP_PATH, McpEndpoint
from sleepd.service import Service

__all__ = ["create_app"]

Health = Callable[[], dict[str, Any]]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status)


def _principal(service: Service, request: Request) -> Principal:
    return bearer_principal(service.ledger, request.headers.get("authorization", ""))


async def _body(request: Request) -> dict[str, Any]:
    return _parse(await request.body())


def _parse(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _answer(service: Service, request: Request, raw: bytes) -> JSONResponse:
    """A query's answer: the token checked first, then the body. The pack is encoded as it is:
    FastAPI's validation and encoding of a returned dict of that size cost more than the JSON itself."""
    principal = _principal(service, request)
    body = _parse(raw)
    return JSONResponse(service.query(body.get("q"), body.get("budget", defaults.DEFAULT_BUDGET), principal).as_dict())


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise BadRequest(f"'{key}' must be a non-empty string")
    return value


def create_app(service: Service, health: Health | None = None) -> FastAPI:
    mcp = McpEndpoint(service)
    app = FastAPI(title="sleepd", version="0.1.0", docs_url=None, redoc_url=None, lifespan=_lifespan(mcp))

    @app.exception_handler(SleepdError)
    async def _sleepd_error(_: Request, exc: SleepdError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "bad_request", str(exc.errors()[:3]))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _ledger_down(_: Request, exc: Exception) -> JSONResponse:
        # the ledger's server restarting or unreachable: the client should retry, it did nothing wrong
        return _error(503, "unavailable", f"the ledger is unreachable: {type(exc).__name__}")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal", f"{type(exc).__name__}: {exc}")

    @app.get("/health")
    def get_health() -> JSONResponse:
        report = health() if health else {"status": "ok"}
        return JSONResponse(report, status_code=200 if report.get("status") == "ok" else 503)

    @app.get("/v1/status")
    def get_status(request: Request) -> dict[str, Any]:
        _principal(service, request)
        return service.status()

    # Every handler that touches the ledger runs in the thread pool: on SQLite a write can wait up
    # to the busy timeout for the lock, and on the event loop that wait would stall /health and
    # every other request. Only reading the body stays on the loop.
    @app.post("/v1/query")
    async def post_query(request: Request) -> JSONResponse:
        raw = await request.body()
        return await run_in_threadpool(_answer, service, request, raw)  # one hop to the pool

    @app.post("/v1/refresh")
    async def post_refresh(request: Request) -> dict[str, Any]:
        principal = await run_in_threadpool(_principal, service, request)
        body = await _body(request)
        return await _threaded(lambda: service.refresh(
            principal, _optional_str(body, "source"), _optional_str(body, "path"),
            _flag(body, "force")))

    @app.post("/v1/purge")
    async def post_purge(request: Request) -> dict[str, Any]:
        principal = await run_in_threadpool(_principal, service, request)
        body = await _body(request)
        return await _threaded(lambda: service.purge(
            principal, _optional_str(body, "source"), _optional_str(body, "path"),
            _flag(body, "lift"), _flag(body, "dry_run"), _flag(body, "keep_excluded")))

    @app.post("/v1/reindex")
    def post_reindex(request: Request) -> dict[str, Any]:
        return service.reindex(_principal(service, request))

    app.include_router(admin_router(service))
    # MCP over streamable HTTP, for assistants on other machines; the same bearer tokens as REST
    app.router.routes.append(Route(MCP_PATH, mcp, include_in_schema=False))
    return app


def _lifespan(mcp: McpEndpoint) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Where the server runs the lifespan (the daemon does not), stop the MCP sessions at shutdown."""
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await mcp.aclose()

    return lifespan


async def _threaded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Blocking work (embedding, SQL, the token check) off the event loop."""
    return await run_in_threadpool(fn)
