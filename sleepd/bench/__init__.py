"""``sleepd bench``: live-token efficiency and speed on real corpora, side by side with plain RAG.

Modules: :mod:`~sleepd.bench.corpora` (contracts, questions, scoring), :mod:`~sleepd.bench.swebench`
(the code corpus), :mod:`~sleepd.bench.kb` (the knowledge-base corpus), :mod:`~sleepd.bench.baseline`
(plain RAG), :mod:`~sleepd.bench.pipeline` (sleepd's pipeline in process), :mod:`~sleepd.bench.drain`
(the queue drained in process, also for the tests), :mod:`~sleepd.bench.datasets` (tau2 loaders),
:mod:`~sleepd.bench.cuad_clauses` (the clause classifier against CUAD), :mod:`~sleepd.bench.latency`,
:mod:`~sleepd.bench.run` (the orchestration) and :mod:`~sleepd.bench.report` (JSON, Markdown, PNG).
Evaluation lives here, out of the product: the daemon never imports it.
"""

from __future__ import annotations

from sleepd.bench.run import BUDGETS, CORPORA, BenchConfig, run_bench

__all__ = ["BUDGETS", "CORPORA", "BenchConfig", "run_bench"]
