"""Reading the audit log: who did what, when. The actions: ``token.create``, ``token.revoke``,
``token.refused``, ``refresh``, ``purge``, ``purge.lift``, ``reindex``, ``source.add``,
``source.change``, ``source.remove``. Written by :meth:`Ledger.audit` (and by
:meth:`Ledger.save_source` for sources); read here for ``sleepd audit`` and GET /v1/audit, admins
only."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from sleepd import defaults
from sleepd.errors import BadRequest
from sleepd.ledger import Ledger
from sleepd.schema import AuditRow

__all__ = ["audit_entries", "parse_since"]

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: the most rows one call returns, whatever it asks: the API is no bulk export
MAX_LIMIT = 10_000


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """A time from ``30m``/``2h``/``7d`` ago, an ISO-8601 date or time (UTC when no zone is
    given), or Unix seconds. None stays None."""
    if text is None or not text.strip():
        return None
    value = text.strip()
    ago = _AGO.match(value.lower())
    if ago:
        return (now if now is not None else time.time()) - float(ago.group(1)) * _UNIT[ago.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"since {text!r} is not a time: give 30m, 2h, 7d, an ISO date such as "
                         "2026-11-28T06:00, or Unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def audit_entries(ledger: Ledger, since: float | None = None, limit: int = defaults.AUDIT_LIMIT,
                  action: str | None = None) -> list[dict[str, Any]]:
    """Audit rows at or after ``since``, oldest first (the newest ``limit`` of them)."""
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be 1 to {MAX_LIMIT}; got {limit}")
    query = select(AuditRow)
    if since is not None:
        query = query.where(col(AuditRow.at) >= since)
    if action is not None:
        query = query.where(AuditRow.action == action)
    with ledger.read() as s:
        rows = s.exec(query.order_by(col(AuditRow.at).desc(), col(AuditRow.id).desc()).limit(limit)).all()
    return [{"id": r.id, "at": r.at, "actor": r.actor, "action": r.action, "detail": _detail(r.detail)}
            for r in reversed(rows)]


def _detail(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
