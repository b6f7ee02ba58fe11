"""Which of the ranked records a pack reads, and in what order: items before records, and no
record that says again what a packed record of its item already says.

The query scores records one by one; a question is answered by items (a file, a contract, an
article). Packing records in score order let one item's records crowd each other out (issue 12: a
knowledge-base pack of 1,024 tokens held a file summary, a likely-questions record and sections of
the same 2-3 articles). Here:

* :func:`item_order` scores each item from its records (its best one, plus a small share of the
  next ones) and orders records coarse to fine: first the best record of every likely item (one
  whose score is close to the best item's), items best first, then the other records by score;
* :func:`covered` says whether a record's evidence lies inside the lines that packed records of the
  same item hold word for word (:data:`VERBATIM` kinds): then the record adds nothing;
* :func:`repeats` says whether a record's words are mostly said already by packed records of its
  item, whatever lines either cites: an article's summary and its likely questions quote its
  sentences, which a packed window of the article holds (issue 12: a kb pack of 1,024 tokens was
  one article's window, summary and likely questions while the gold article ranked second). A
  symbol is judged by its lines alone (:data:`BY_LINES`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["BY_LINES", "CARD_MARGIN", "ITEM_SUPPORT", "ITEM_SUPPORT_RECORDS", "REPEAT_SHARE", "VERBATIM", "Span",
           "covered", "item_order", "item_scores", "repeats", "shingles", "spans"]

#: an item's score is its best record's plus this share of each of its next records' scores...
ITEM_SUPPORT = 0.1
#: ... of at most this many next records (a large file's many symbols must not outweigh a better one)
ITEM_SUPPORT_RECORDS = 2
#: an item is likely when its score is within this of the best item's: its best record is packed
#: before the detail of any item (a named contract's score stands far above the others')
CARD_MARGIN = 0.1
#: kinds whose text is their lines word for word: a span inside one of them, once packed, is said
VERBATIM = frozenset({"window", "chunk", "section", "clause", "row"})
#: kinds judged by their lines alone, never by their words: code repeats its own words (two
#: functions of a file that share most of their word triples are still two functions; leaving one
#: out for the other cost code at function level .263 -> .211 at 1,024 tokens, issue 12)
BY_LINES = frozenset({"symbol"})
#: a record repeats its item's packed records when at least this share of its word triples is in them
REPEAT_SHARE = 0.5
_WORD = re.compile(r"\w+")

#: a source span: path, first and last line (1-based, inclusive)
Span = tuple[str, int, int]
Scored = TypeVar("Scored", bound=tuple[float, Any])


def item_order(scored: Sequence[Scored]) -> list[Scored]:
    """``scored`` ((score, record) best first, with records that have an ``item_id``) reordered:
    the best record of each likely item, items best first, then every other record in score order.
    Items tied on score keep the order of their best records, so the order is as deterministic as
    ``scored``. (Packing the detail item by item instead was measured and dropped: it helped the
    quick accounts corpus, .92 -> 1.0 at 1,024 tokens, and cost code half its file-level recall at
    2,048, .56 -> .33: one file's symbols crowded out the next files.)"""
    by_item: dict[int, list[Scored]] = {}
    for pair in scored:
        by_item.setdefault(pair[1].item_id, []).append(pair)
    ranked = item_scores(scored)
    if not ranked:
        return []
    firsts = [by_item[item][0] for item, score in ranked if score >= ranked[0][1] - CARD_MARGIN]
    chosen = {id(pair) for pair in firsts}
    return firsts + [pair for pair in scored if id(pair) not in chosen]


def item_scores(scored: Sequence[tuple[float, Any]]) -> list[tuple[int, float]]:
    """Each item of ``scored`` with its score (its best record's, plus :data:`ITEM_SUPPORT` of each
    of its next :data:`ITEM_SUPPORT_RECORDS`), best first; ties keep the order of their best records."""
    by_item: dict[int, list[float]] = {}
    for score, row in scored:
        by_item.setdefault(row.item_id, []).append(score)
    totals = {item: s[0] + ITEM_SUPPORT * sum(s[1:1 + ITEM_SUPPORT_RECORDS]) for item, s in by_item.items()}
    first = {item: i for i, item in enumerate(by_item)}
    return sorted(totals.items(), key=lambda pair: (-round(pair[1], 6), first[pair[0]]))


def spans(evidence: Iterable[dict[str, Any]]) -> list[Span]:
    """A record's evidence as spans."""
    return [(str(e["path"]), int(e["start_line"]), int(e["end_line"])) for e in evidence]


def covered(wanted: Sequence[Span], held: Iterable[Span]) -> bool:
    """Whether every span of ``wanted`` lies inside the union of ``held`` (adjacent spans join);
    False for a record with no evidence: nothing says it repeats anything."""
    if not wanted:
        return False
    by_path: dict[str, list[tuple[int, int]]] = {}
    for path, start, end in held:
        by_path.setdefault(path, []).append((start, end))
    for path, start, end in wanted:
        reach = start - 1  # the last line known to be held, walking up from ``start``
        for first, last in sorted(by_path.get(path, [])):
            if first > reach + 1:
                break
            reach = max(reach, last)
        if reach < end:
            return False
    return True


def shingles(text: str) -> frozenset[tuple[str, str, str]]:
    """The text's runs of three words (lower-cased): what it says, whatever its lines or layout."""
    words = _WORD.findall(text.lower())
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def repeats(own: frozenset[tuple[str, str, str]], said: frozenset[tuple[str, str, str]]) -> bool:
    """Whether at least :data:`REPEAT_SHARE` of a record's word triples ``own`` are in ``said`` (those
    of the packed records of its item); False for a record of fewer than three words."""
    return bool(own) and len(own & said) >= REPEAT_SHARE * len(own)
