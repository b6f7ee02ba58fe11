"""The shapes every layer shares: evidence pointers and draft records.

An enricher turns one item into a list of :class:`Draft`; the worker embeds the drafts and
the ledger publishes them as a version. Nothing here touches a database or a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Draft", "Evidence", "RecordKind"]


class RecordKind(str, Enum):
    """What a memory record is; the query ranks some kinds above others."""

    #: one class, function or method: signature, docstring, line span
    SYMBOL = "symbol"
    #: one record per file: what it is for, what it defines and imports
    FILE_SUMMARY = "file_summary"
    #: one section of prose (a heading and its body, or a paragraph group)
    SECTION = "section"
    #: a window of text with no better structure (the fallback)
    CHUNK = "chunk"
    #: a raw window of an item's text (whole lines, overlapping), indexed beside every item's
    #: enriched records so that a question they do not cover is answered from the source
    WINDOW = "window"
    #: one record per account (an sql item): who, contact, what they bought, open orders, payments
    ACCOUNT = "account"
    #: an account's events in order: orders, payments, refunds, state changes
    TIMELINE = "timeline"
    #: an account's anomalies and risk flags, each with the rows behind it
    FLAGS = "flags"
    #: one row of a related table (an order, a ticket, a payment), rendered in full
    ROW = "row"
    #: one contract clause, classified into CUAD categories, with its key fields and playbook flags
    CLAUSE = "clause"
    #: one record per contract: parties, dates, term, governing law, flags, where each category sits
    CONTRACT_CARD = "contract_card"
    #: a source's most central code files (PageRank over imports and references) with key signatures
    REPO_MAP = "repo_map"
    #: one folder of code: its modules, entry points and key symbols
    PACKAGE_SUMMARY = "package_summary"
    #: test files and functions with the code symbols each one exercises
    TEST_MAP = "test_map"
    #: one line per contract per key field (parties, dates, renewal, governing law, flags) across a source
    PORTFOLIO = "portfolio"
    #: a source at a glance: item counts, languages, top-level layout
    SOURCE_OVERVIEW = "source_overview"
    #: one compact record per item: its title or path and one dense line of what it is (a card the
    #: query packs for each of many likely items at a small budget, with why it matches)
    CARD = "card"
    #: likely questions about one item, each with its answer from the item and the lines it cites
    QUESTIONS = "questions"
    #: LLM layer: a natural-language summary of one item, with checked evidence spans
    SUMMARY = "summary"
    #: LLM layer: a question likely to be asked about the item, with its answer and evidence
    QA = "qa"
    #: LLM layer: an inferred relation ("X calls Y", "clause 5 limits clause 9"), with evidence
    RELATION = "relation"
    #: LLM layer: a risk and why it matters, with evidence
    RISK = "risk"


@dataclass(frozen=True)
class Evidence:
    """A source span a record is derived from: path relative to its source root, 1-based lines.
    For a row of an sql source, ``path`` is ``table:row id`` (``orders:#W2378156``) and the lines
    are 1-1, so the query API's ``{"path", "start_line", "end_line"}`` shape holds for both."""

    path: str
    start_line: int
    end_line: int

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "start_line": self.start_line, "end_line": self.end_line}


@dataclass(frozen=True)
class Draft:
    """A record an enricher proposes, before it is embedded and published."""

    kind: RecordKind
    text: str
    evidence: tuple[Evidence, ...]
    #: a short name for humans and keyword ranking, e.g. ``requests.sessions.Session.send``
    title: str = ""
    meta: dict[str, str] = field(default_factory=dict)
