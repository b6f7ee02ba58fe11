"""What the LLM layer asks the model, and which of its claims it keeps.

The prompt (:func:`build_messages`: the item's numbered lines and the titles of its deterministic
records), the JSON schema of the answer, and the check that makes "Evidence is real": a claim is
kept only when each of its spans' lines exist and its quote (whitespace normalised) occurs within
them (:func:`verify_span`, :func:`claims_to_drafts`). The requests themselves are :mod:`workers.llm`'s.
Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sleepd import defaults
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.tokens import Tokenizer

__all__ = ["RESPONSE_SCHEMA", "SYSTEM_PROMPT", "Malformed", "build_messages", "claims_to_drafts",
           "estimate_output_tokens", "numbered", "parse_answer", "verify_span"]


#: claims kept per kind: a few good ones rank; dozens would crowd the item's own records
MAX_CLAIMS = {"relations": 12, "qa": 8, "risks": 6}
#: deterministic records listed in the prompt (titles only): enough to ground it, cheap to send
MAX_DRAFT_TITLES = 40
#: the output a full pass is estimated to need, as a share of the input (capped by LLM_OUTPUT_TOKENS)
OUTPUT_SHARE = 0.25
MIN_OUTPUT_ESTIMATE = 200
_SPACE = re.compile(r"\s+")

_SPAN = {
    "type": "object", "additionalProperties": False, "required": ["start_line", "end_line", "quote"],
    "properties": {"start_line": {"type": "integer"}, "end_line": {"type": "integer"}, "quote": {"type": "string"}},
}
_EVIDENCE = {"type": "array", "items": _SPAN}


def _claim(*names: str) -> dict[str, Any]:
    props: dict[str, Any] = {name: {"type": "string"} for name in names}
    props["evidence"] = _EVIDENCE
    return {"type": "object", "additionalProperties": False, "required": [*names, "evidence"], "properties": props}


#: what the model must answer (strict JSON schema: every key required, no extras)
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["summary", "relations", "qa", "risks"],
    "properties": {
        "summary": _claim("text"),
        "relations": {"type": "array", "items": _claim("subject", "relation", "object")},
        "qa": {"type": "array", "items": _claim("question", "answer")},
        "risks": {"type": "array", "items": _claim("risk", "explanation")},
    },
}

SYSTEM_PROMPT = """You enrich one item of a team's context (a source file, a contract, an account's records) \
so that later questions can be answered from your notes without reading the item again.
Answer with one JSON object and nothing else, matching this JSON schema:
{schema}
- summary: what the item is and does, in 2-5 sentences.
- relations: what the item's parts do to each other or to named outside things \
("Session.send calls adapters.send", "clause 5 limits clause 9").
- qa: questions a colleague is likely to ask about this item, each with a short, complete answer.
- risks: what could go wrong or cost money (bugs, unsafe defaults, liability, overdue payments), and why.
Every claim needs evidence: spans of the numbered source, start_line and end_line (inclusive, the numbers \
before "|"), and quote: a short phrase copied exactly from those lines (without the line numbers). \
Claims without real evidence are thrown away. Use empty lists where there is nothing worth saying."""


class Malformed(Exception):
    """The answer is not the JSON object the schema asks for."""


class _BudgetExhausted(Exception):
    pass


def numbered(text: str) -> str:
    return "\n".join(f"{n}| {line}" for n, line in enumerate(text.splitlines(), start=1))


def _fit(text: str, tokenizer: Tokenizer, limit: int) -> tuple[str, bool]:
    """The numbered text cut to ``limit`` tokens at a line boundary, and whether it was cut."""
    lines = numbered(text)
    cut = tokenizer.truncate(lines, limit)
    if cut == lines:
        return lines, False
    return cut.rsplit("\n", 1)[0] if "\n" in cut else cut, True


def build_messages(path: str, text: str, drafts: list[Draft], tokenizer: Tokenizer) -> list[dict[str, str]]:
    """The chat messages for one item (the same for the call and for ``sleepd llm estimate``)."""
    body, cut = _fit(text, tokenizer, defaults.LLM_INPUT_TOKENS)
    n_lines = len(text.splitlines())
    titles = "\n".join(
        f"- {d.kind.value}: {d.title or d.text[:60]!s}" + (f" (lines {d.evidence[0].start_line}-"
                                                          f"{d.evidence[0].end_line})" if d.evidence else "")
        for d in drafts[:MAX_DRAFT_TITLES])
    shown = f"the first {body.count(chr(10)) + 1} of {n_lines} lines" if cut else f"all {n_lines} lines"
    user = (f"Item: {path}\n\nRecords already extracted without a model:\n{titles or '(none)'}\n\n"
            f"The item, {shown}, numbered:\n{body}")
    system = SYSTEM_PROMPT.format(schema=json.dumps(RESPONSE_SCHEMA, separators=(",", ":")))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def estimate_output_tokens(prompt_tokens: int) -> int:
    return min(defaults.LLM_OUTPUT_TOKENS, max(MIN_OUTPUT_ESTIMATE, int(prompt_tokens * OUTPUT_SHARE)))


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def verify_span(path: str, lines: list[str], span: Any) -> Evidence | None:
    """The span as evidence if its lines exist and its quote occurs within them, else None."""
    if not isinstance(span, dict):
        return None
    start, end, quote = span.get("start_line"), span.get("end_line"), span.get("quote")
    if not isinstance(start, int) or not isinstance(end, int) or not isinstance(quote, str):
        return None
    if not 1 <= start <= end <= len(lines):
        return None
    wanted = _norm(quote)
    if not wanted or wanted not in _norm(" ".join(lines[start - 1:end])):
        return None
    return Evidence(path, start, end)


def _verified(path: str, lines: list[str], claim: dict[str, Any]) -> tuple[Evidence, ...] | None:
    spans = claim.get("evidence")
    if not isinstance(spans, list) or not spans:
        return None
    checked = [verify_span(path, lines, span) for span in spans]
    if any(e is None for e in checked):
        return None  # one made-up quote makes the whole claim suspect
    return tuple(e for e in checked if e is not None)


def _texts(claim: Any, *names: str) -> list[str] | None:
    if not isinstance(claim, dict):
        return None
    values = [claim.get(n) for n in names]
    if not all(isinstance(v, str) and v.strip() for v in values):
        return None
    return [str(v).strip() for v in values]


def claims_to_drafts(path: str, text: str, answer: dict[str, Any], model: str) -> tuple[list[Draft], int]:
    """Drafts for the claims whose evidence checks out, and how many claims were dropped."""
    lines = text.splitlines()
    meta = {"origin": "llm", "model": model}
    drafts: list[Draft] = []
    dropped = 0

    def keep(kind: RecordKind, claim: Any, names: tuple[str, ...], render: Any) -> None:
        nonlocal dropped
        values = _texts(claim, *names)
        evidence = _verified(path, lines, claim) if values else None
        if values is None or evidence is None:
            dropped += 1
            return
        title, body = render(*values)
        drafts.append(Draft(kind=kind, text=body, evidence=evidence, title=title, meta=meta))

    summary = answer.get("summary")
    if summary:
        keep(RecordKind.SUMMARY, summary, ("text",), lambda t: (f"{path}: summary", f"{path}: {t}"))
    specs: list[tuple[str, RecordKind, tuple[str, ...], Any]] = [
        ("relations", RecordKind.RELATION, ("subject", "relation", "object"),
         lambda s, r, o: (f"{s} {r} {o}", f"{path}: {s} {r} {o}")),
        ("qa", RecordKind.QA, ("question", "answer"), lambda q, a: (q, f"Q: {q}\nA: {a}")),
        ("risks", RecordKind.RISK, ("risk", "explanation"), lambda r, e: (r, f"Risk in {path}: {r}. {e}")),
    ]
    for key, kind, names, render in specs:
        claims = answer.get(key)
        claims = claims if isinstance(claims, list) else []
        for claim in claims[:MAX_CLAIMS[key]]:
            keep(kind, claim, names, render)
    return drafts, dropped


def parse_answer(content: str | None) -> dict[str, Any]:
    try:
        answer = json.loads(content or "")
    except json.JSONDecodeError as exc:
        raise Malformed(f"not JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(answer, dict):
        raise Malformed(f"a JSON {type(answer).__name__}, not an object")
    for key in ("relations", "qa", "risks"):
        if key in answer and not isinstance(answer[key], list):
            raise Malformed(f"'{key}' is not a list")
    return answer
