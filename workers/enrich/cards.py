"""Item cards: one compact record per item, written at sleep time, that says what the item is.

At a small budget a pack holds few records, so it reaches few items (issue 12: a knowledge-base
pack of 1,024 tokens held records of 2-3 articles; the answer needed up to 30). A card is the
densest thing sleep time can write about an item: its title or path and one line of what it is
(a document's title and lead sentence, a module's docstring and names, a contract's parties,
dates and law, an account's holder and its orders by id and state), with the item's lines. The
query packs the cards of many likely items, each with why it matches (:mod:`sleepd.cards`),
before it spends the rest of the budget on detail for the top items.

A card is made from the item's other drafts, never from its raw text again: it says in fewer
words what they say, so it costs nothing to keep it in step with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sleepd.records import Draft, RecordKind

__all__ = ["CARD_CHARS", "item_card"]

#: a card's text at most (about 50 cl100k tokens): many of them must fit in 1,024 tokens
CARD_CHARS = 200
#: the record kinds that already describe a whole item, best first: a card condenses the first found
_WHOLE = (RecordKind.CONTRACT_CARD, RecordKind.ACCOUNT, RecordKind.FILE_SUMMARY)
#: when an item has none of those (a short article, a script): its first record of these kinds
_PARTS = (RecordKind.SECTION, RecordKind.CHUNK, RecordKind.SYMBOL, RecordKind.CLAUSE)
#: the lines of a whole-item record that carry no fact a card needs
_SKIP = re.compile(r"^(Summary:|Key facts:|Outline:|Imports:|Flags: none|Dates: not found|Term: not stated)")
_SPACE = re.compile(r"\s+")


def _squeeze(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _lines_of(draft: Draft) -> list[str]:
    """The lines of a whole-item record a card keeps, each squeezed to one line: a summary's
    bullets lose their "- " and "(line n)" (the card cites the item's lines once)."""
    kept = []
    for line in draft.text.splitlines():
        line = re.sub(r"\s*\(line \d+\)$", "", line.strip()).lstrip("- ").strip()
        if line and not _SKIP.match(line):
            kept.append(_squeeze(line))
    return kept


def _account_line(draft: Draft) -> str:
    """An account's holder, then each row the brief lists by its id and state only
    (``#W2378156 delivered``): an order is asked about by its id."""
    lines = draft.text.splitlines()
    rows = [" ".join(line[2:].split()[:2]).rstrip(":;,") for line in lines if line.startswith("- ")]
    return "; ".join([_squeeze(lines[0]), *(r for r in rows if not r.startswith("and "))])


def _describe(drafts: Sequence[Draft]) -> Draft | None:
    for kinds in (_WHOLE, _PARTS):
        for kind in kinds:
            found = next((d for d in drafts if d.kind == kind), None)
            if found is not None:
                return found
    return None


def item_card(path: str, drafts: Sequence[Draft]) -> list[Draft]:
    """The item's CARD, made from its ``drafts`` (none when they hold nothing to describe it):
    its title line and what it is, cut to :data:`CARD_CHARS` at a word; its evidence is that of
    the record it condenses (a whole file's lines, an account's rows, a contract's clauses)."""
    source = _describe(drafts)
    if source is None or not source.evidence:
        return []
    if source.kind == RecordKind.ACCOUNT:
        text = _account_line(source)
    else:
        # the card's header cites the path already
        lines = [line.removeprefix(f"{path}: ") for line in _lines_of(source) if line != f"Contract: {path}"]
        if source.kind in _PARTS:  # a part's title names the item better than its first line
            lines = [_squeeze(source.title), *lines] if source.title and source.title != path else lines
        text = "; ".join(dict.fromkeys(lines))
    if len(text) > CARD_CHARS:
        text = text[:CARD_CHARS].rsplit(" ", 1)[0] + " …"
    if not text:
        return []
    title = source.title.removesuffix(": summary").removesuffix(": brief").removeprefix("Contract card: ")
    return [Draft(RecordKind.CARD, text, source.evidence, title or path, {"from": source.kind.value})]
