"""Bench corpora: a folder to watch, questions generated from the dataset's own fields, and the
gold evidence each question is scored against.

Questions are written in code from the datasets' columns, never picked by hand. Both systems
under test hand back what they packed as :class:`Snippet` (path, line span, text), and every gold
kind decides from snippets alone whether it was recalled, so sleepd and the baseline are scored
by the same rule.
"""

from __future__ import annotations

import ast
import csv
import random
import re
import shutil
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sleepd.bench.portfolio_questions import PARAPHRASED
from sleepd.bench.split import in_half
from sleepd.errors import ConfigError
from sleepd.settings import Source

__all__ = [
    "CONTRACT_RULE",
    "ArticleGold",
    "ClauseGold",
    "ContractGold",
    "Corpus",
    "Question",
    "RowGold",
    "Snippet",
    "SpanGold",
    "file_recall",
    "load_contracts",
    "recall",
]

#: how a contract clause counts as recalled, stated in the report
CONTRACT_RULE = ("a gold CUAD clause is recalled when >= 50% of its distinct normalised words (lower-cased "
                 "alphanumeric runs) appear in the packed text that cites the same contract; for a portfolio "
                 "question, a gold contract is recalled when the packed text cites it or names its file")
#: CUAD columns that name the contract rather than a clause; they make up the question itself
_NAMING_COLUMNS = ("Document Name", "Parties")
_WORDS = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Snippet:
    """One packed piece of context: the path it cites (relative to the source root), its 1-based
    line span, and the text the assistant would read (header included)."""

    path: str
    start_line: int
    end_line: int
    text: str
    kind: str = ""


def words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


@dataclass(frozen=True)
class ClauseGold:
    """A CUAD clause of one contract."""

    path: str
    text: str

    def found(self, snippets: Sequence[Snippet]) -> bool:
        wanted = words(self.text)
        if not wanted:
            return False
        seen: set[str] = set()
        for snippet in snippets:
            if snippet.path == self.path:
                seen |= words(snippet.text)
        return len(wanted & seen) >= 0.5 * len(wanted)


@dataclass(frozen=True)
class SpanGold:
    """A function or class the fix touched: its file and the line of its definition."""

    path: str
    name: str
    line: int
    #: the file's length in lines: a span over the whole file (a file summary) does not pin a function
    file_lines: int = 0

    def found(self, snippets: Sequence[Snippet]) -> bool:
        short = self.name.rsplit(".", 1)[-1]
        for snippet in snippets:
            if snippet.path != self.path or not snippet.start_line <= self.line <= snippet.end_line:
                continue
            whole_file = snippet.start_line <= 1 and snippet.end_line >= self.file_lines > 0
            if not whole_file and short in snippet.text:
                return True
        return False


@dataclass(frozen=True)
class RowGold:
    """A database row (an order) of one account: ``path`` is the account's item key."""

    path: str
    row: str

    def found(self, snippets: Sequence[Snippet]) -> bool:
        return any(s.path == self.path and self.row in s.text for s in snippets)


@dataclass(frozen=True)
class ContractGold:
    """A contract a portfolio question's answer must name: cited, or its file named in the text."""

    path: str

    def found(self, snippets: Sequence[Snippet]) -> bool:
        return any(s.path == self.path or self.path in s.text for s in snippets)


@dataclass(frozen=True)
class ArticleGold:
    """A knowledge-base article an answer needs: recalled when a packed piece cites its file."""

    path: str

    def found(self, snippets: Sequence[Snippet]) -> bool:
        return any(s.path == self.path for s in snippets)


Gold = ClauseGold | SpanGold | RowGold | ContractGold | ArticleGold


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    gold: tuple[Gold, ...]
    #: what kind of question, for recall by kind ("clause", "portfolio", ...)
    kind: str = ""
    #: the files the answer lives in (code: the files the fix touched), scored at file level too
    files: tuple[str, ...] = ()


def recall(question: Question, snippets: Sequence[Snippet]) -> float:
    """The fraction of the question's gold evidence found in the snippets."""
    if not question.gold:
        return 0.0
    return sum(g.found(snippets) for g in question.gold) / len(question.gold)


def file_recall(question: Question, cited: Collection[str]) -> float:
    """The fraction of the question's gold files that the pack's evidence cites (paths relative to
    the source root, as records and chunks cite them)."""
    if not question.files:
        return 0.0
    return sum(f in cited for f in question.files) / len(question.files)


@dataclass
class Corpus:
    """One corpus materialised as a folder (a copy: the bench edits a file in it)."""

    name: str
    root: Path
    profile: str
    questions: list[Question]
    rule: str
    include: tuple[str, ...] = ("**/*",)
    notes: list[str] = field(default_factory=list)
    #: the source to watch when it is not the folder ``root`` (an sql source)
    source: Source | None = None
    #: item keys -> (path, text) the baseline chunks; None: the files under ``root``
    documents: Callable[[list[str]], list[tuple[str, str]]] | None = None
    #: edits one item so that ``marker`` shows in it; returns the item's key and a question that
    #: finds the edit. None: append a paragraph (or a function) naming the marker to a file
    edit: Callable[[str], tuple[str, str]] | None = None


def _clauses(cell: str) -> list[str]:
    """CUAD stores each clause column as a Python list literal of the clause texts."""
    if not cell.strip():
        return []
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return [cell.strip()]
    return [str(v).strip() for v in value if str(v).strip()] if isinstance(value, list) else [str(value)]


def contract_name(row: dict[str, str]) -> str:
    """'the Marketing Affiliate Agreement between Birch First Global Investments Inc. and ...'."""
    title = (row.get("Document Name-Answer") or "").strip()
    if not title:
        title = Path(row["Filename"]).stem.rsplit("_", 1)[-1]
    title = " ".join(w.capitalize() if w.isupper() else w for w in title.split())
    if "agreement" not in title.lower():
        title += " agreement"
    parties = [re.sub(r"\s*\(.*?\)\s*", " ", p).strip(" ;,") for p in (row.get("Parties-Answer") or "").split(";")]
    parties = [p for p in parties if p][:3]
    if not parties:
        parties = [re.sub(r"([a-z])([A-Z])", r"\1 \2", row["Filename"].split("_", 1)[0])]
    return f"the {title} between {' and '.join(parties)}" if len(parties) > 1 else f"the {title} with {parties[0]}"


def load_contracts(data: Path, work: Path, limit: int | None, per_contract: int, seed: int = 0,
                   half: str = "all") -> Corpus:
    """CUAD: ``limit`` contracts of ``half`` (a seeded sample; None = all), up to ``per_contract``
    questions each, one per clause category with a non-empty clause (categories drawn with a seed)."""
    folder, table = data / "cuad" / "contracts", data / "cuad" / "master_clauses.csv"
    if not table.is_file():
        raise ConfigError(f"Config 'data' has value {str(data)!r}. Expected {table}.")
    csv.field_size_limit(sys.maxsize)
    with table.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (folder / r["Filename"]).is_file()
                and in_half("contracts", r["Filename"], half)]
    rows.sort(key=lambda r: r["Filename"])
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    header = list(rows[0]) if rows else []
    categories = [c for c in header if f"{c}-Answer" in header or f"{c}- Answer" in header]
    categories = [c for c in categories if c not in _NAMING_COLUMNS]
    root = work / "contracts"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    questions: list[Question] = []
    for row in rows:
        shutil.copy(folder / row["Filename"], root / row["Filename"])
        present = [c for c in categories if _clauses(row.get(c, ""))]
        picked = random.Random(f"{seed}:{row['Filename']}").sample(present, min(per_contract, len(present)))
        name = contract_name(row)
        for category in sorted(picked, key=present.index):
            gold = tuple(ClauseGold(row["Filename"], text) for text in _clauses(row[category]))
            questions.append(Question(id=f"{row['Filename']}#{category}",
                                      text=f"What is the {category} clause of {name}?", gold=gold, kind="clause"))
    clause_questions = len(questions)
    for category in categories:  # across the portfolio: every contract that has such a clause
        having = tuple(ContractGold(row["Filename"]) for row in rows if _clauses(row.get(category, "")))
        if having:
            article = "an" if category[0] in "AEIOU" else "a"
            questions.append(Question(id=f"portfolio#{category}", text=f"Which contracts have {article} {category} "
                                      "clause?", gold=having, kind="portfolio"))
    template = len(questions)
    for category, text in PARAPHRASED:  # the same golds, asked in a user's own words
        having = tuple(ContractGold(row["Filename"]) for row in rows if _clauses(row.get(category, "")))
        if having:
            questions.append(Question(id=f"portfolio-reworded#{category}", text=text, gold=having,
                                      kind="portfolio_reworded"))
    notes = [f"{len(rows)} contracts of the {half} half, {clause_questions} clause questions (up to "
             f"{per_contract} clause categories per contract, drawn with seed {seed}; the columns "
             f"{', '.join(_NAMING_COLUMNS)} name the contract in the question and are not asked), "
             f"{template - clause_questions} portfolio questions (one per category: which contracts have it; "
             "gold: every contract whose CUAD column holds a clause) and "
             f"{len(questions) - template} portfolio questions in a user's own words, naming no category "
             "(sleepd.bench.portfolio_questions; same golds)"]
    return Corpus(name="contracts", root=root, profile="contracts", questions=questions,
                  rule=CONTRACT_RULE, notes=notes)
