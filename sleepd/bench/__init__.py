"""``sleepd bench``: live-token efficiency and speed on real corpora, side by side with plain RAG.

Modules: :mod:`~sleepd.bench.corpora` (contracts, questions, scoring), :mod:`~sleepd.bench.swebench`
(the code corpus), :mod:`~sleepd.bench.baseline` (plain RAG), :mod:`~sleepd.bench.pipeline`
(sleepd's pipeline in process), :mod:`~sleepd.bench.latency`, :mod:`~sleepd.bench.run` (the
orchestration) and :mod:`~sleepd.bench.report` (JSON, Markdown, PNG).
"""

from __future__ import annotations

from sleepd.bench.run import BUDGETS, CORPORA, BenchConfig, run_bench

__all__ = ["BUDGETS", "CORPORA", "BenchConfig", "run_bench"]
