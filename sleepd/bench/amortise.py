"""Amortisation, as the sleep-time compute paper reports it: what the sleep-time pass cost, spread
over the queries it serves, against the live tokens it saves on each one at equal recall.

* sleep-time cost: the worker's CPU-seconds over the first pass (and LLM tokens when the LLM
  layer is on), divided over the queries served;
* live tokens saved per query: the budget the best baseline needs to reach sleepd's recall at
  1,024 tokens, minus 1,024 (negative: sleepd needs more, and there is no break-even);
* break-even: the number of queries after which the live tokens saved are worth the sleep-time
  cost, at the stated prices (a CPU-hour, a million live input tokens; sleep-time LLM tokens are
  priced as live ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["CPU_HOUR_USD", "LIVE_TOKENS_USD_PER_M", "amortisation"]

#: assumed prices, stated in every report: one vCPU-hour on demand, and a million input tokens of
#: the assistant's model (the live tokens a pack costs)
CPU_HOUR_USD = 0.05
LIVE_TOKENS_USD_PER_M = 3.0
REFERENCE_BUDGET = 1024


def amortisation(enrichment: dict[str, Any], queries: int, sleepd_1024: float, best_needed: float | None,
                 budgets: Sequence[int]) -> dict[str, Any]:
    """``best_needed``: the budget the best baseline needs for sleepd's recall at 1,024 (None: more
    than the largest budget, so the saving is a lower bound)."""
    cpu_s, llm_tokens = float(enrichment.get("cpu_seconds", 0.0)), int(enrichment.get("llm_tokens", 0))
    bound = best_needed is None
    needed = float(budgets[-1]) if best_needed is None else best_needed
    saved = needed - REFERENCE_BUDGET
    cost_usd = cpu_s / 3600 * CPU_HOUR_USD + llm_tokens / 1e6 * LIVE_TOKENS_USD_PER_M
    saved_usd = saved / 1e6 * LIVE_TOKENS_USD_PER_M
    break_even = math.ceil(cost_usd / saved_usd) if saved > 0 else None
    if saved <= 0:
        text = "never: the best baseline reaches sleepd's recall at 1,024 within 1,024 tokens"
    else:
        text = f"{'<= ' if bound else ''}{break_even:,} {'query' if break_even == 1 else 'queries'}"
    return {
        "sleep_cpu_seconds": round(cpu_s, 2), "sleep_llm_tokens": llm_tokens, "queries_served": queries,
        "cpu_seconds_per_query": round(cpu_s / queries, 3) if queries else None,
        "llm_tokens_per_query": round(llm_tokens / queries, 1) if queries else None,
        "sleepd_recall_at_1024": round(sleepd_1024, 4),
        "best_baseline_budget_needed": None if best_needed is None else round(best_needed),
        "live_tokens_saved_per_query": round(saved), "saved_is_lower_bound": bound,
        "sleep_cost_usd": round(cost_usd, 5), "break_even_queries": break_even, "break_even": text,
        "prices": f"${CPU_HOUR_USD}/CPU-hour, ${LIVE_TOKENS_USD_PER_M}/M live input tokens",
    }
