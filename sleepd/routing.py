"""Questions across items, routed to the aggregates that answer them at once.

"Which of our contracts renew automatically?" is asked of a whole source, not of one contract: the
answer is a list, and only an aggregate (the clause index, the contract portfolio, the repository
map, the source overview) holds it within a small budget. The best single clause of one contract
embeds closer to such a question than the list does, so a plain ranking packs a handful of clauses
and names a handful of contracts. Here the query

1. tells a cross-item question by its shape (:func:`cross_item`): a question word or a quantifier
   over a plural noun that names the items of a memory ("which agreements", "all our customers",
   "any of the files"), or a collective possessive ("our contracts"), in a short question (a
   long message that says "all files" in passing is about its own case);
2. makes the aggregates candidates even when the first search did not reach them: a second dense
   search over the aggregate items alone, under the caller's access list (:func:`aggregate_items`);
3. ranks aggregates by :data:`ROUTE_BOOST` higher, and keeps every part of the best aggregate
   together right after its best part (:func:`promote`), so the pack spends the budget on its lines
   in their order, not on one part and a scatter of single clauses.

An aggregate is only ever as readable as its access group (:mod:`sleepd.aggregates`), and the rows
added here pass the same ledger check as every other candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlmodel import col, select

from sleepd.aggregates import AGGREGATE_PREFIX, is_aggregate
from sleepd.index import Hit, VectorIndex
from sleepd.ledger import Ledger
from sleepd.schema import ItemRow, ItemState, Record
from sleepd.sparse import query_vector

__all__ = ["ROUTE_BOOST", "aggregate_hits", "aggregate_items", "cross_item", "promote"]

#: what a cross-item question adds to an aggregate's score: about the gap between a close cosine
#: (one contract's clause, ~0.6) and a list's (~0.45) on MiniLM
ROUTE_BOOST = 0.15
#: a cross-item question is short: past this many words, a message is about its own case
MAX_WORDS = 40
#: nouns that name the items of a memory (singular; plurals are made below)
ITEM_NOUNS = ("contract", "agreement", "deal", "document", "file", "module", "package", "repository", "repo",
              "source", "account", "customer", "client", "vendor", "supplier", "counterparty", "partner",
              "licensee", "licensor", "distributor", "lease", "policy", "article")
_PLURAL = "|".join(sorted({n[:-1] + "ies" if n.endswith("y") and n[-2] not in "aeiou" else n + "s"
                           for n in ITEM_NOUNS}, key=len, reverse=True))
_SINGULAR = "|".join(sorted(ITEM_NOUNS, key=len, reverse=True))
#: a few words between the question word and the noun: "which of our customer accounts"
_GAP = r"(?:\s+[\w'-]+){0,3}?"
_PATTERNS = (
    # which / what / how many / list ... <items>
    rf"\b(?:which|what|list|name|count|how\s+many){_GAP}\s+(?:{_PLURAL})\b",
    # all / any / every / each / across / none of ... <item or items>
    rf"\b(?:all|any|every|each|across|none\s+of|both){_GAP}\s+(?:{_PLURAL}|{_SINGULAR})\b",
    # our / my ... <items>: the collection itself
    rf"\b(?:our|my){_GAP}\s+(?:{_PLURAL})\b",
    # the words of the aggregates themselves
    r"\b(?:portfolio|overview|repository\s+map|repo\s+map)\b",
)
_CROSS = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.I)
#: a part number at the end of an aggregate's title: "Contracts with a Non-Compete clause (2/5)"
_PART = re.compile(r"\s*\((\d+)/\d+\)$")


def cross_item(question: str) -> bool:
    """Whether ``question`` asks across the items of a memory rather than about one of them. A long
    message (a customer's story, a bug report) is about its own case: "all files" in passing does
    not make it a question about the collection, so only :data:`MAX_WORDS` words or fewer count."""
    return len(question.split()) <= MAX_WORDS and _CROSS.search(question) is not None


def aggregate_items(ledger: Ledger) -> list[int]:
    """The ids of the live aggregate items (every source's; the index filters by access)."""
    with ledger.read() as s:
        ids = s.exec(select(ItemRow.id).where(col(ItemRow.key).like(AGGREGATE_PREFIX + "%"),
                                              ItemRow.state != ItemState.DELETED.value,
                                              col(ItemRow.version) > 0)).all()
    return sorted(i for i in ids if i is not None)


def aggregate_hits(index: VectorIndex, ledger: Ledger, vector: Sequence[float], question_terms: frozenset[str],
                   pool: int, access: Sequence[str] | None) -> tuple[list[Hit], list[Hit]]:
    """A dense and a sparse search over the aggregate items alone, ``pool`` hits each at most (the
    query fuses them as it fuses its first stage)."""
    ids = aggregate_items(ledger)
    if not ids:
        return [], []
    return (index.search(vector, pool, access=access, items=ids),
            index.search_sparse(query_vector(question_terms), pool, access=access, items=ids))


def _family(row: Record) -> tuple[int, str]:
    """The parts of one aggregate record: same item, same title but for its part number."""
    return row.item_id, _PART.sub("", row.title)


def _part(row: Record) -> int:
    found = _PART.search(row.title)
    return int(found.group(1)) if found else 0


def promote(scored: Sequence[tuple[float, Record]]) -> list[tuple[float, Record]]:
    """``scored`` (best first) with aggregates raised by :data:`ROUTE_BOOST` and the parts of the
    best aggregate record moved together, in part order, to where its best part ranks. Ties keep
    the order they came in (a total order, broken by content), so the result is deterministic."""
    boosted = sorted(((s + ROUTE_BOOST if is_aggregate(r.path) else s, r) for s, r in scored),
                     key=lambda pair: -round(pair[0], 6))
    at = next((i for i, (_, r) in enumerate(boosted) if is_aggregate(r.path)), None)
    if at is None:
        return boosted
    family = _family(boosted[at][1])
    parts = sorted((p for p in boosted if is_aggregate(p[1].path) and _family(p[1]) == family),
                   key=lambda pair: _part(pair[1]))
    moved = {id(r) for _, r in parts}
    rest = [p for p in boosted[at:] if id(p[1]) not in moved]
    return boosted[:at] + parts + rest
