"""Clause precision and recall of the contracts enricher against CUAD's gold clauses.

``evaluate_cuad(contracts_dir, master_csv)`` runs :func:`~workers.enrich.contracts.analyse_contract`
(what :func:`~workers.enrich.contracts.enrich_contract` publishes as CLAUSE records) over every
``*.txt`` contract and compares, per category, with the clause texts in ``master_clauses.csv``
(one column per category holding a Python-literal list of the clause texts found).

Scoring, on normalised words (lower-case letters and digits):

* a gold clause is **recalled** if some predicted clause of its category covers at least half
  of its words. Where the gold words occur as a run in the contract, coverage is positional
  (the share of that run inside the predicted clause's span; a gold text that occurs more than
  once counts if any occurrence is covered); otherwise it is the share of its distinct words
  found in the predicted clause.
* a predicted clause is a **true positive** if it covers some gold clause of its category by
  the same rule.

Micro averages pool the counts of all categories. ``sleepd bench --corpus cuad-clauses`` writes
the table to ``cuad-clauses.md`` in its output folder (:func:`bench_clauses`); ``python -m
sleepd.bench.cuad_clauses [CUAD folder]`` prints it (``docs/cuad-clauses.md`` is made so). An
evaluation of the product, so it lives with the bench, not in the workers.
"""

from __future__ import annotations

import ast
import csv
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleepd.bench.datasets import DATA_DIR
from workers.enrich.clause_types import CATEGORIES
from workers.enrich.contracts import Clause, analyse_contract

__all__ = ["CategoryScore", "EvalReport", "bench_clauses", "evaluate_cuad", "format_report", "gold_clauses"]

#: the per-category table ``sleepd bench --corpus cuad-clauses`` writes to its output folder
REPORT_FILE = "cuad-clauses.md"
#: contracts scored by ``sleepd bench --quick`` (a seeded sample is not needed: the order is by name)
QUICK_CONTRACTS = 20
#: share of a gold clause's words a predicted clause must cover
COVERAGE = 0.5
DEFAULT_DIR = DATA_DIR / "cuad"
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class CategoryScore:
    """Counts for one category; precision, recall and F1 are derived from them."""

    gold: int = 0
    recalled: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.recalled / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class EvalReport:
    """Per-category scores, their pooled (micro) total, and how many contracts and clauses were read."""

    categories: dict[str, CategoryScore] = field(default_factory=dict)
    contracts: int = 0
    clauses: int = 0
    clause_words: int = 0

    @property
    def micro(self) -> CategoryScore:
        total = CategoryScore()
        for s in self.categories.values():
            total.gold += s.gold
            total.recalled += s.recalled
            total.predicted += s.predicted
            total.correct += s.correct
        return total


def gold_clauses(master_csv: Path) -> dict[str, dict[str, list[str]]]:
    """``{file name: {category: [gold clause texts]}}`` from CUAD's ``master_clauses.csv``."""
    names = [c.name for c in CATEGORIES]
    out: dict[str, dict[str, list[str]]] = {}
    with open(master_csv, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out[row["Filename"]] = {
                name: [str(x) for x in ast.literal_eval(row[name])] if row.get(name, "").strip() else []
                for name in names
            }
    return out


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class _Doc:
    """A contract's words with their character offsets, to place gold texts and clauses on one axis."""

    def __init__(self, text: str) -> None:
        matches = list(_WORD.finditer(text.lower()))
        self.words = [m.group(0) for m in matches]
        self.offsets = [m.start() for m in matches]
        self.first: dict[str, list[int]] = {}
        for i, w in enumerate(self.words):
            self.first.setdefault(w, []).append(i)

    def occurrences(self, gold: list[str]) -> list[int]:
        """Word indexes where the run ``gold`` occurs in full."""
        if not gold:
            return []
        n = len(gold)
        return [i for i in self.first.get(gold[0], []) if self.words[i:i + n] == gold]


def _covers(doc: _Doc, text: str, clause: Clause, gold: str) -> bool:
    words = _words(gold)
    if not words:
        return False
    runs = doc.occurrences(words)
    if runs:
        for i in runs:
            inside = sum(1 for k in range(i, i + len(words)) if clause.start <= doc.offsets[k] < clause.end)
            if inside >= COVERAGE * len(words):
                return True
        return False
    distinct = set(words)
    found = set(_words(text[clause.start:clause.end]))
    return len(distinct & found) >= COVERAGE * len(distinct)


def _score_contract(text: str, clauses: list[Clause], gold: dict[str, list[str]], report: EvalReport) -> None:
    doc = _Doc(text)
    for name, score in report.categories.items():
        predicted = [c for c in clauses if name in c.categories]
        golds = gold.get(name, [])
        score.gold += len(golds)
        score.predicted += len(predicted)
        score.recalled += sum(1 for g in golds if any(_covers(doc, text, c, g) for c in predicted))
        score.correct += sum(1 for c in predicted if any(_covers(doc, text, c, g) for g in golds))


def evaluate_cuad(root: Path = DEFAULT_DIR, limit: int | None = None,
                  files: Iterable[Path] | None = None) -> EvalReport:
    """Score the contracts under ``root/contracts`` (or ``files``) against ``root/master_clauses.csv``.

    Contracts with no row in the CSV are skipped; ``limit`` takes the first N in name order.
    """
    gold = gold_clauses(root / "master_clauses.csv")
    paths = sorted(files if files is not None else (root / "contracts").glob("*.txt"))
    report = EvalReport({c.name: CategoryScore() for c in CATEGORIES})
    for path in paths[:limit]:
        if path.name not in gold:
            continue
        text = path.read_text(encoding="utf-8")
        clauses = analyse_contract(text)
        report.contracts += 1
        report.clauses += len(clauses)
        report.clause_words += sum(len(_words(text[c.start:c.end])) for c in clauses)
        _score_contract(text, clauses, gold[path.name], report)
    return report


def format_report(report: EvalReport) -> str:
    """A Markdown table: one row per category, then the micro average."""
    rows = ["| category | gold | recalled | predicted | correct | P | R | F1 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in [*report.categories.items(), ("**micro**", report.micro)]:
        rows.append(f"| {name} | {s.gold} | {s.recalled} | {s.predicted} | {s.correct} | "
                    f"{s.precision:.2f} | {s.recall:.2f} | {s.f1:.2f} |")
    mean = report.clause_words / report.clauses if report.clauses else 0
    rows.append(f"\n{report.contracts} contracts, {report.clauses} clauses, {mean:.0f} words per clause on average")
    return "\n".join(rows)


def bench_clauses(data: Path, out: Path, limit: int | None) -> dict[str, Any]:
    """Score the first ``limit`` contracts of ``data/cuad`` (all: None), write the table to
    ``out/cuad-clauses.md`` and return the micro scores and the counts, for ``report.json``."""
    report = evaluate_cuad(data / "cuad", limit)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(f"# CUAD clause classification\n\n{format_report(report)}\n", encoding="utf-8")
    micro = report.micro
    return {"contracts": report.contracts, "clauses": report.clauses, "gold": micro.gold,
            "precision": round(micro.precision, 4), "recall": round(micro.recall, 4), "f1": round(micro.f1, 4),
            "by_category": {name: {"gold": s.gold, "precision": round(s.precision, 4), "recall": round(s.recall, 4)}
                            for name, s in report.categories.items()}}


if __name__ == "__main__":
    print(format_report(evaluate_cuad(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)))
