"""Aggregates: memory records that span the items of a source (a repository map, a contract portfolio).

Each aggregate is a synthetic item of its source, keyed ``@aggregate/<name>[/<scope>][~<group>]``, whose
"content hash" is a hash over its inputs: the ``(key, enriched hash, version)`` of the items it reads.
After an item of a source publishes or is retracted, :func:`refresh_aggregates` observes every aggregate
of that source with its current input hash, so the ordinary outbox (changes, tasks, idempotent publish)
re-makes exactly the aggregates whose inputs changed, and an unchanged input set costs nothing.

Permissions travel: inputs are grouped by access list and each group gets its own aggregate, carrying
the intersection of its inputs' lists, so no aggregate mixes what different principals may read.

Nothing here builds records (that is :mod:`workers.builders`); this module plans and reads.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from sleepd.languages import language_for
from sleepd.schema import AGGREGATE_PREFIX, OPEN_CHANGES, ChangeRow, ItemRow, ItemState, RecordRow
from sleepd.settings import FileSource, Source

if TYPE_CHECKING:
    from sleepd.ledger import Ledger

__all__ = [
    "AGGREGATE_PREFIX",
    "AggregateInput",
    "AggregatePlan",
    "InputRecord",
    "access_groups",
    "intersect_access",
    "is_aggregate",
    "is_test_path",
    "live_inputs",
    "plan_aggregates",
    "plan_for",
    "read_records",
    "refresh_aggregates",
    "split_rows",
]

REPO_MAP = "repo_map"
PACKAGE_SUMMARY = "package_summary"
TEST_MAP = "test_map"
PORTFOLIO = "portfolio"
SOURCE_OVERVIEW = "source_overview"
#: profiles whose files may be source code (language by extension)
CODE_PROFILES = ("auto", "code")


def is_aggregate(key: str) -> bool:
    return key.startswith(AGGREGATE_PREFIX)


def is_test_path(path: str) -> bool:
    """A test file by the usual conventions (``test_x.py``, ``x_test.go``, ``tests/``, ``__tests__/``)."""
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith(("_test.py", ".test.ts", ".spec.ts", ".test.js", "_test.go")) \
        or any(part in ("tests", "test", "__tests__", "spec") for part in path.split("/")[:-1])


@dataclass(frozen=True)
class AggregateInput:
    """A live item an aggregate may read: enriched, with records, not itself an aggregate."""

    item_id: int
    key: str
    enriched_hash: str
    version: int
    access: tuple[str, ...]


@dataclass(frozen=True)
class AggregatePlan:
    """One aggregate a source should have now: its key, what it reads, who may read it."""

    key: str
    name: str
    #: a package folder for ``package_summary``; "" otherwise
    scope: str
    inputs: tuple[AggregateInput, ...]
    access: tuple[str, ...]
    #: content of the inputs matters (False: only their keys, e.g. an overview of the layout)
    by_content: bool = True

    @property
    def input_hash(self) -> str:
        """Changes exactly when what the aggregate is built from changes."""
        digest = hashlib.sha256(f"{self.key}\n{json.dumps(list(self.access))}\n".encode())
        for item in sorted(self.inputs, key=lambda i: i.key):
            line = f"{item.key}\0{item.enriched_hash}\0{item.version}\n" if self.by_content else f"{item.key}\n"
            digest.update(line.encode("utf-8", "surrogatepass"))
        return "agg:" + digest.hexdigest()


@dataclass(frozen=True)
class InputRecord:
    """A current record of an input, without its embedding: what aggregate builders read."""

    path: str
    kind: str
    title: str
    text: str
    evidence: tuple[tuple[str, int, int], ...]


def intersect_access(lists: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Who may read everything in ``lists``: the values every list shares (``*`` is everyone, so it
    yields to the other lists' values). Empty when nobody may read all of them."""
    sets = [set(a) for a in lists]
    if not sets:
        return ()
    named = [s for s in sets if "*" not in s]
    if not named:
        return ("*",)
    common = set.intersection(*named)
    return tuple(sorted(common))


def access_groups(inputs: Sequence[AggregateInput]) -> list[tuple[tuple[str, ...], list[AggregateInput]]]:
    """Inputs grouped by identical access list, the largest group first, each with its intersection."""
    groups: dict[tuple[str, ...], list[AggregateInput]] = {}
    for item in inputs:
        groups.setdefault(tuple(sorted(set(item.access))), []).append(item)
    ordered = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
    return [(intersect_access([i.access for i in members]), members) for _, members in ordered]


def _group_suffix(access: tuple[str, ...], n_groups: int) -> str:
    if n_groups == 1:
        return ""
    return "~" + hashlib.sha256(json.dumps(list(access)).encode()).hexdigest()[:10]


def plan_aggregates(source: Source, inputs: Sequence[AggregateInput]) -> dict[str, AggregatePlan]:
    """Every aggregate ``source`` should have for these inputs, by key (pure)."""
    plans: dict[str, AggregatePlan] = {}
    groups = access_groups(inputs)
    for access, members in groups:
        suffix = _group_suffix(access, len(groups))

        def add(name: str, chosen: Sequence[AggregateInput], scope: str = "", by_content: bool = True,
                access: tuple[str, ...] = access, suffix: str = suffix) -> None:
            key = f"{AGGREGATE_PREFIX}{name}{'/' + scope if scope else ''}{suffix}"
            plans[key] = AggregatePlan(key, name, scope, tuple(chosen), access, by_content)

        add(SOURCE_OVERVIEW, members, by_content=False)
        if source.profile == "contracts":
            add(PORTFOLIO, members)
        if isinstance(source, FileSource) and source.profile in CODE_PROFILES:
            code = [i for i in members if language_for(i.key) is not None]
            if code:
                add(REPO_MAP, code)
            if any(is_test_path(i.key) for i in code) and any(not is_test_path(i.key) for i in code):
                add(TEST_MAP, code)
            packages: dict[str, list[AggregateInput]] = {}
            for item in code:
                if not is_test_path(item.key):
                    packages.setdefault(posixpath.dirname(item.key) or ".", []).append(item)
            for folder, files in packages.items():
                add(PACKAGE_SUMMARY, files, scope=folder)
    return plans


def live_inputs(ledger: Ledger, source: str) -> list[AggregateInput]:
    """The source's enriched items with records (one snapshot), each with its records' access list."""
    with ledger.read() as s:
        items = s.exec(select(ItemRow).where(
            ItemRow.source == source, ItemRow.state != ItemState.DELETED.value, col(ItemRow.version) > 0,
            col(ItemRow.enriched_hash).is_not(None), col(ItemRow.n_records) > 0,
            col(ItemRow.key).not_like(AGGREGATE_PREFIX + "%"))).all()
        # every record of one version carries the item's access list: one per item is enough
        access = dict(s.exec(select(RecordRow.item_id, func.min(RecordRow.access)).where(
            RecordRow.source == source).group_by(col(RecordRow.item_id))).all())
    out = []
    for item in items:
        if item.id is None or item.enriched_hash is None or item.id not in access:
            continue
        out.append(AggregateInput(item.id, item.key, item.enriched_hash, item.version,
                                  tuple(json.loads(access[item.id]))))
    return sorted(out, key=lambda i: i.key)


def plan_for(ledger: Ledger, source: Source, key: str) -> AggregatePlan | None:
    """The current plan of one aggregate key; None when the source should no longer have it."""
    return plan_aggregates(source, live_inputs(ledger, source.name)).get(key)


def _busy(ledger: Ledger, source: str) -> bool:
    """Input changes still open: the aggregates wait for the last of them (a burst, one rebuild)."""
    with ledger.read() as s:
        open_change = s.exec(select(ChangeRow.id).join(ItemRow, col(ItemRow.id) == col(ChangeRow.item_id)).where(
            ItemRow.source == source, col(ChangeRow.status).in_(OPEN_CHANGES),
            col(ItemRow.key).not_like(AGGREGATE_PREFIX + "%")).limit(1)).first()
    return open_change is not None


def refresh_aggregates(ledger: Ledger, source: str, when_quiet: bool = True) -> int:
    """Observe every aggregate of ``source`` with its current input hash, and the deletion of those it
    should no longer have. Returns how many changed. With ``when_quiet``, does nothing while changes of
    the source's items are still open (the task that closes the last of them calls this again)."""
    found = ledger.get_source(source)
    if found is None or (when_quiet and _busy(ledger, source)):
        return 0
    plans = plan_aggregates(found, live_inputs(ledger, source))
    changed = 0
    for key, plan in plans.items():
        changed += ledger.observe(source, key, plan.input_hash, len(plan.inputs), 0)
    with ledger.read() as s:
        existing = s.exec(select(ItemRow.key).where(
            ItemRow.source == source, ItemRow.state != ItemState.DELETED.value,
            col(ItemRow.key).like(AGGREGATE_PREFIX + "%"))).all()
    for key in existing:
        if key not in plans:
            changed += ledger.observe_deleted(source, key)
    return changed


def read_records(ledger: Ledger, item_ids: Sequence[int], kinds: Sequence[str] | None = None) -> list[InputRecord]:
    """Current records of the given items (no embeddings), in path and evidence order."""
    if not item_ids:
        return []
    columns = [RecordRow.path, RecordRow.kind, RecordRow.title, RecordRow.text, RecordRow.evidence]
    query = sa_select(*[col(c) for c in columns]).where(
        col(RecordRow.item_id).in_(list(item_ids)))
    if kinds is not None:
        query = query.where(col(RecordRow.kind).in_(list(kinds)))
    with ledger.read() as s:
        rows = s.execute(query).all()
    out = []
    for path, kind, title, text, evidence in rows:
        spans = tuple((str(e["path"]), int(e["start_line"]), int(e["end_line"])) for e in json.loads(evidence))
        out.append(InputRecord(path, kind, title, text, spans))
    return sorted(out, key=lambda r: (r.path, r.evidence[0][1] if r.evidence else 0, r.kind))


_Row = TypeVar("_Row")


def split_rows(rows: list[_Row], text_of: Callable[[_Row], str], cap: int, header: str) -> list[list[_Row]]:
    """Rows cut into parts whose header and lines stay within ``cap`` characters, lines kept whole
    (a part holds at least one row, however long)."""
    parts: list[list[_Row]] = [[]]
    size = len(header)
    for row in rows:
        if parts[-1] and size + len(text_of(row)) + 1 > cap:
            parts.append([])
            size = len(header)
        parts[-1].append(row)
        size += len(text_of(row)) + 1
    return parts
