"""The contracts portfolio: one line per contract per key field, and an index of the contracts that
have each kind of clause, read from the contract cards.

Grouped by field (renewal first: the question asked most across a portfolio), so "which contracts renew
automatically?" reads one block of one record. A table past :data:`PORTFOLIO_CHARS` is split into several
``PORTFOLIO`` records, lines kept whole. Each line's evidence is the clause the card points to for it.

The clause index has one ``PORTFOLIO`` record (or several, split the same way) per CUAD category found
in any contract: "Contracts with a Non-Compete clause (what it means, in plain words): 12 of 50", one
line per contract with the lines of its clauses and a short excerpt of the first, so "which of our
contracts stop us competing?" is answered by naming them all, each with what it says and where.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sleepd.aggregates import InputRecord, split_rows
from sleepd.glossary import describe
from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.clause_types import CATEGORIES, Category

__all__ = ["EXCERPT_WORDS", "FIELDS", "PORTFOLIO_CHARS", "clause_index", "excerpt", "portfolio"]

#: one portfolio record holds at most this many characters (about 2,000 tokens)
PORTFOLIO_CHARS = 8000
#: an excerpt of a clause in the clause index: at most this many words (15-20 tokens) ...
EXCERPT_WORDS = 12
#: ... and characters (a redacted clause's "[***]" runs are long words)
EXCERPT_CHARS = 140
#: ... starting this many words before the phrase that makes the clause its category
EXCERPT_LEAD = 3
#: field -> the card's CUAD category lines whose clauses are its evidence
FIELDS: dict[str, tuple[str, ...]] = {
    "renewal": ("Renewal Term", "Notice Period To Terminate Renewal"),
    "term": ("Expiration Date",),
    "dates": ("Agreement Date", "Effective Date", "Expiration Date"),
    "governing law": ("Governing Law",),
    "parties": ("Parties",),
    "flags": (),
}
_LINES = re.compile(r"\(lines (\d+)-(\d+)\)")


def _card_lines(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.split("\n"):
        label, sep, value = line.partition(": ")
        if sep and label not in out:
            out[label] = value.strip()
        if line.startswith(("Agreement date: ", "Effective date: ", "Expires: ")):
            out.setdefault("_dates", line)  # the card puts the dates it found on one line
    return out


def _renewal(card: dict[str, str]) -> str:
    term = card.get("Term", "")
    months = re.search(r"renews for (\d+) months", term)
    notice = re.search(r"notice to stop renewal (\d+) days", term)
    automatic = months is not None or "Renewal Term" in card or "Renews automatically" in card.get("Flags", "")
    if not automatic:
        return "no automatic renewal found"
    parts = ["renews automatically"]
    if months:
        parts.append(f"for {months.group(1)} months at a time")
    if notice:
        parts.append(f"unless notice is given {notice.group(1)} days before")
    return " ".join(parts)


def _value(field: str, card: dict[str, str]) -> str:
    if field == "renewal":
        return _renewal(card)
    if field == "term":
        return card.get("Term", "not stated")
    if field == "dates":
        return card.get("_dates") or "not found"
    if field == "governing law":
        return card.get("Governing law", "not found")
    if field == "parties":
        return card.get("Parties", "not found")
    return card.get("Flags", "none")


def _evidence(field: str, path: str, card: dict[str, str], fallback: Evidence) -> list[Evidence]:
    spans = [Evidence(path, int(a), int(b)) for category in FIELDS[field]
             for a, b in _LINES.findall(card.get(category, ""))]
    return spans or [fallback]


def portfolio(records: Sequence[InputRecord], source: str) -> list[Draft]:
    """PORTFOLIO drafts from the sources' CONTRACT_CARD records (and CLAUSE records, for the clause
    index's excerpts); ``[]`` when there are no cards."""
    cards = sorted((c for c in records if c.kind == "contract_card" and c.evidence), key=lambda c: c.path)
    if not cards:
        return []
    rows: list[tuple[str, str, list[Evidence]]] = []
    for field in FIELDS:
        for card in cards:
            parsed = _card_lines(card.text)
            first = Evidence(*card.evidence[0])
            rows.append((field, f"{card.path} | {field} | {_value(field, parsed)}",
                         _evidence(field, card.path, parsed, first)))
    header = (f"Contract portfolio of source {source}: {len(cards)} contracts, one line per contract per field "
              f"(contract | field | value).")
    parts = split_rows(rows, lambda row: row[1], PORTFOLIO_CHARS, header)
    drafts = []
    for i, part in enumerate(parts):
        fields = list(dict.fromkeys(f for f, _, _ in part))
        evidence = tuple(dict.fromkeys(e for _, _, spans in part for e in spans))
        numbered = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
        drafts.append(Draft(RecordKind.PORTFOLIO, "\n".join([header, *(line for _, line, _ in part)]), evidence,
                            title=f"Contract portfolio: {', '.join(fields)}{numbered}",
                            meta={"fields": ",".join(fields), "contracts": str(len(cards))}))
    return drafts + clause_index(cards, source, records)


def _category(name: str) -> Category | None:
    return next((c for c in CATEGORIES if c.name == name), None)


def excerpt(category: str, body: str, words: int = EXCERPT_WORDS) -> tuple[str, float]:
    """The words of a clause that make it ``category`` (from a little before its strongest phrase),
    at most ``words`` of them, with "..." where cut; and how strongly it reads as that category
    (the weights of the category's phrases it holds)."""
    flat = " ".join(body.split())
    found = _category(category)
    start, strength = 0, 0.0
    if found is not None:
        best: tuple[float, int] | None = None
        for pattern, weight in found.phrases:
            if (m := pattern.search(flat)) is not None:
                strength += weight
                if best is None or (weight, -m.start()) > (best[0], -best[1]):
                    best = (weight, m.start())
        if best is not None:
            start = best[1]
    before = flat[:start].split()[-EXCERPT_LEAD:] if start else []
    after = flat[start:].split()
    picked = before + after
    cut = picked[:words]
    text = " ".join(cut)[:EXCERPT_CHARS]
    lead = "..." if len(before) < len(flat[:start].split()) else ""
    tail = "..." if len(cut) < len(picked) or len(" ".join(cut)) > EXCERPT_CHARS else ""
    return f"{lead}{text}{tail}", strength


def _bodies(clauses: Sequence[InputRecord]) -> dict[tuple[str, int, int], str]:
    """Each clause's text without its first line (categories, heading, contract), by its span."""
    return {(c.path, *c.evidence[0][1:]): c.text.partition("\n")[2] for c in clauses
            if c.kind == "clause" and c.evidence}


def clause_index(cards: Sequence[InputRecord], source: str, clauses: Sequence[InputRecord] = ()) -> list[Draft]:
    """PORTFOLIO drafts, per CUAD category, naming the contracts whose card lists that category:
    one line per contract with the lines of its clauses and an excerpt of the first (read from
    ``clauses``, the contracts' CLAUSE records), strongest first. Each part's first line says what
    the category means in plain words, so a question that never names it still finds it."""
    cards = sorted((c for c in cards if c.kind == "contract_card" and c.evidence), key=lambda c: c.path)
    bodies = _bodies(clauses)
    drafts = []
    for category in (c.name for c in CATEGORIES):
        rows = []
        for card in cards:
            found = _LINES.findall(_card_lines(card.text).get(category, ""))
            if not found:  # ("Parties: A; B" names them: only a line with clause pointers counts)
                continue
            spans = [Evidence(card.path, int(a), int(b)) for a, b in found]
            body = bodies.get((card.path, spans[0].start_line, spans[0].end_line), "")
            quote, strength = excerpt(category, body) if body else ("", 0.0)
            where = f"- {card.path}, lines {', '.join(f'{a}-{b}' for a, b in found)}"
            rows.append((f'{where}: "{quote}"' if quote else where, spans, strength))
        if not rows:
            continue
        rows.sort(key=lambda row: -row[2])  # stable: by path among equals
        named = f"Contracts with {'an' if category[0] in 'AEIOU' else 'a'} {category} clause"
        meaning = describe(category)
        header = (f"{named} ({meaning}): {len(rows)} of {len(cards)} contracts in source {source}, one line "
                  "each: file, lines, excerpt.")
        parts = split_rows(rows, lambda row: row[0], PORTFOLIO_CHARS, header)
        for i, part in enumerate(parts):
            numbered = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
            evidence = tuple(dict.fromkeys(e for _, spans, _ in part for e in spans))
            drafts.append(Draft(RecordKind.PORTFOLIO, "\n".join([header, *(line for line, _, _ in part)]), evidence,
                                title=f"{named}{numbered}",
                                meta={"category": category, "contracts": str(len(rows))}))
    return drafts
