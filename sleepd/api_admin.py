"""The admin's endpoints: item history and versions, the audit log, tokens, Prometheus metrics.
Included by :func:`sleepd.api.create_app`; errors take the API's one JSON shape.

- GET /v1/items/{item}/history, GET /v1/items/{item}?version=N, GET /v1/items/{item}/diff?a=&b=:
  any token, limited to what it may read (an item it may not read is a 404, like a missing one).
  ``item`` is a path, or SOURCE:KEY / TABLE:KEY; ``?source=`` picks a source.
- GET /v1/audit?since=&limit=&action=, GET /v1/tokens, POST /v1/tokens/revoke {"name"}: admins only.
- POST /v1/refresh/state {"items": [id, ...]}: where the items of a refresh stand (fresh, failed,
  deleted, gone, waiting), for `sleepd refresh --wait`; admins only.
- POST /v1/sources/{name}/access {"access": [...], "paths": {glob: [...]}}: admins only. A new
  access list (and path globs; "paths" left out keeps them, {} drops them), in effect for the next
  query without re-enrichment (see :meth:`Service.change_access`).
- GET /metrics: admins only (see :mod:`sleepd.metrics`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from sleepd import defaults
from sleepd.audit import audit_entries, parse_since
from sleepd.auth import Principal, authenticate, list_tokens, revoke
from sleepd.errors import BadRequest, Forbidden, Unauthorized
from sleepd.history import diff_versions, item_history, item_version
from sleepd.metrics import render
from sleepd.service import Service

__all__ = ["admin_router"]


def admin_router(service: Service) -> APIRouter:
    router = APIRouter()
    ledger = service.ledger

    # the longer routes first: {item:path} would swallow ".../history"
    @router.get("/v1/items/{item:path}/history")
    async def get_history(item: str, request: Request) -> dict[str, Any]:
        principal = _caller(service, request)
        source = _param(request, "source")
        return await run_in_threadpool(item_history, ledger, principal, item, source)

    @router.get("/v1/items/{item:path}/diff")
    async def get_diff(item: str, request: Request) -> dict[str, Any]:
        principal = _caller(service, request)
        a, b = _int_param(request, "a"), _int_param(request, "b")
        if a is None or b is None:
            raise BadRequest("a diff needs two versions: ?a=N&b=M")
        return await run_in_threadpool(diff_versions, ledger, principal, item, a, b, _param(request, "source"))

    @router.get("/v1/items/{item:path}")
    async def get_item(item: str, request: Request) -> dict[str, Any]:
        principal = _caller(service, request)
        version = _int_param(request, "version")
        return await run_in_threadpool(item_version, ledger, principal, item, version, _param(request, "source"))

    @router.get("/v1/audit")
    async def get_audit(request: Request) -> dict[str, Any]:
        _admin(_caller(service, request))
        since = parse_since(_param(request, "since"))
        limit = _int_param(request, "limit")
        limit = defaults.AUDIT_LIMIT if limit is None else limit
        entries = await run_in_threadpool(audit_entries, ledger, since, limit, _param(request, "action"))
        return {"since": since, "entries": entries}

    @router.get("/v1/tokens")
    def get_tokens(request: Request) -> dict[str, Any]:
        _admin(_caller(service, request))
        return {"tokens": list_tokens(ledger)}

    @router.post("/v1/tokens/revoke")
    async def post_revoke(request: Request) -> dict[str, Any]:
        principal = _admin(_caller(service, request))
        name = (await _json_object(request)).get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("'name' must be a principal or a token id")
        return {"name": name, "revoked": revoke(ledger, name.strip(), principal.name)}

    @router.post("/v1/refresh/state")
    async def post_refresh_state(request: Request) -> dict[str, Any]:
        principal = _caller(service, request)
        return await run_in_threadpool(service.refresh_state, principal, (await _json_object(request)).get("items"))

    @router.post("/v1/sources/{name}/access")
    async def post_access(name: str, request: Request) -> dict[str, Any]:
        principal = _admin(await run_in_threadpool(_caller, service, request))
        body = await _json_object(request)
        return await run_in_threadpool(service.change_access, principal, name, body.get("access"),
                                       body.get("paths"))

    @router.get("/metrics")
    async def get_metrics(request: Request) -> Response:
        _admin(_caller(service, request))
        return Response(await run_in_threadpool(render, ledger), media_type=CONTENT_TYPE_LATEST)

    return router


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _caller(service: Service, request: Request) -> Principal:
    """The bearer token's principal (the same check as the rest of the API)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    principal = authenticate(service.ledger, token.strip())
    if principal is None:
        raise Unauthorized("invalid token")
    return principal


def _admin(principal: Principal) -> Principal:
    if not principal.admin:
        raise Forbidden(f"principal {principal.name!r} is not an admin")
    return principal


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value else None


def _int_param(request: Request, name: str) -> int | None:
    value = _param(request, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"'{name}' must be a whole number; got {value!r}") from None
