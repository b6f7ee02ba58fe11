"""The contracts portfolio: one line per contract per key field, and an index of the contracts that
have each kind of clause, read from the contract cards.

Grouped by field (renewal first: the question asked most across a portfolio), so "which contracts renew
automatically?" reads one block of one record. A table past :data:`PORTFOLIO_CHARS` is split into several
``PORTFOLIO`` records, lines kept whole. Each line's evidence is the clause the card points to for it.

The clause index has one ``PORTFOLIO`` record (or several, split the same way) per CUAD category found
in any contract: "Contracts with a Non-Compete clause (12 of 50)", one line per contract with the
lines of its clauses, so "which contracts have a non-compete?" is answered by naming them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sleepd.aggregates import InputRecord, split_rows
from sleepd.records import Draft, Evidence, RecordKind
from workers.enrich.clause_types import CATEGORIES

__all__ = ["FIELDS", "PORTFOLIO_CHARS", "clause_index", "portfolio"]

#: one portfolio record holds at most this many characters (about 1,000 tokens)
PORTFOLIO_CHARS = 4000
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


def portfolio(cards: Sequence[InputRecord], source: str) -> list[Draft]:
    """PORTFOLIO drafts from the sources' CONTRACT_CARD records; ``[]`` when there are none."""
    cards = sorted((c for c in cards if c.kind == "contract_card" and c.evidence), key=lambda c: c.path)
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
    return drafts + clause_index(cards, source)


def clause_index(cards: Sequence[InputRecord], source: str) -> list[Draft]:
    """PORTFOLIO drafts, per CUAD category, naming the contracts whose card lists that category."""
    cards = sorted((c for c in cards if c.kind == "contract_card" and c.evidence), key=lambda c: c.path)
    drafts = []
    for category in (c.name for c in CATEGORIES):
        rows = []
        for card in cards:
            found = _LINES.findall(_card_lines(card.text).get(category, ""))
            if found:  # ("Parties: A; B" names them: only a line with clause pointers counts)
                spans = [Evidence(card.path, int(a), int(b)) for a, b in found]
                rows.append((f"{card.path} (lines {', '.join(f'{a}-{b}' for a, b in found)})", spans))
        if not rows:
            continue
        named = f"Contracts with {'an' if category[0] in 'AEIOU' else 'a'} {category} clause"
        header = f"{named} ({len(rows)} of {len(cards)} in source {source}):"
        parts = split_rows(rows, lambda row: row[0], PORTFOLIO_CHARS, header)
        for i, part in enumerate(parts):
            numbered = f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""
            evidence = tuple(dict.fromkeys(e for _, spans in part for e in spans))
            drafts.append(Draft(RecordKind.PORTFOLIO, "\n".join([header, *(line for line, _ in part)]), evidence,
                                title=f"{named}{numbered}",
                                meta={"category": category, "contracts": str(len(rows))}))
    return drafts
