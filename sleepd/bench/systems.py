"""The systems compared on every question, at every budget, by the same scoring rule.

* ``sleepd``: the real query path over the enriched records;
* ``baseline``: plain RAG (512/64 token chunks, cosine top-k, greedy packing);
* ``bm25``: the same chunks ranked by BM25, packed by the same code;
* ``ablation``: sleepd's query path (index, hybrid fusion, ranking, packing) over the same chunks
  as records (see :mod:`~sleepd.bench.ablation`).

The best baseline at a budget is the better of plain RAG and BM25 there. Code questions are also
scored at file level: the share of the files the fix touched that the pack's evidence cites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.progress import Progress

from sleepd.bench.baseline import PlainRAG
from sleepd.bench.bm25 import BM25Chunks
from sleepd.bench.corpora import Question, Snippet, file_recall, recall
from sleepd.bench.pipeline import ADMIN, Workspace, to_snippet
from sleepd.embed import Embedder
from sleepd.pack import PackedRecord

__all__ = ["BASELINES", "SYSTEMS", "cited_files", "measure", "summary"]

SYSTEMS = ("sleepd", "baseline", "bm25", "ablation")
#: the peers the best baseline is drawn from (the ablation is sleepd's own ranker)
BASELINES = ("baseline", "bm25")
LABELS = {"sleepd": "sleepd", "baseline": "plain RAG", "bm25": "BM25", "ablation": "sleepd ranker over plain chunks",
          "best": "best baseline"}

#: one system's pack for a question at a budget: the snippets scored, the files cited, tokens used
Packer = Callable[[Question, int], tuple[list[Snippet], set[str], int]]


def cited_files(records: Sequence[PackedRecord]) -> set[str]:
    """Every path the records' evidence cites, and the items they belong to."""
    return {r.item for r in records} | {str(e["path"]) for r in records for e in r.evidence}


def _service(ws: Workspace) -> Packer:
    def packer(q: Question, budget: int) -> tuple[list[Snippet], set[str], int]:
        result = ws.service.query(q.text, budget, ADMIN)
        return [to_snippet(r) for r in result.records], cited_files(result.records), result.tokens_used
    return packer


def _chunks(rag: PlainRAG, rank: Callable[[Question], list[int]]) -> Packer:
    memo: dict[str, list[int]] = {}

    def packer(q: Question, budget: int) -> tuple[list[Snippet], set[str], int]:
        if q.id not in memo:
            memo.clear()  # one question at a time: rank once for all budgets
            memo[q.id] = rank(q)
        snippets, used = rag.pack(memo[q.id], budget)
        return snippets, {s.path for s in snippets}, used
    return packer


def measure(ws: Workspace, chunk_ws: Workspace, rag: PlainRAG, bm25: BM25Chunks, embedder: Embedder,
            budgets: Sequence[int], bar: Progress) -> dict[str, Any]:
    """Every question through every system at every budget: per-question rows, the summary per
    system and budget, by kind when there are several, and at file level when questions name files."""
    packers: dict[str, Packer] = {
        "sleepd": _service(ws),
        "baseline": _chunks(rag, lambda q: rag.ranked(embedder.encode_one(q.text))),
        "bm25": _chunks(rag, lambda q: bm25.ranked(q.text)),
        "ablation": _service(chunk_ws),
    }
    questions = ws.corpus.questions
    task = bar.add_task(f"{ws.corpus.name}: questions", total=len(questions))
    rows: list[dict[str, Any]] = []
    for q in questions:
        row: dict[str, Any] = {"id": q.id, "kind": q.kind, "gold": len(q.gold), "files": list(q.files)}
        for system, packer in packers.items():
            row[system], row[f"{system}_tokens"], row[f"{system}_files"] = [], [], []
            for budget in budgets:
                snippets, cited, used = packer(q, budget)
                row[system].append(recall(q, snippets))
                row[f"{system}_tokens"].append(used)
                row[f"{system}_files"].append(file_recall(q, cited))
        rows.append(row)
        bar.advance(task)
    kinds = sorted({r["kind"] for r in rows})
    by_kind = ({kind: _table([r for r in rows if r["kind"] == kind], budgets) for kind in kinds}
               if len(kinds) > 1 else {})
    with_files = [r for r in rows if r["files"]]
    files = _table(with_files, budgets, suffix="_files") if with_files else {}
    return {"recall": _table(rows, budgets), "by_kind": by_kind, "file_level": files, "questions": rows}


def _table(rows: list[dict[str, Any]], budgets: Sequence[int], suffix: str = "") -> dict[str, Any]:
    table = {system: {str(b): summary(rows, system, i, b, suffix) for i, b in enumerate(budgets)}
             for system in SYSTEMS}
    table["best"] = {str(b): _best(table, b) for b in budgets}
    return table


def _best(table: dict[str, Any], budget: int) -> dict[str, Any]:
    """The better baseline at ``budget`` (ties: plain RAG), named."""
    name = max(BASELINES, key=lambda s: (table[s][str(budget)]["recall"], s == "baseline"))
    return {**table[name][str(budget)], "system": name}


def summary(rows: list[dict[str, Any]], system: str, i: int, budget: int, suffix: str = "") -> dict[str, Any]:
    n = len(rows) or 1
    tokens = [r[f"{system}_tokens"][i] for r in rows]
    return {"recall": round(sum(r[f"{system}{suffix}"][i] for r in rows) / n, 4),
            "tokens_used_mean": round(sum(tokens) / n, 1), "tokens_used_max": max(tokens, default=0),
            "over_budget": sum(1 for t in tokens if t > budget)}
