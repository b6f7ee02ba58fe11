"""Deterministic enrichment of contracts: clauses by CUAD category, key fields, playbook flags, one card.

:func:`enrich_contract` turns one contract into :class:`~sleepd.records.Draft` records:

* one ``CLAUSE`` per clause (:mod:`workers.enrich.clause_segments`), classified into the CUAD
  categories (:mod:`workers.enrich.clause_types`); its text starts with a line naming its
  categories and heading, so it reads (and embeds) well on its own. ``meta``: ``category`` (the
  first one, or ""), ``categories`` (JSON list), ``number``, ``heading``, ``fields`` (JSON object
  of the key fields read from this clause) and ``flags`` (JSON list of the playbook flags it
  bears on);
* one ``CONTRACT_CARD``: parties, dates, term and renewal, governing law, the playbook's flags,
  and one line per category found with the lines it sits on. ``meta``: ``parties``,
  ``categories`` and ``flags`` (JSON lists), ``fields`` (JSON object).

Key fields (:mod:`workers.enrich.contract_fields`): ``parties``, ``agreement_date``,
``effective_date``, ``expiration_date`` (ISO dates), ``term_months``, ``renewal_months``,
``notice_days``, ``non_compete_months``, ``warranty_months``, ``termination_notice_days``,
``governing_law`` and ``liability_cap`` ("USD 1000000"). Flags come from the default playbook
(:mod:`workers.enrich.playbook`) or the one passed in. Pure: no I/O beyond reading a playbook.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.clause_segments import Segment, segment
from workers.enrich.clause_types import EARLY_CHARS, classify
from workers.enrich.contract_fields import governing_law, money_amounts, parse_date, parse_duration, parties
from workers.enrich.playbook import Flag, Rule, evaluate, load_playbook

__all__ = ["Clause", "analyse_contract", "contract_fields", "enrich_contract"]

#: a card lists at most this many clause pointers per category
CARD_POINTERS = 3


@dataclass(frozen=True)
class Clause:
    """A classified clause: characters ``start:end`` of the contract and the CUAD categories it falls in."""

    start: int
    end: int
    number: str
    heading: str
    categories: tuple[str, ...]


def analyse_contract(text: str) -> list[Clause]:
    """Every clause of ``text`` with its categories (possibly none), in order; ``[]`` for blank text."""
    clauses = []
    for seg in segment(text):
        body = text[seg.start:seg.end]
        clauses.append(Clause(seg.start, seg.end, seg.number, seg.heading,
                              tuple(classify(body, seg.heading, seg.start))))
    return clauses


def _near(text: str, anchor: str, read: Callable[[str], str | None], before: int = 120,
          after: int = 160) -> str | None:
    """What ``read`` finds in a window around the first match of ``anchor`` that has one."""
    for m in re.finditer(anchor, text, re.I):
        found = read(text[max(0, m.start() - before):m.end() + after])
        if found:
            return found
    return None


def _months(window: str) -> str | None:
    found = parse_duration(window)
    return str(found.months) if found and found.months > 0 else None


def _days(window: str) -> str | None:
    found = parse_duration(window)
    return str(found.days) if found else None


def _notice_days(window: str) -> str | None:
    # the duration right before "notice" ("ninety (90) days' prior written notice") or after it
    m = re.search(r"((?:\S+\s+){0,4}\S+)\s*'?\s*(?:prior\s+|advance\s+)?(?:written\s+)?notice", window, re.I)
    if m and (found := _days(m.group(1))):
        return found
    m = re.search(r"notice.{0,60}", window, re.I | re.S)
    return _days(m.group(0)) if m else None


def _fields_of(category: str, body: str) -> dict[str, str]:
    """Key fields one clause of ``category`` states."""
    readers: dict[str, list[tuple[str, Callable[[str], str | None]]]] = {
        "Agreement Date": [("agreement_date", parse_date)],
        "Effective Date": [("effective_date", lambda t: _near(t, r"effective|commenc", parse_date, 0, 120))],
        "Expiration Date": [
            ("expiration_date", lambda t: _near(t, r"expir|terminat|until|through|ending", parse_date, 0, 100)),
            ("term_months", lambda t: _near(t, r"\b(?:term|period)\b", _months, 0, 120)),
        ],
        "Renewal Term": [("renewal_months", lambda t: _near(t, r"renew|extend|successive|additional", _months, 0,
                                                            100))],
        "Notice Period To Terminate Renewal": [("notice_days", lambda t: _near(t, r"notice", _notice_days, 120, 80))],
        "Governing Law": [("governing_law", governing_law)],
        "Non-Compete": [("non_compete_months", lambda t: _near(t, r"period|during|for|after|following", _months, 0,
                                                               120))],
        "Warranty Duration": [("warranty_months", lambda t: _near(t, r"warrant|period", _months, 0, 200))],
        "Termination For Convenience": [("termination_notice_days", lambda t: _near(t, r"notice", _notice_days,
                                                                                     120, 80))],
        "Cap On Liability": [("liability_cap", lambda t: next(iter(money_amounts(t)), None))],
    }
    out: dict[str, str] = {}
    for name, read in readers.get(category, []):
        if (value := read(body)) is not None:
            out[name] = value
    return out


def contract_fields(text: str, clauses: list[Clause]) -> dict[str, str]:
    """Key fields of the whole contract: for each, the first clause of the right category that states it."""
    fields: dict[str, str] = {}
    for clause in clauses:
        body = text[clause.start:clause.end]
        for category in clause.categories:
            for name, value in _fields_of(category, body).items():
                fields.setdefault(name, value)
    if "agreement_date" not in fields and (first := parse_date(text[:EARLY_CHARS])):
        fields["agreement_date"] = first  # a contract's first date is its date far more often than not
    names = parties(text[:EARLY_CHARS])
    if names:
        fields["parties"] = json.dumps(names)
    return fields


class _Lines:
    """Character offsets to 1-based line numbers, as ``str.splitlines`` counts lines."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def span(self, start: int, end: int) -> tuple[int, int]:
        first = bisect.bisect_right(self.starts, start)
        last = bisect.bisect_right(self.starts, max(start, end - 1))
        return first, min(last, len(self.starts) - 1)


def _label(clause: Clause | Segment) -> str:
    return " ".join(p for p in (clause.number, clause.heading) if p)


def _contract_name(path: str, fields: dict[str, str]) -> str:
    """How a question names a contract: its file name and its first parties. Every clause carries
    it, so "the governing law of the Zogenix agreement" finds that contract's clause, not another's."""
    stem = re.sub(r"[_\s]+", " ", Path(path).stem).strip()
    names = json.loads(fields.get("parties", "[]"))[:2]
    return f"{stem} ({'; '.join(names)})" if names else stem


def _clause_draft(path: str, text: str, clause: Clause, lines: _Lines, flags: list[Flag], contract: str) -> Draft:
    body = re.sub(r"[ \t]+", " ", text[clause.start:clause.end])
    body = re.sub(r"\n\s*\n\s*", "\n\n", body).strip()
    label = _label(clause)
    cats = list(clause.categories)
    first, last = lines.span(clause.start, clause.end)
    head = f"{'; '.join(cats)}: {label}" if cats else f"Clause {label}"
    title = (f"{' | '.join(cats)} — {label}" if cats else label or f"{path}:{first}-{last}").strip(" —")[:200]
    fields: dict[str, str] = {}
    for category in cats:
        fields.update(_fields_of(category, text[clause.start:clause.end]))
    meta = {"category": cats[0] if cats else "", "categories": json.dumps(cats), "number": clause.number,
            "heading": clause.heading, "fields": json.dumps(fields), "flags": json.dumps([str(f) for f in flags])}
    return Draft(RecordKind.CLAUSE, f"{head.strip()} — in {contract}\n{body}", (Evidence(path, first, last),),
                 title, meta)


def _card(path: str, clauses: list[Clause], fields: dict[str, str], flags: list[Flag], lines: _Lines) -> Draft:
    names = json.loads(fields.get("parties", "[]"))
    rows = [f"Contract: {path}", f"Parties: {'; '.join(names) or 'not found'}"]
    dates = [f"{label}: {fields[key]}" for key, label in (("agreement_date", "Agreement date"),
                                                           ("effective_date", "Effective date"),
                                                           ("expiration_date", "Expires"))
             if key in fields]
    rows.append(" | ".join(dates) or "Dates: not found")
    term = [f"term {fields['term_months']} months" if "term_months" in fields else "",
            f"renews for {fields['renewal_months']} months" if "renewal_months" in fields else "",
            f"notice to stop renewal {fields['notice_days']} days" if "notice_days" in fields else ""]
    rows.append(f"Term: {', '.join(t for t in term if t) or 'not stated'}")
    rows.append(f"Governing law: {fields.get('governing_law', 'not found')}")
    rows.append("Flags: " + ("; ".join(str(f) for f in flags) if flags else "none"))
    by_category: dict[str, list[Clause]] = {}
    for clause in clauses:
        for category in clause.categories:
            by_category.setdefault(category, []).append(clause)
    evidence: list[Evidence] = []
    for category, found in by_category.items():
        spans = [lines.span(c.start, c.end) for c in found[:CARD_POINTERS]]
        pointers = ", ".join(f"{_label(c) or 'clause'} (lines {a}-{b})" for c, (a, b) in
                             zip(found[:CARD_POINTERS], spans, strict=True))
        rows.append(f"{category}: {pointers}")
        evidence.extend(Evidence(path, a, b) for a, b in spans)
    if not evidence:
        evidence = [Evidence(path, *lines.span(clauses[0].start, clauses[0].end))]
    meta = {"parties": json.dumps(names), "categories": json.dumps(list(by_category)),
            "flags": json.dumps([str(f) for f in flags]), "fields": json.dumps(fields)}
    unique = tuple(sorted(set(evidence), key=lambda e: (e.start_line, e.end_line)))
    return Draft(RecordKind.CONTRACT_CARD, "\n".join(rows), unique, f"Contract card: {path}", meta)


def enrich_contract(path: str, text: str, playbook: Path | None = None,
                    rules: tuple[Rule, ...] | None = None) -> list[Draft]:
    """CLAUSE records and one CONTRACT_CARD for one contract; ``[]`` for empty or whitespace-only text.

    ``playbook`` is a user playbook TOML merged over the default (ConfigError if it is bad);
    ``rules`` (already loaded) takes precedence over it. Every draft's evidence satisfies
    ``text.splitlines()[start - 1:end]`` == the lines it came from.
    """
    if not text.strip():
        return []
    rules = rules if rules is not None else load_playbook(playbook)
    clauses = analyse_contract(text)
    fields = contract_fields(text, clauses)
    found = {c for clause in clauses for c in clause.categories}
    flags = evaluate(rules, found, fields)
    rule_of = {r.id: r for r in rules}
    lines = _Lines(text)
    contract = _contract_name(path, fields)
    drafts = []
    for clause in clauses:
        mine = [f for f in flags if set(rule_of[f.rule].requires) & set(clause.categories)]
        drafts.append(_clause_draft(path, text, clause, lines, mine, contract))
    drafts.append(_card(path, clauses, fields, flags, lines))
    return drafts
