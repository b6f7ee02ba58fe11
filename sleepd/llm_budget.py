"""The LLM layer's token budget and cost ledger (table ``llm_usage``), over a :class:`Ledger`.

Every request to the model is one row: reserved (prompt estimate + the answer's cap) in the same
transaction that checks today's budget, then settled with the usage the endpoint reported. So the
budget holds with many workers: a call that could push the day past ``llm_daily_tokens`` (or its
source past ``llm_source_daily_tokens``) is not made, and a ``budget_exhausted`` row says so.
Days are UTC days. A reservation whose worker died stays counted: the budget errs on the safe side.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from sleepd import defaults
from sleepd.ledger import Ledger
from sleepd.schema import LlmUsageRow
from sleepd.settings import Settings

__all__ = [
    "LLM_MARK",
    "MAX_CALL_TOKENS",
    "PROMPT_OVERHEAD_TOKENS",
    "add_drops",
    "base_version",
    "budget_left",
    "call_cost",
    "llm_status",
    "llm_version",
    "outdated_target",
    "reserve",
    "settle",
    "settle_outcome",
    "usage_today",
]

#: what a pipeline version carries when the LLM layer ran: ``det-2/all-MiniLM-L6-v2+llm:<model>``
LLM_MARK = "+llm:"
#: instructions, schema and the deterministic records' titles around the item's text
PROMPT_OVERHEAD_TOKENS = 1_200
#: the largest reservation one request makes (the item's text is cut to LLM_INPUT_TOKENS)
MAX_CALL_TOKENS = defaults.LLM_INPUT_TOKENS + PROMPT_OVERHEAD_TOKENS + defaults.LLM_OUTPUT_TOKENS
#: after a failed request (timeout, 5xx, 429 past its retries) re-made items wait this long
COOL_DOWN_SECONDS = 300.0
#: outcomes of requests that reached the model, for the calls count
FAILED = ("timeout", "server_error", "rate_limited", "failed")
_LOCK_KEY = 0x5EEFD11  # PostgreSQL advisory lock that serialises budget checks


def llm_version(base: str, model: str) -> str:
    return f"{base}{LLM_MARK}{model}"


def base_version(pipeline_version: str) -> str:
    """The deterministic part of a pipeline version (what an item skipped by the LLM gets)."""
    return pipeline_version.split(LLM_MARK, 1)[0]


def call_cost(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    return round(prompt_tokens / 1000 * settings.llm_price_per_1k_input
                 + completion_tokens / 1000 * settings.llm_price_per_1k_output, 6)


def day_start(now: float | None = None) -> float:
    """Start of the current UTC day, as a timestamp."""
    day = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _used(s: Session, since: float, source: str | None = None) -> int:
    query = select(func.coalesce(func.sum(LlmUsageRow.prompt_tokens + LlmUsageRow.completion_tokens), 0)).where(
        col(LlmUsageRow.at) >= since)
    if source is not None:
        query = query.where(LlmUsageRow.source == source)
    return int(s.exec(query).one())


def reserve(ledger: Ledger, settings: Settings, source: str, item_id: int, tokens: int) -> int | None:
    """Reserve ``tokens`` for one request: the row id, or None (and a ``budget_exhausted`` row)
    when today's total or the source's budget cannot cover it."""
    now = time.time()
    model = settings.llm_model or ""
    with ledger.write() as s:
        if s.get_bind().dialect.name == "postgresql":  # SQLite writers are serialised by BEGIN IMMEDIATE
            s.exec(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))  # type: ignore[call-overload]
        since = day_start(now)
        total_left = settings.llm_daily_tokens - _used(s, since)
        source_left = settings.llm_source_daily_tokens - _used(s, since, source)
        if tokens > total_left or tokens > source_left:
            s.add(LlmUsageRow(at=now, source=source, item_id=item_id, model=model, outcome="budget_exhausted",
                              error=f"needs up to {tokens} tokens; left today: {max(0, total_left)} in all, "
                                    f"{max(0, source_left)} for source {source!r}"))
            return None
        row = LlmUsageRow(at=now, source=source, item_id=item_id, model=model, prompt_tokens=tokens,
                          outcome="reserved")
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def settle(ledger: Ledger, settings: Settings, row_id: int, prompt_tokens: int, completion_tokens: int,
           outcome: str, dropped: int = 0, error: str | None = None) -> None:
    """Replace a reservation with what the request really used."""
    with ledger.write() as s:
        row = s.get(LlmUsageRow, row_id)
        if row is None:
            return
        row.prompt_tokens, row.completion_tokens = prompt_tokens, completion_tokens
        row.cost = call_cost(settings, prompt_tokens, completion_tokens)
        row.outcome, row.dropped, row.error = outcome, dropped, error


def settle_outcome(ledger: Ledger, row_id: int, outcome: str, error: str | None) -> None:
    """Mark a settled request (its tokens stand) as, e.g., ``malformed``, with the reason."""
    with ledger.write() as s:
        row = s.get(LlmUsageRow, row_id)
        if row is not None:
            row.outcome, row.error = outcome, error


def add_drops(ledger: Ledger, row_id: int, dropped: int) -> None:
    with ledger.write() as s:
        row = s.get(LlmUsageRow, row_id)
        if row is not None:
            row.dropped += dropped


def usage_today(ledger: Ledger, source: str | None = None) -> dict[str, Any]:
    """Tokens, cost, requests, dropped claims and requests by outcome since the UTC day began."""
    since = day_start()
    where = [col(LlmUsageRow.at) >= since] + ([col(LlmUsageRow.source) == source] if source is not None else [])
    with ledger.read() as s:
        rows = s.exec(select(LlmUsageRow.outcome, func.count(), func.sum(LlmUsageRow.prompt_tokens),
                             func.sum(LlmUsageRow.completion_tokens)).where(*where)
                      .group_by(LlmUsageRow.outcome)).all()
        cost, dropped = s.exec(select(func.sum(LlmUsageRow.cost), func.sum(LlmUsageRow.dropped)).where(*where)).one()
    outcomes = {outcome: int(n) for outcome, n, _, _ in rows}
    prompt = sum(int(p or 0) for _, _, p, _ in rows)
    completion = sum(int(c or 0) for _, _, _, c in rows)
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "tokens": prompt + completion,
        "cost": round(float(cost or 0), 6), "calls": sum(n for o, n in outcomes.items() if o != "budget_exhausted"),
        "dropped_claims": int(dropped or 0), "outcomes": outcomes,
    }


def budget_left(ledger: Ledger, settings: Settings, source: str | None = None) -> int:
    """Tokens left today in all, or for ``source`` (the smaller of its budget and the total)."""
    since = day_start()
    with ledger.read() as s:
        left = settings.llm_daily_tokens - _used(s, since)
        if source is not None:
            left = min(left, settings.llm_source_daily_tokens - _used(s, since, source))
    return max(0, left)


def _sources_spent(s: Session, since: float, limit: int) -> list[str]:
    rows = s.exec(select(LlmUsageRow.source).where(col(LlmUsageRow.at) >= since).group_by(LlmUsageRow.source)
                  .having(func.sum(LlmUsageRow.prompt_tokens + LlmUsageRow.completion_tokens) > limit)).all()
    return sorted(rows)


def outdated_target(ledger: Ledger, settings: Settings, pipeline_version: str) -> tuple[str, Sequence[str]]:
    """What the scheduler re-makes outdated items to, and which sources it leaves alone today.

    With room for a full request in today's budget, items go to the LLM version, except those of
    sources whose own budget has no such room. With no room (or right after a failed request)
    the target is the deterministic version: items already there stay as they are, so the
    scheduler never spins on items the worker would only skip; they are picked up when the next
    UTC day resets the budget."""
    if LLM_MARK not in pipeline_version:
        return pipeline_version, ()
    since = day_start()
    with ledger.read() as s:
        used = _used(s, since)
        last = s.exec(select(LlmUsageRow).where(col(LlmUsageRow.outcome) != "budget_exhausted")
                      .order_by(col(LlmUsageRow.id).desc()).limit(1)).first()
        spent = _sources_spent(s, since, settings.llm_source_daily_tokens - MAX_CALL_TOKENS)
    cooling = last is not None and last.outcome in FAILED and time.time() - last.at < COOL_DOWN_SECONDS
    if settings.llm_daily_tokens - used < MAX_CALL_TOKENS or cooling:
        return base_version(pipeline_version), ()
    return pipeline_version, spent


def llm_status(ledger: Ledger, settings: Settings) -> dict[str, Any]:
    """The ``llm`` block of status: model, today's tokens, budget left, requests, dropped claims.
    Never the key."""
    today = usage_today(ledger)
    since = day_start()
    with ledger.read() as s:
        by_source = s.exec(select(LlmUsageRow.source,
                                  func.sum(LlmUsageRow.prompt_tokens + LlmUsageRow.completion_tokens))
                           .where(col(LlmUsageRow.at) >= since).group_by(LlmUsageRow.source)).all()
        skipped = s.exec(select(LlmUsageRow).where(
            col(LlmUsageRow.error).is_not(None), col(LlmUsageRow.at) >= since, col(LlmUsageRow.outcome) != "ok",
        ).order_by(col(LlmUsageRow.id).desc()).limit(5)).all()
    return {
        "model": settings.llm_model, "base_url": settings.llm_base_url,
        "tokens_today": today["tokens"], "cost_today": today["cost"],
        "budget_left": max(0, settings.llm_daily_tokens - today["tokens"]),
        "daily_tokens": settings.llm_daily_tokens, "source_daily_tokens": settings.llm_source_daily_tokens,
        "calls": today["calls"], "dropped_claims": today["dropped_claims"], "outcomes": today["outcomes"],
        "tokens_by_source": {name: int(n or 0) for name, n in by_source},
        "recent_skips": [{"item_id": r.item_id, "outcome": r.outcome, "reason": r.error} for r in skipped],
    }

