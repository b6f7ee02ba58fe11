"""Builders of aggregate items, S(c) across items: each builds an aggregate's drafts from the
ledger's current records of its inputs.

The plan (which inputs, which access group) comes from :mod:`sleepd.aggregates`, the one other
name for the concept: the core plans, the workers build. The builders are
:mod:`workers.builders.repomap` (repository map, package summaries, test map) and
:mod:`workers.builders.portfolio`; the source overview is built here from the inputs' keys alone.
May import the core and :mod:`workers.enrich`, never the task.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Callable

from sleepd import aggregates as agg
from sleepd.aggregates import AggregatePlan, read_records
from sleepd.ledger import Ledger
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.settings import FileSource, Source
from workers.builders.portfolio import portfolio
from workers.builders.repomap import code_graph, package_summary, render_repo_map, test_map
from workers.enrich.code import language_for

__all__ = ["REPO_MAP_TOKENS", "build_aggregate", "source_overview"]

#: the repository map fits this many tokens: enough for the ~20 most central files of a large repo
REPO_MAP_TOKENS = 1000
#: top-level entries listed in an overview, at most
OVERVIEW_ENTRIES = 30
_CODE_KINDS = ("file_summary", "symbol")


def source_overview(source: Source, plan: AggregatePlan) -> Draft | None:
    """Counts, languages and top-level layout of a source, from its items' keys."""
    keys = [i.key for i in plan.inputs]
    if not keys:
        return None
    languages = Counter(language_for(k) or (posixpath.splitext(k)[1].lstrip(".").lower() or "no extension")
                        for k in keys)
    layout: Counter[str] = Counter(k.split("/", 1)[0] + ("/" if "/" in k else "") for k in keys)
    where = f" at {source.path}" if isinstance(source, FileSource) else ""
    lines = [f"Source {source.name} ({source.kind}, profile {source.profile}){where}: {len(keys)} items.",
             "By language or type: " + ", ".join(f"{name} {n}" for name, n in languages.most_common()),
             "Top-level layout:"]
    entries = sorted(layout.items(), key=lambda e: (not e[0].endswith("/"), e[0]))
    lines.extend(f"- {name} ({n} item{'s' if n != 1 else ''})" if name.endswith("/") else f"- {name}"
                 for name, n in entries[:OVERVIEW_ENTRIES])
    if len(entries) > OVERVIEW_ENTRIES:
        lines.append(f"- ... and {len(entries) - OVERVIEW_ENTRIES} more")
    firsts = list(dict.fromkeys(next(k for k in keys if k.startswith(name) or k == name) for name, _ in entries))
    evidence = tuple(Evidence(k, 1, 1) for k in firsts[:OVERVIEW_ENTRIES])
    return Draft(RecordKind.SOURCE_OVERVIEW, "\n".join(lines), evidence, title=f"Source overview: {source.name}")


def build_aggregate(ledger: Ledger, source: Source, plan: AggregatePlan, count: Callable[[str], int]) -> list[Draft]:
    """The drafts of one aggregate; ``count`` counts tokens (the repository map fits a budget)."""
    ids = [i.item_id for i in plan.inputs]
    if plan.name == agg.SOURCE_OVERVIEW:
        found = source_overview(source, plan)
        return [found] if found else []
    if plan.name == agg.PORTFOLIO:
        return portfolio(read_records(ledger, ids, ("contract_card", "clause")), source.name)
    records = read_records(ledger, ids, _CODE_KINDS)
    graph = code_graph(records)
    if plan.name == agg.REPO_MAP:
        drafts = [render_repo_map(graph, source.name, REPO_MAP_TOKENS, count)]
    elif plan.name == agg.PACKAGE_SUMMARY:
        drafts = [package_summary(graph, plan.scope, [i.key for i in plan.inputs])]
    elif plan.name == agg.TEST_MAP:
        return test_map(graph, records)
    else:
        raise ValueError(f"unknown aggregate {plan.name!r} ({plan.key})")
    return [d for d in drafts if d is not None]
