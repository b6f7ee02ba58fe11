"""Packing ranked records into a token budget, with exact accounting.

Items come before records and no two packed records of an item say the same thing
(:mod:`sleepd.order`); the result says which route served it: enriched memory, the source's raw
text (its windows), or both.

The pack is read as one text, :attr:`QueryResult.context`: each record under its header, records
separated by one newline. ``tokens_used`` is the token count of exactly that text, never above
the budget. Counting each record apart and adding the counts is not the same number: a BPE
token can span the newline where two records meet (a pack of 8,171 tokens was reported as 8,139
before, issue 12), so each record is charged with the newline before it, and the whole context
is counted once at the end and trimmed if the join still cost more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sleepd.cards import CARD_KIND, CARD_SHARE, CONDENSED, card_plan
from sleepd.order import BY_LINES, VERBATIM, Span, covered, item_order, repeats, shingles, spans
from sleepd.schema import Item, Record
from sleepd.tokens import Tokenizer

__all__ = ["MIN_PARTIAL", "RAW_KIND", "RAW_LINES", "ROUTES", "SEPARATOR", "PackedRecord", "QueryResult", "fit", "pack",
           "record_header", "route"]

#: a record cut to fit must keep at least this many tokens to be worth including
MIN_PARTIAL = 48
#: stale records are replaced by the current raw lines, at most this many
RAW_LINES = 80
#: the end of the record before, after which a record's cost is counted (an estimate of what it adds:
#: :func:`exact_fit` counts the whole context at the end)
TAIL_CHARS = 32
#: what stands between two records in the context
SEPARATOR = "\n"
#: candidates looked at to say how small a record is when a budget holds none
NOTE_CANDIDATES = 5
#: the record kind of an item's raw text windows (workers.enrich.windows)
RAW_KIND = "window"
#: what served a pack: enriched records only, raw text only (windows, a stale item's lines), or both
ROUTES = ("memory", "raw", "mixed")


@dataclass
class PackedRecord:
    text: str
    kind: str
    source: str
    item: str
    version: int
    score: float
    fresh: bool
    evidence: list[dict[str, Any]]
    title: str = ""
    #: the line the record is read under in the context (counted in ``tokens_used``)
    header: str = ""


@dataclass
class QueryResult:
    query: str
    budget: int
    tokens_used: int
    records: list[PackedRecord] = field(default_factory=list)
    stale_items: list[dict[str, str]] = field(default_factory=list)
    #: why the pack is empty, when it is: no readable candidate, or a budget too small for any
    note: str | None = None
    #: which records served the pack (one of :data:`ROUTES`); None when it is empty
    route: str | None = None

    @property
    def context(self) -> str:
        """The pack as one text, as an assistant reads it: each record under its header.
        ``tokens_used`` is its exact token count."""
        return SEPARATOR.join(r.header + r.text for r in self.records)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data, keys in field order, then ``context``. Built field by field:
        ``dataclasses.asdict`` deep-copies every record's evidence, 1 ms a pack of 1,024 tokens."""
        return {"query": self.query, "budget": self.budget, "tokens_used": self.tokens_used,
                "records": [{name: getattr(r, name) for name in _RECORD_FIELDS} for r in self.records],
                "stale_items": [dict(i) for i in self.stale_items], "note": self.note, "route": self.route,
                "context": self.context}


#: a packed record's fields, in order (its keys in :meth:`QueryResult.as_dict`)
_RECORD_FIELDS = tuple(f.name for f in fields(PackedRecord))


def fit(tokenizer: Tokenizer, header: str, body: str, remaining: int) -> tuple[str, int] | None:
    """``body`` and the cost of ``header + body`` if they fit in ``remaining`` tokens; else the body
    cut to fit, if at least :data:`MIN_PARTIAL` tokens remain and something is left; else None."""
    cost = tokenizer.count(header + body)
    if cost <= remaining:
        return body, cost
    if remaining < MIN_PARTIAL:
        return None
    body = tokenizer.truncate(header + body, remaining)[len(header):]
    cost = tokenizer.count(header + body)
    return (body, cost) if cost <= remaining and body.strip() else None


def record_header(kind: str, source: str, path: str, evidence: list[dict[str, Any]],
                  cited: set[tuple[str, str]]) -> str:
    """The line a packed record starts with: kind, source, item and lines; once an item has been
    cited in full, its later records say "same item" instead of repeating a long path."""
    lines = f"{evidence[0]['start_line']}-{evidence[0]['end_line']}" if evidence else ""
    if (source, path) in cited:
        return f"[{kind}] same item, lines {lines}\n" if lines else f"[{kind}] same item\n"
    return f"[{kind}] {source}:{path}:{lines}\n" if lines else f"[{kind}] {source}:{path}\n"


def raw_region(root: Path | None, path: str, evidence: list[dict[str, Any]]) -> str | None:
    """The current lines of a changed item's first evidence span, or None if unreadable."""
    if root is None or not evidence:
        return None
    span = evidence[0]
    try:
        lines = (root / path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    start = max(1, int(span["start_line"]))
    end = min(len(lines), int(span["end_line"]), start + RAW_LINES - 1)
    return "\n".join(lines[start - 1:end]) if end >= start else None


def exact_fit(tokenizer: Tokenizer, result: QueryResult) -> QueryResult:
    """Count the whole context and, while the joins made it longer than the budget, cut the last
    record by the excess (or drop it when too little would be left). Sets ``tokens_used``."""
    while True:
        used = tokenizer.count(result.context)
        if used <= result.budget or not result.records:
            result.tokens_used = used
            return result
        last = result.records[-1]
        lead = SEPARATOR if len(result.records) > 1 else ""
        own = tokenizer.count(lead + last.header + last.text)
        fitted = fit(tokenizer, lead + last.header, last.text, own - (used - result.budget))
        if fitted is None or fitted[0] == last.text:
            result.records.pop()
        else:
            last.text = fitted[0]


@dataclass
class _Entry:
    """A record chosen for the pack, before headers: its row, the body packed (cut or raw lines)."""

    score: float
    row: Record
    body: str
    fresh: bool
    evidence: list[dict[str, Any]]
    #: its lines, when its body holds them word for word (a verbatim kind, packed whole and fresh)
    holds: list[Span]


def _render(entries: list[_Entry]) -> list[PackedRecord]:
    """The packed records of ``entries``, each under its header (an item cited once in full)."""
    cited: set[tuple[str, str]] = set()
    records = []
    for e in entries:
        header = record_header(e.row.kind, e.row.source, e.row.path, e.evidence, cited)
        cited.add((e.row.source, e.row.path))
        records.append(PackedRecord(
            text=e.body, kind=e.row.kind, source=e.row.source, item=e.row.path, version=e.row.version,
            score=round(e.score, 4), fresh=e.fresh, evidence=e.evidence, title=e.row.title, header=header))
    return records


@dataclass(frozen=True)
class _Packed:
    """An item's packed records (cards aside), the lines they hold word for word, and their word triples."""

    entries: list[_Entry]
    held: list[Span]
    said: frozenset[tuple[str, str, str]]


class _Packing:
    """The records chosen so far, their exact cost, and how to add one more."""

    def __init__(self, tokenizer: Tokenizer, items: dict[int, Item], roots: dict[str, Path] | None) -> None:
        self.tokenizer = tokenizer
        self.items = items
        self.roots = roots or {}
        self.entries: list[_Entry] = []
        self.used = 0
        #: the end of the last packed record (what the next one's cost is counted after)
        self.tail = ""
        #: the items packed with a card (until detail takes its place): True for a card packed
        #: beside the item's detail (without why it matches), False for one packed instead of it
        self.carded: dict[int, bool] = {}
        #: the ids of the records read already (packed, or said by one that is)
        self.seen: set[str] = set()
        self.stale: dict[int, Item] = {}
        #: each text's word triples, by text: a pack compares every candidate with what its item's
        #: packed records say (at 8,192 tokens, worked out afresh each time, packing cost twice as much)
        self._triples: dict[str, frozenset[tuple[str, str, str]]] = {}
        #: what each item's packed records hold and say, while the pack does not change (``changes`` counts)
        self._packed: dict[int, tuple[int, _Packed]] = {}
        self.changes = 0

    def says(self, text: str) -> frozenset[tuple[str, str, str]]:
        """What ``text`` says: its word triples (:func:`sleepd.order.shingles`), worked out once a pack."""
        found = self._triples.get(text)
        if found is None:
            found = self._triples[text] = shingles(text)
        return found

    def packed(self, item_id: int) -> _Packed:
        """The packed records of an item, cards aside (a card is a pointer that detail takes the
        place of), with the lines they hold and what they say; worked out again when the pack changes."""
        changes, found = self._packed.get(item_id, (-1, None))
        if found is None or changes != self.changes:
            entries = [e for e in self.entries if e.row.item_id == item_id and e.row.kind != CARD_KIND]
            found = _Packed(entries, [span for e in entries for span in e.holds],
                            frozenset().union(*(self.says(e.body) for e in entries)))
            self._packed[item_id] = (self.changes, found)
        return found

    def recount(self, entries: list[_Entry]) -> int:
        records = _render(entries)
        return self.tokenizer.count(SEPARATOR.join(r.header + r.text for r in records))

    def take(self, entries: list[_Entry], used: int) -> None:
        self.entries, self.used = entries, used
        self.changes += 1
        last = _render(entries)[-1] if entries else None
        self.tail = (last.header + last.text)[-TAIL_CHARS:] if last else ""

    def add(self, entry: _Entry, limit: int, whole: bool = False) -> bool:
        """Add ``entry`` if it fits in ``limit`` tokens (cut to fit unless ``whole``)."""
        row = entry.row
        header = record_header(row.kind, row.source, row.path, entry.evidence,
                               {(e.row.source, e.row.path) for e in self.entries})
        # the record's cost is what it adds to the context: counted after the end of the record
        # before and the newline between (".\n" is one token: counted apart, each join cost one
        # token too many, 266 on a pack of 266 short records)
        lead = self.tail + SEPARATOR if self.entries else ""
        base = self.tokenizer.count(self.tail) if self.entries else 0
        fitted = fit(self.tokenizer, lead + header, entry.body, limit - self.used + base)
        if fitted is None or (whole and fitted[0] != entry.body):
            return False
        cut, cost = fitted
        self.used += cost - base
        self.tail = (header + cut)[-TAIL_CHARS:]
        if cut != entry.body:
            entry = _Entry(entry.score, row, cut, entry.fresh, entry.evidence, [])
        self.entries.append(entry)
        self.changes += 1
        self.seen.add(row.id)
        return True

    def detail(self, ordered: Sequence[tuple[float, Record]], limit: int) -> None:
        """Pack ``ordered`` records not read yet while ``limit`` tokens hold them: a record whose
        lines a packed record of its item holds is left out, one that holds the lines of packed
        records of its item takes their place, and so does an item's first record its card's."""
        for score, row in ordered:
            if limit - self.used < MIN_PARTIAL // 2:
                return
            if row.id in self.seen:
                continue
            evidence = json.loads(row.evidence)
            wanted = spans(evidence)
            packed = self.packed(row.item_id)
            by_words = row.kind not in BY_LINES
            if covered(wanted, packed.held) or (by_words and repeats(self.says(row.text), packed.said)):
                self.seen.add(row.id)
                continue  # packed records of its item hold these lines, or say these words, already
            item = self.items[row.item_id]
            fresh = item.observed_hash == item.enriched_hash
            body = row.text
            if not fresh:
                self.stale[row.item_id] = item
                body = raw_region(self.roots.get(row.source), row.path, evidence) or body
            holds = wanted if fresh and row.kind in VERBATIM else []
            entry = _Entry(score, row, body, fresh, evidence, holds)
            if row.item_id in self.carded and (not self.carded[row.item_id] or row.kind in CONDENSED):
                # the item's detail takes the place of its card with why it matches, and a summary
                # that of the card it condenses, when it fits whole: a cut record may say less
                before = (self.entries, self.used)
                kept = [e for e in self.entries if not (e.row.item_id == row.item_id and e.row.kind == CARD_KIND)]
                self.take(kept, self.recount(kept))
                if self.add(entry, limit, whole=True):
                    del self.carded[row.item_id]
                else:
                    self.take(*before)
                continue
            says = self.says(body)
            replaced = [e for e in packed.entries if (holds and covered(spans(e.evidence), holds))
                        or (by_words and e.row.kind not in BY_LINES and repeats(self.says(e.body), says))]
            if replaced:
                # this record says all that packed records of its item say, and more: it takes their
                # place, where the first of them was (the pack stays best first)
                at = self.entries.index(replaced[0])
                kept = [e for e in self.entries if e not in replaced]
                trial = [*kept[:at], entry, *kept[at:]]
                used = self.recount(trial)
                if used <= limit:
                    self.take(trial, used)
                    self.seen.add(row.id)
                continue
            self.add(entry, limit)


def pack(tokenizer: Tokenizer, query: str, budget: int, scored: Sequence[tuple[float, Record]],
         items: dict[int, Item], roots: dict[str, Path] | None = None,
         cards: Mapping[int, Record] | None = None) -> QueryResult:
    """Pack ``scored`` (best first) into ``budget`` tokens, each record under its header: items
    before records (:func:`sleepd.order.item_order`), a record whose lines a packed record of its
    item already holds left out, and one that holds the lines of packed records of its item put in
    their place. A stale item's record is replaced by its current raw lines (read from ``roots``).
    At a small budget, the ``cards`` (item id -> its CARD record) of the likely items come first
    (:func:`sleepd.cards.card_plan`), up to a share of the budget; an item's first detail record
    takes the place of its card, so the two never say the same thing twice."""
    result = QueryResult(query=query, budget=budget, tokens_used=0)
    packing = _Packing(tokenizer, items, roots)
    ordered = item_order(scored)
    plan = card_plan(query, budget, scored, cards or {}, items)
    if plan:
        # coarse to fine: the detail of the top items in part of the budget, then a card for each
        # likely item (with why it matches where it has no detail yet), then more detail
        packing.detail(ordered, budget - int(budget * CARD_SHARE))
        for card in plan:
            item = card.row.item_id
            detail = [e.row.kind for e in packing.entries if e.row.item_id == item]
            if CONDENSED.intersection(detail):
                continue  # its summary is packed: the card would say less of the same
            entry = _Entry(card.score, card.row, card.index if detail else card.body, True, card.evidence, [])
            if packing.add(entry, budget, whole=True):
                packing.carded[item] = bool(detail)
    packing.detail(ordered, budget)
    result.records, result.tokens_used = _render(packing.entries), packing.used
    result.stale_items = [{"source": i.source, "item": i.key, "state": i.state} for i in packing.stale.values()]
    result = exact_fit(tokenizer, result)
    if result.records:
        result.route = route(result.records)
    else:
        result.note = empty_note(tokenizer, budget, scored)
    return result


def route(records: Sequence[PackedRecord]) -> str:
    """Which records served a pack: ``"raw"`` when all are the source's own text (raw windows, or a
    stale item's current lines), ``"memory"`` when none is, else ``"mixed"``."""
    raw = sum(1 for r in records if r.kind == RAW_KIND or not r.fresh)
    return "memory" if raw == 0 else "raw" if raw == len(records) else "mixed"


def empty_note(tokenizer: Tokenizer, budget: int, scored: Sequence[tuple[float, Record]]) -> str:
    """Why nothing was packed, in words: an empty pack must never look like an answer."""
    if not scored:
        return "nothing in memory matches the question, or nothing the caller may read"
    smallest = min(min(tokenizer.count(row.text), MIN_PARTIAL) for _, row in scored[:NOTE_CANDIDATES])
    return (f"the budget of {budget} tokens cannot hold a single record: the best candidates need at least "
            f"{smallest} tokens; ask with a larger budget")
