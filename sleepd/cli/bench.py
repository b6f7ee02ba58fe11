"""``sleepd bench``: recall per live token, latency and throughput against plain RAG, on public
evaluation corpora; evaluation lives in ``sleepd.bench``, never in the product's path."""

from __future__ import annotations

import sys

import click

from sleepd.cli.common import env_option, out

__all__ = ["bench"]


@click.command()
@env_option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
            envvar="SLEEPD_BENCH_DATA", help="The evaluation data folder (cuad/, swebench-lite.jsonl, tau2/).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Where report.json, report.md and recall.png go (and the bench's work folders).")
@click.option("--corpus", "corpora", default="contracts,code,accounts,airline,kb", show_default=True,
              help="Comma-separated: contracts, code, accounts (tau2 retail), airline (tau2 airline), kb "
                   "(WorkArena's knowledge base, test half); or "
                   "cuad-clauses: the contracts enricher's clause precision and recall against CUAD's gold.")
@click.option("--quick", is_flag=True, help="A small slice of each corpus: a smoke test for CI.")
@env_option("--cache", "cache_dir", type=click.Path(file_okay=False), envvar="SLEEPD_BENCH_CACHE",
            help="Where sdists are downloaded once (default ~/.cache/sleepd-bench).")
@click.option("--contracts", type=int, help="Number of contracts (a seeded sample; default 20 quick, else all).")
@click.option("--per-contract", type=int, help="Questions per contract (default 3 quick, else 5).")
@click.option("--repos", help="Comma-separated SWE-bench repositories, e.g. psf/requests,pytest-dev/pytest.")
@click.option("--max-issues", type=int,
              help="Issues per repository, tau2 tasks or kb questions (default 10 quick, 40 kb, else all).")
@click.option("--half", type=click.Choice(["tune", "test", "all"]), default="test", show_default=True,
              help="Which half of every corpus (split by a SHA-256 of each contract, SWE-bench instance, tau2 "
                   "task or kb question): tune on 'tune', report 'test'.")
@click.option("--recall-only", is_flag=True, help="Measure recall only: no latency, edit probe or idle awareness.")
def bench(data_dir: str, out_dir: str, corpora: str, quick: bool, cache_dir: str | None, contracts: int | None,
          per_contract: int | None, repos: str | None, max_issues: int | None, half: str, recall_only: bool) -> None:
    """Measure recall per live token, latency and throughput against plain RAG (or score the clause
    classifier against CUAD: --corpus cuad-clauses); write reports to OUT."""
    from pathlib import Path

    from sleepd.bench import BenchConfig, run_bench

    config = BenchConfig(data=Path(data_dir), out=Path(out_dir), quick=quick,
                         corpora=tuple(c.strip() for c in corpora.split(",") if c.strip()),
                         contracts=contracts, per_contract=per_contract, max_issues=max_issues,
                         repos=tuple(r.strip() for r in repos.split(",") if r.strip()) if repos else None,
                         half=half, recall_only=recall_only, progress=sys.stderr.isatty())
    if cache_dir:
        config.cache = Path(cache_dir)
    report = run_bench(config)
    for name, corpus in report["corpora"].items():
        at = {s: corpus["recall"][s]["1024"]["recall"] for s in ("sleepd", "baseline", "bm25", "ablation", "best")}
        out.print(f"{name} ({half} half): recall@1024 sleepd {at['sleepd']:.3f}, plain RAG {at['baseline']:.3f}, "
                  f"BM25 {at['bm25']:.3f}, ablation {at['ablation']:.3f}, best baseline {at['best']:.3f}; "
                  f"token-reduction factor {corpus['reduction']['text']}; break-even "
                  f"{corpus['amortisation']['break_even']}")
    if "cuad_clauses" in report:
        clauses = report["cuad_clauses"]
        out.print(f"cuad-clauses: {clauses['contracts']} contracts, micro precision {clauses['precision']:.3f}, "
                  f"recall {clauses['recall']:.3f}, F1 {clauses['f1']:.3f} (per category: cuad-clauses.md)")
    plot = " and recall.png" if report["corpora"] else ""
    out.print(f"wrote {Path(out_dir) / 'report.md'}, report.json{plot}")
