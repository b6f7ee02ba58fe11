"""The optional LLM layer of S(c): summaries, relations, likely questions with answers and risks,
from any OpenAI-compatible endpoint, each claim with evidence checked against the source.

Usage: ``result = enrich_with_llm(ledger, settings, source, item_id, path, text, drafts)``.

The model sees the item's text with line numbers (cut to ``LLM_INPUT_TOKENS``) and the titles of
its deterministic records, and answers in a JSON schema (``response_format`` json_schema, or
json_object where the endpoint rejects schemas). Every claim carries evidence spans
``{start_line, end_line, quote}``; a claim is kept only when each span's lines exist and its quote
(whitespace normalised) occurs within them: "Evidence is real". Malformed JSON gets one more
request, then the item keeps only its deterministic records, with the reason in the usage ledger.
429, 5xx and timeouts are retried with exponential backoff and full jitter (Retry-After
honoured), at most ``LLM_ATTEMPTS`` requests. Each request is reserved against the daily budgets
first (:mod:`sleepd.llm_budget`); none is made that could exceed them. The prompt, the answer's
schema and the evidence check are in :mod:`workers.llm_claims`.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from sleepd import defaults, llm_budget
from sleepd.ledger import Ledger
from sleepd.records import Draft
from sleepd.settings import Settings
from sleepd.tokens import get_tokenizer
from workers.llm_claims import (
    RESPONSE_SCHEMA,
    Malformed,
    build_messages,
    claims_to_drafts,
    estimate_output_tokens,
    parse_answer,
)

__all__ = ["LlmResult", "enrich_with_llm", "estimate_pass"]

log = logging.getLogger("sleepd.llm")


@dataclass
class LlmResult:
    """What the LLM layer added to one item, and whether it counts as done for this model."""

    drafts: list[Draft] = field(default_factory=list)
    #: ok | malformed | budget_exhausted | unavailable | empty
    outcome: str = "ok"
    reason: str | None = None
    requests: int = 0
    dropped: int = 0

    @property
    def done(self) -> bool:
        """True when the item need not be asked again for this content and model: it answered, or
        it answered malformed JSON twice (asking again would likely only spend the budget again).
        Budget and availability skips are retried later (another idle round, the next day)."""
        return self.outcome in ("ok", "malformed", "empty")


class _Unavailable(Exception):
    """The endpoint failed past its retries (or refused the request): skip the item for now."""


class _BudgetExhausted(Exception):
    pass



#: (base_url, model) of endpoints that rejected json_schema: json_object from then on
_NO_SCHEMA: set[tuple[str, str]] = set()


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return None


def _transient(exc: Exception) -> str | None:
    """The usage outcome for an error worth retrying, None for one that is not."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "server_error"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return "rate_limited"
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return "server_error"
    return None


class _Caller:
    """Requests for one item: reserve, call, settle, retry."""

    def __init__(self, ledger: Ledger, settings: Settings, source: str, item_id: int, prompt_tokens: int,
                 path: str) -> None:
        self.ledger, self.settings, self.source, self.item_id = ledger, settings, source, item_id
        self.name = f"{source}:{path}"  # logs name the item as a person knows it
        self.prompt_tokens = prompt_tokens
        self.model = settings.llm_model or ""
        self.endpoint = (settings.llm_base_url or "", self.model)
        self.client = openai.OpenAI(base_url=settings.llm_base_url, api_key=settings.llm_api_key or "none",
                                    timeout=settings.llm_timeout_seconds, max_retries=0)
        self.requests = 0
        self.last_row: int | None = None

    def close(self) -> None:
        self.client.close()

    def _format(self) -> dict[str, Any]:
        if self.endpoint in _NO_SCHEMA:
            return {"type": "json_object"}
        return {"type": "json_schema",
                "json_schema": {"name": "item_notes", "strict": True, "schema": RESPONSE_SCHEMA}}

    def _create(self, messages: list[dict[str, str]], fmt: dict[str, Any]) -> Any:
        return self.client.chat.completions.create(  # type: ignore[call-overload]
            model=self.model, messages=messages, response_format=fmt, max_tokens=defaults.LLM_OUTPUT_TOKENS,
            temperature=0)

    def _request(self, messages: list[dict[str, str]]) -> tuple[str | None, int, int]:
        """One request; the schema format falls back to json_object once if the endpoint refuses it."""
        fmt = self._format()
        try:
            response = self._create(messages, fmt)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            if fmt["type"] != "json_schema":
                raise
            log.info("%s rejected json_schema output; using json_object", self.endpoint[0])
            _NO_SCHEMA.add(self.endpoint)
            response = self._create(messages, self._format())
        usage = response.usage
        content = response.choices[0].message.content if response.choices else None
        if usage is None:  # an endpoint without usage: count it ourselves so the budget still holds
            tokenizer = get_tokenizer(self.settings.tokenizer)
            return content, self.prompt_tokens, tokenizer.count(content or "")
        return content, usage.prompt_tokens, usage.completion_tokens

    def complete(self, messages: list[dict[str, str]]) -> str | None:
        """The answer's text, or _BudgetExhausted / _Unavailable."""
        delay = defaults.LLM_BACKOFF_SECONDS
        for attempt in range(1, defaults.LLM_ATTEMPTS + 1):
            row = llm_budget.reserve(self.ledger, self.settings, self.source, self.item_id,
                                     self.prompt_tokens + defaults.LLM_OUTPUT_TOKENS)
            if row is None:
                raise _BudgetExhausted("daily token budget exhausted")
            self.requests += 1
            try:
                content, prompt, completion = self._request(messages)
            except openai.OpenAIError as exc:
                outcome = _transient(exc) or "failed"
                # a timed-out request may have been read by the model: charge its prompt to be safe
                charged = self.prompt_tokens if outcome == "timeout" else 0
                reason = f"{type(exc).__name__}: {exc}"[:500]
                llm_budget.settle(self.ledger, self.settings, row, charged, 0, outcome, error=reason)
                if outcome == "failed" or attempt == defaults.LLM_ATTEMPTS:
                    raise _Unavailable(reason) from None
                wait = random.uniform(0, min(delay, defaults.LLM_MAX_BACKOFF_SECONDS))
                if isinstance(exc, openai.APIStatusError) and (asked := _retry_after(exc)) is not None:
                    if asked > defaults.LLM_MAX_BACKOFF_SECONDS:
                        raise _Unavailable(f"{reason} (retry after {asked:.0f}s)") from None
                    wait = asked + random.uniform(0, defaults.LLM_BACKOFF_SECONDS / 2)
                log.info("%s: LLM %s; retry %d in %.2fs", self.name, outcome, attempt, wait)
                time.sleep(wait)
                delay *= 2
                continue
            llm_budget.settle(self.ledger, self.settings, row, prompt, completion, "ok")
            self.last_row = row
            return content
        raise AssertionError("unreachable")


def enrich_with_llm(ledger: Ledger, settings: Settings, source: str, item_id: int, path: str, text: str,
                    drafts: list[Draft]) -> LlmResult:
    """The LLM layer for one item: drafts with verified evidence, or a recorded reason why none."""
    if not text.strip():
        return LlmResult(outcome="empty")
    tokenizer = get_tokenizer(settings.tokenizer)
    messages = build_messages(path, text, drafts, tokenizer)
    prompt_tokens = sum(tokenizer.count(m["content"]) for m in messages) + 8  # role and framing tokens
    caller = _Caller(ledger, settings, source, item_id, prompt_tokens, path)
    result = LlmResult()
    try:
        for round_ in (1, 2):
            content = caller.complete(messages)
            try:
                answer = parse_answer(content)
            except Malformed as exc:
                assert caller.last_row is not None
                llm_budget.settle_outcome(ledger, caller.last_row, "malformed", str(exc))
                if round_ == 2:
                    result.outcome, result.reason = "malformed", f"malformed JSON twice: {exc}"
                continue
            result.drafts, result.dropped = claims_to_drafts(path, text, answer, caller.model)
            if result.dropped and caller.last_row is not None:
                llm_budget.add_drops(ledger, caller.last_row, result.dropped)
            break
    except _BudgetExhausted as exc:
        result.outcome, result.reason = "budget_exhausted", str(exc)
    except _Unavailable as exc:
        result.outcome, result.reason = "unavailable", str(exc)
    finally:
        caller.close()
    result.requests = caller.requests
    if result.outcome != "ok":
        log.info("%s:%s: LLM part skipped: %s: %s", source, path, result.outcome, result.reason)
    return result


def estimate_pass(ledger: Ledger, settings: Settings, source: str | None = None) -> dict[str, Any]:
    """What a full LLM pass over the ledger's live items would cost, without calling the model:
    the prompts are built and counted exactly as the worker would; the output is estimated."""
    from workers.enrich import enrich_text
    from workers.items import load_item  # the worker's own loader: the same text the model would see

    tokenizer = get_tokenizer(settings.tokenizer)
    sources = [s for s in ledger.sources() if source is None or s.name == source]
    report: dict[str, Any] = {"model": settings.llm_model, "items": 0, "unreadable": 0, "input_tokens": 0,
                              "output_tokens_estimate": 0, "by_source": {}}
    for src in sources:
        part = {"items": 0, "input_tokens": 0, "output_tokens_estimate": 0}
        for key in sorted(ledger.known_items(src.name)):
            try:
                loaded = load_item(src, key, settings)
            except Exception:  # unreadable now (gone, binary, database down): not part of the pass
                loaded = None
            if loaded is None or not loaded[0].strip():
                report["unreadable"] += loaded is None
                continue
            text = loaded[0]
            messages = build_messages(key, text, enrich_text(key, text, src.profile), tokenizer)
            prompt = sum(tokenizer.count(m["content"]) for m in messages) + 8
            part["items"] += 1
            part["input_tokens"] += prompt
            part["output_tokens_estimate"] += estimate_output_tokens(prompt)
        report["by_source"][src.name] = part
        for key in ("items", "input_tokens", "output_tokens_estimate"):
            report[key] += part[key]
    total = report["input_tokens"] + report["output_tokens_estimate"]
    report["total_tokens"] = total
    report["cost"] = llm_budget.call_cost(settings, report["input_tokens"], report["output_tokens_estimate"])
    report["days_at_daily_budget"] = round(total / settings.llm_daily_tokens, 2) if settings.llm_daily_tokens else None
    return report
