"""Raw text windows: every file item's own text, cut into overlapping windows of whole lines.

The enriched records (symbols, sections, clauses, summaries, likely questions) are what sleep
time adds; a question they do not cover must still be answerable from the source, as plain
retrieval over chunks would answer it (issue 12: a long bug report or a customer's scenario
matches a window of a file better than a short symbol record). So every file item also gets
WINDOW records, indexed beside the enriched ones, versioned and permissioned like them; the query
says when its pack was served from them (``route``).

A window is made of whole lines, at most :data:`WINDOW_TOKENS` tokens, and the next one starts
about :data:`WINDOW_OVERLAP` tokens before the end of the one before; its evidence is exactly the
lines it holds, without blank lines at either end. A single line longer than a window is one
window, its text cut to the window's size.
"""

from __future__ import annotations

from sleepd import defaults
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.tokens import get_tokenizer

__all__ = ["WINDOW_OVERLAP", "WINDOW_TOKENS", "item_windows", "raw_windows"]

#: a window's size in tokens of the packing tokenizer: the plain-RAG baseline's chunk size, so the
#: ranker always has what that baseline would pack (256 was measured too: see CHANGES.md)
WINDOW_TOKENS = defaults.WINDOW_TOKENS
#: tokens of the end of a window that the next one repeats, so a passage cut in two is whole once
WINDOW_OVERLAP = defaults.WINDOW_OVERLAP


def item_windows(path: str, text: str, profile: str) -> list[Draft]:
    """The raw windows of one item, added to its enriched records by the worker: a file's windows;
    none for an sql item (``profile="accounts"``), whose text is one line of JSON and whose raw
    rows are ROW records already."""
    if profile == "accounts" or not text.strip():
        return []
    return raw_windows(path, text)


def raw_windows(path: str, text: str, size: int = WINDOW_TOKENS, overlap: int = WINDOW_OVERLAP) -> list[Draft]:
    """WINDOW drafts over ``text``, in order; each one's evidence is the 1-based lines it holds
    (``text.splitlines()[start - 1:end]`` joined by newlines is its text, unless one line alone
    was longer than ``size``), its first and last lines not blank. Windows of blank lines only are
    left out."""
    if size <= overlap or overlap < 0:
        raise ValueError(f"a window of {size} tokens cannot overlap by {overlap}")
    tokenizer = get_tokenizer(defaults.TOKENIZER)
    lines = text.splitlines()
    costs = [tokenizer.count(line + "\n") for line in lines]
    drafts: list[Draft] = []
    start = 0
    while start < len(lines):
        end, total = start + 1, costs[start]
        while end < len(lines) and total + costs[end] <= size:
            total += costs[end]
            end += 1
        first, last = start, end  # the span is tight: blank lines at either end are left out
        while first < last and not lines[first].strip():
            first += 1
        while last > first and not lines[last - 1].strip():
            last -= 1
        if first < last:
            body = "\n".join(lines[first:last])
            if total > size:
                body = tokenizer.truncate(body, size)
            drafts.append(Draft(RecordKind.WINDOW, body, (Evidence(path, first + 1, last),), title=path,
                                meta={"window": f"{first + 1}-{last}"}))
        if end >= len(lines):
            break
        # the next window repeats the last lines of this one, up to ``overlap`` tokens, and moves on
        back, repeated = end, 0
        while back - 1 > start and repeated + costs[back - 1] <= overlap:
            back -= 1
            repeated += costs[back]
        start = max(back, start + 1)
    return drafts
