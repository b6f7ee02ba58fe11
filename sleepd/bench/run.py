"""``sleepd bench``: each corpus through the real pipeline and the plain-RAG baseline, side by side.

Typical use::

    report = run_bench(BenchConfig(data=Path("../shared/data"), out=Path("bench-out"), quick=True))
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sleepd import defaults
from sleepd.auth import create_token
from sleepd.bench.ablation import chunk_memory
from sleepd.bench.baseline import CHUNK_OVERLAP, CHUNK_TOKENS, TOP_K, PlainRAG
from sleepd.bench.bm25 import BM25Chunks
from sleepd.bench.corpora import Corpus, Question, load_contracts
from sleepd.bench.idle import idle_awareness
from sleepd.bench.latency import FILLER_SOURCE, corpus_vocabulary, fill_index, serve, synthetic_search_latency, timed
from sleepd.bench.pipeline import ADMIN, Workspace, first_pass, incremental, open_workspace, raw_model
from sleepd.bench.report import write_reports
from sleepd.bench.split import HALVES, SPLIT_RULE
from sleepd.bench.swebench import DEFAULT_REPOS, QUICK_REPOS, load_code
from sleepd.bench.systems import measure
from sleepd.embed import MODEL_NAME, Embedder, get_embedder
from sleepd.errors import ConfigError
from sleepd.sparse import query_vector, terms
from sleepd.tokens import Tokenizer, get_tokenizer

__all__ = ["BUDGETS", "CORPORA", "EVALUATIONS", "BenchConfig", "run_bench"]

#: the token budgets every system is measured at
BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
CORPORA = ("contracts", "code", "accounts", "airline", "kb")
#: the CUAD clause evaluation, by its --corpus name
CLAUSES = "cuad-clauses"
#: evaluations of one enricher, not of retrieval: scored on their own, no baseline, no latency
EVALUATIONS = (CLAUSES,)
#: 100k points: the size the issue's latency goals are stated at
SCALE_POINTS = 100_000
#: untimed queries before each latency series (made-up questions, none of the timed ones)
WARMUP_QUERIES = 3
#: the budget latency is measured at
LATENCY_BUDGET = 1024


@dataclass
class BenchConfig:
    data: Path
    out: Path
    corpora: tuple[str, ...] = CORPORA
    quick: bool = False
    #: sdists are downloaded and unpacked here once
    cache: Path = field(default_factory=lambda: Path.home() / ".cache" / "sleepd-bench")
    #: None: 20 contracts with --quick, all otherwise
    contracts: int | None = None
    per_contract: int | None = None
    repos: tuple[str, ...] | None = None
    #: SWE-bench issues per repository, tau2 tasks or kb questions (None: 10 quick, 40 for kb, else all)
    max_issues: int | None = None
    #: retail accounts loaded beside the tasks' customers (None: 40 quick, else all)
    extra_accounts: int | None = None
    #: queries timed per series (the corpus's questions, repeated when fewer); None: 30 quick, else 100
    latency_queries: int | None = None
    scale_points: int = SCALE_POINTS
    #: repository -> local folder laid out like it (skips the sdist download; for tests)
    local_code_roots: Mapping[str, Path] | None = None
    #: files of the first file corpus the idle-awareness daemons enrich (None: 6 quick, else 40),
    #: and the seconds of questions per mode (None: 10 quick, else 30)
    idle_files: int | None = None
    idle_window: float | None = None
    progress: bool = True
    #: which half of every corpus (split.py): "test" is what the README reports; "tune" to tune on
    half: str = "test"
    #: recall only: no latency, no edit probe, no synthetic index, no idle awareness
    recall_only: bool = False


def _load(name: str, config: BenchConfig, work: Path) -> Corpus:
    if name == "contracts":
        limit = config.contracts if config.contracts is not None else (20 if config.quick else None)
        per = config.per_contract or (3 if config.quick else 5)
        return load_contracts(config.data, work, limit, per, half=config.half)
    if name == "code":
        repos = config.repos or (QUICK_REPOS if config.quick else DEFAULT_REPOS)
        issues = config.max_issues if config.max_issues is not None else (10 if config.quick else None)
        return load_code(config.data, work, config.cache, repos, issues, config.local_code_roots, config.half)
    if name in ("accounts", "airline"):
        from sleepd.bench.accounts import load_accounts

        tasks = config.max_issues if config.max_issues is not None else (10 if config.quick else None)
        extra = config.extra_accounts if config.extra_accounts is not None else (40 if config.quick else None)
        return load_accounts(config.data, work, tasks, extra, domain="retail" if name == "accounts" else name,
                             half=config.half)
    if name == "kb":
        from sleepd.bench.kb import load_kb

        limit = config.max_issues if config.max_issues is not None else (40 if config.quick else None)
        return load_kb(work, limit, half=None if config.half == "all" else config.half)
    raise ConfigError(f"Config 'corpus' has value {name!r}. One of: {', '.join(CORPORA + EVALUATIONS)}.")


@contextmanager
def _bar(enabled: bool) -> Iterator[Progress]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True, disable=not enabled)
    with progress:
        yield progress


def _latency(ws: Workspace, questions: list[Question], n: int) -> dict[str, Any]:
    """p50/p99 of queries in process and over HTTP (uvicorn, httpx, keep-alive), once the index's
    dense first stage serves, as a daemon's does before it reports the memory ready. Every question
    is asked once, of one series (alternate distinct questions): the engine keeps the vectors of
    the questions and topics it has embedded, and a question asked again would find its own."""
    distinct = list(dict.fromkeys(q.text for q in questions))
    series = {"in_process": distinct[0::2][:n], "http": distinct[1::2][:n]}
    started = time.perf_counter()
    warmed = ws.service.index.warm(600)
    warm_s = round(time.perf_counter() - started, 2) if warmed else None
    token = create_token(ws.service.ledger, "bench-http", admin=True)
    with serve(ws.service) as url, httpx.Client(base_url=url, timeout=60,
                                                headers={"Authorization": f"Bearer {token}"}) as client:
        def post(q: str) -> None:
            client.post("/v1/query", json={"q": q, "budget": LATENCY_BUDGET}).raise_for_status()

        ask = partial(ws.service.query, budget=LATENCY_BUDGET, principal=ADMIN)
        ws.service.engine.vector.cache_clear()  # the recall stage (or the last series) asked the same questions
        for i in range(WARMUP_QUERIES):  # questions of their own: a timed one must not find its vector kept
            ask(f"warm-up question {i} about the first item")
            post(f"warm-up question {i} about the second item")
        kept = ws.service.engine.vector.cache_info()
        latency = timed({"in_process": [partial(ask, q) for q in series["in_process"]],
                         "http": [partial(post, q) for q in series["http"]]}, warmup=0)
        after = ws.service.engine.vector.cache_info()
    return {**latency, "points": ws.service.index.count(), "budget": LATENCY_BUDGET, "first_stage_seconds": warm_s,
            # vectors found kept (a topic asked before: "the governing law" of another contract) and embedded
            "vectors_kept": after.hits - kept.hits, "vectors_embedded": after.misses - kept.misses}


def _filler_share(ws: Workspace, questions: list[Question], sample: int = 10) -> float:
    """The share of filler points among the top sparse hits of the first ``sample`` questions: the
    filler loads the sparse search only when the questions' words reach it."""
    index = ws.service.index
    ids = [h.id for q in questions[:sample]
           for h in index.search_sparse(query_vector(terms(q.text)), defaults.CANDIDATES)]
    source = {i: p.get("source") for i, p in index.payloads(ids).items()}  # a hit of two questions counts twice
    return round(sum(source.get(i) == FILLER_SOURCE for i in ids) / len(ids), 3) if ids else 0.0


def _full_context(ws: Workspace, tokenizer: Tokenizer) -> dict[str, Any]:
    files = ws.files()
    sizes = [tokenizer.count(text) for _, text in files]
    return {"files": len(files), "tokens": sum(sizes), "tokens_per_file_mean": round(sum(sizes) / max(len(sizes), 1))}


def bench_corpus(corpus: Corpus, config: BenchConfig, work: Path, embedder: Embedder, bar: Progress) -> dict[str, Any]:
    tokenizer = get_tokenizer(defaults.TOKENIZER)
    ws = open_workspace(corpus, work, embedder)
    chunk_ws: Workspace | None = None
    try:
        task = bar.add_task(f"{corpus.name}: enriching", total=None)
        enrichment = first_pass(ws, embedder, on_outcome=lambda _: bar.advance(task),
                                on_total=lambda n: bar.update(task, total=n))
        raw = raw_model(ws, embedder, enrichment)
        rag = PlainRAG(corpus.name, embedder, tokenizer)
        rag.build(ws.files())
        bm25 = BM25Chunks(rag.chunks)
        chunk_ws = chunk_memory(ws, rag.chunks, rag.vectors, work, embedder)
        baseline = {"chunks": len(rag.chunks), "chunk_tokens": CHUNK_TOKENS, "overlap": CHUNK_OVERLAP, "top_k": TOP_K,
                    "embed_seconds": round(rag.embed_seconds, 2)}
        results = measure(ws, chunk_ws, rag, bm25, embedder, BUDGETS, bar)
        report: dict[str, Any] = {
            "corpus": corpus.name, "profile": corpus.profile, "root": str(corpus.root), "rule": corpus.rule,
            "notes": corpus.notes, "questions": len(corpus.questions), "full_context": _full_context(ws, tokenizer),
            "enrichment": enrichment, "embedding": raw, "baseline": baseline, "recall": results["recall"],
            "recall_by_kind": results["by_kind"], "recall_file_level": results["file_level"],
            "per_question": results["questions"], "peak_rss_mb": _peak_rss_mb(),
        }
        if config.recall_only:
            return report
        n_latency = config.latency_queries or (30 if config.quick else 100)
        latency = {"corpus": _latency(ws, corpus.questions, n_latency)}
        inc = incremental(ws, embedder)
        filler = max(0, config.scale_points - ws.service.index.count())
        fill_s = fill_index(ws.service.index, filler, seed=1, vocabulary=corpus_vocabulary(ws.service.ledger))
        latency["scaled"] = _latency(ws, corpus.questions, n_latency)
        latency["scaled"]["sparse_filler_share"] = _filler_share(ws, corpus.questions)
        latency["scaled"]["how"] = (
            f"the corpus index padded with {filler} synthetic points ({round(fill_s, 1)} s to add) to "
            f"{ws.service.index.count()} points, each a random unit vector with a sparse vector of the corpus's "
            "own words drawn with Zipf frequencies (sleepd/bench/latency.py); the full query path with the hybrid "
            "first stage on (embed, a dense and a sparse search fused, verify against the ledger, rank, pack); "
            f"{latency['scaled']['sparse_filler_share']:.0%} of the sparse search's top-{defaults.CANDIDATES} hits "
            "for the questions are filler points")
        return {**report, "latency": latency, "incremental": inc, "peak_rss_mb": _peak_rss_mb()}
    finally:
        if chunk_ws is not None:
            chunk_ws.close()
        ws.close()


def _idle(corpus: Corpus, config: BenchConfig, work: Path) -> dict[str, Any]:
    count = config.idle_files or (6 if config.quick else 40)
    files = sorted(p for p in corpus.root.rglob("*") if p.is_file())[:count]
    window = config.idle_window or (10.0 if config.quick else 30.0)
    return {"corpus": corpus.name, **idle_awareness(files, corpus.profile, [q.text for q in corpus.questions],
                                                    work, window)}


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("sleepd", "torch", "sentence-transformers", "qdrant-edge-py", "fastapi", "uvicorn", "sqlmodel",
                 "bpe-openai", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {"cores": os.cpu_count(), "cpu": model, "platform": platform.platform(), "python": platform.python_version(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "embedder": MODEL_NAME, "tokenizer": defaults.TOKENIZER, "versions": versions}


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run every corpus of ``config`` and write report.json, report.md and recall.png to ``config.out``
    (and ``cuad-clauses.md`` when that evaluation is asked for)."""
    for name in config.corpora:
        if name not in CORPORA + EVALUATIONS:
            raise ConfigError(f"Config 'corpus' has value {name!r}. One of: {', '.join(CORPORA + EVALUATIONS)}.")
    if config.half not in HALVES:
        raise ConfigError(f"Config 'half' has value {config.half!r}. One of: {', '.join(HALVES)}.")
    config.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict[str, Any] = {"started_at": started, "quick": config.quick, "budgets": list(BUDGETS),
                              "half": config.half, "split": SPLIT_RULE, "recall_only": config.recall_only,
                              "machine": machine(), "corpora": {}}
    if CLAUSES in config.corpora:
        # imported here: `python -m sleepd.bench.cuad_clauses` must not find it imported by the package
        from sleepd.bench.cuad_clauses import QUICK_CONTRACTS, bench_clauses

        limit = config.contracts if config.contracts is not None else (QUICK_CONTRACTS if config.quick else None)
        report["cuad_clauses"] = bench_clauses(config.data, config.out, limit)
    retrieval = tuple(name for name in config.corpora if name in CORPORA)
    if retrieval:
        _bench_retrieval(config, retrieval, report)
    report["seconds"] = round(time.time() - started, 1)
    report["peak_rss_mb"] = _peak_rss_mb()
    write_reports(report, config.out)
    return report


def _bench_retrieval(config: BenchConfig, names: tuple[str, ...], report: dict[str, Any]) -> None:
    """The retrieval corpora against plain RAG, then search latency at scale and idle awareness."""
    work = config.out / "work"
    embedder = get_embedder()
    with _bar(config.progress) as bar:
        corpora = [_load(name, config, work) for name in names]  # fail fast, before hours of work
        for corpus in corpora:
            report["corpora"][corpus.name] = bench_corpus(corpus, config, work, embedder, bar)
            write_reports(report, config.out)  # a long run keeps what it measured so far
        if config.recall_only:
            return
        task = bar.add_task(f"search latency at {config.scale_points} synthetic points", total=None)
        shutil.rmtree(work / "synthetic-index", ignore_errors=True)
        report["synthetic_index"] = synthetic_search_latency(work / "synthetic-index", config.scale_points)
        bar.update(task, completed=1, total=1)
        file_corpora = [c for c in corpora if c.source is None]
        if file_corpora:
            task = bar.add_task("idle awareness: the daemon's first pass under questions", total=None)
            report["idle_awareness"] = _idle(file_corpora[0], config, work)
            bar.update(task, completed=1, total=1)
