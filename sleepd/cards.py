"""Cards at a small budget: a compact card for each of many likely items, before detail.

A small pack holds few records, so it reaches few items; a question whose answer spans several
articles, or that names no item, needs more of them (issue 12). Each item has a CARD written at
sleep time (:mod:`workers.enrich.cards`: its title or path and one dense line of what it is).
Here the query adds why the item matches: the line of the item's best candidate record that holds
most of the question's words, cited with that record's lines. :func:`card_plan` picks the likely
items (those whose item score is close to the best one's, at most :data:`CARD_ITEMS`), and the
pack (:mod:`sleepd.pack`) packs their cards first, up to :data:`CARD_SHARE` of the budget, then
the detail of the top items, which takes the place of their cards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sleepd.aggregates import is_aggregate
from sleepd.order import item_scores
from sleepd.schema import Item, Record
from sleepd.sparse import terms

__all__ = ["CARD_BUDGET", "CARD_ITEMS", "CARD_KIND", "CARD_SHARE", "CARD_SPREAD", "CONDENSED", "WHY_CHARS", "Card",
           "card_plan", "why"]

#: the record kind of an item's card (sleepd.records.RecordKind.CARD)
CARD_KIND = "card"
#: cards are packed at budgets up to this many tokens; above it, detail alone reaches enough items
CARD_BUDGET = 2048
#: at most this share of the budget goes to cards; the rest, at least, to detail
CARD_SHARE = 0.5
#: cards for at most this many items
CARD_ITEMS = 12
#: an item gets a card when its item score is within this of the best item's (a named contract
#: stands far above the others, and then there is nothing to card: 0.63-1.3 above the next, 10th-90th
#: percentile, contracts tune half). Tune halves at 256/512/1,024/2,048 (with sleepd.order.repeats):
#: 0.15: kb .939/.952/.978/.986, accounts .828/.916/.935/.953, contracts .396/.592/.796/.918;
#: 0.6: kb .945/.976/.988/.990, accounts .885/.982/.995/1.0, contracts .396/.592/.791/.921;
#: no limit (the top 12 items): contracts .263/.486/.673/.871. A kb proxy of several questions
#: in one message (2-6 gold articles) at 512/1,024/2,048: .429/.524/.620 at 0.15, .540/.665/.753
#: at 0.6, .542/.689/.824 with no limit. Code at file level (11 tune issues): .545/.545/.545/.727
#: at 0.15, .545/.545/.636/.818 at 0.6: a bug report's top file often leads by a name it quotes,
#: and the file at fault ranks 2nd-6th, out of 0.15's reach
CARD_SPREAD = 0.6
#: the kinds of record a card condenses (sleepd.records: a file's summary, a contract's card, an
#: account's brief): packed, they take the card's place, and a card is never packed beside one
CONDENSED = frozenset({"file_summary", "contract_card", "account"})
#: the matching line quoted in a card, at most
WHY_CHARS = 120


@dataclass(frozen=True)
class Card:
    """A card to pack: the item's card record, and its body with why it matches."""

    score: float
    row: Record
    #: the card with why it matches, for an item packed without detail
    body: str
    evidence: list[dict[str, Any]]

    @property
    def index(self) -> str:
        """The card alone, beside the item's detail (which says why it matches itself)."""
        return self.row.text


def why(question: frozenset[str], row: Record) -> str:
    """The line of ``row``'s text holding most of the question's words (the first of equals), cut
    to :data:`WHY_CHARS`; "" when no line holds any."""
    best, found = 0, ""
    for line in row.text.splitlines():
        line = " ".join(line.split())
        shared = len(question & terms(line))
        if shared > best:
            best, found = shared, line
    return found if len(found) <= WHY_CHARS else found[:WHY_CHARS].rsplit(" ", 1)[0] + " …"


def card_plan(query: str, budget: int, scored: Sequence[tuple[float, Record]], cards: Mapping[int, Record],
              items: Mapping[int, Item]) -> list[Card]:
    """The cards to pack, likely items best first: none above :data:`CARD_BUDGET`, when fewer
    than two items are likely, or when an aggregate leads (its lines are the items' cards: cards
    beside a portfolio cost the tune half's reworded portfolio questions .02 at 256 tokens). An
    item whose source changed since its card was written gets none (its detail is read from the
    source)."""
    if budget > CARD_BUDGET or not cards:
        return []
    ranked = item_scores(scored)
    if not ranked or is_aggregate(items[ranked[0][0]].key):
        return []
    top = ranked[0][1]
    likely = [(item, score) for item, score in ranked if score >= top - CARD_SPREAD][:CARD_ITEMS]
    if len(likely) < 2:
        return []
    question = terms(query)
    best_row: dict[int, Record] = {}
    for _, row in scored:
        best_row.setdefault(row.item_id, row)
    plan = []
    for item_id, score in likely:
        card, item = cards.get(item_id), items.get(item_id)
        if card is None or item is None or item.observed_hash != item.enriched_hash:
            continue
        evidence = json.loads(card.evidence)[:1]
        body = card.text
        matched = why(question, best_row[item_id])
        if matched and matched not in body:
            cited = json.loads(best_row[item_id].evidence)[:1]
            lines = f" (lines {cited[0]['start_line']}-{cited[0]['end_line']})" if cited else ""
            body += f"\nmatches: {matched}{lines}"
        plan.append(Card(score, card, body, evidence))
    return plan
