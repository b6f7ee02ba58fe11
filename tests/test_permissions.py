"""The permission property: whoever asks, whatever and with whatever budget, no query returns a
record, or names an item, that the asker may not read; and that holds while an admin changes who
may read a source, and which paths inside it have lists of their own, between queries.

One memory is enriched once by the real pipeline (watchers, S(c), aggregates, the index): code,
docs and contracts folders with different access lists, and accounts in a SQL table whose rows
carry their own readers, so the source overview is split per access group. Every item has
words that appear in it alone (its name, a marker); then hypothesis draws principals (a name,
groups, rarely an admin), questions and budgets, and thousands of queries run in process through
:meth:`Service.query`. Now and then an example first changes a files source's access list and its
path globs (:meth:`Service.change_access`, no re-enrichment), and sometimes rebuilds the aggregates
that the change retracted, so queries run against every state in between. The ground truth of who
may read an item is this file's, not the ledger's: a record's access list that is wrong would
otherwise look right.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from sleepd.aggregates import is_aggregate
from sleepd.auth import Principal
from sleepd.embed import Embedder
from sleepd.query import QueryResult
from sleepd.schema import ItemRow, RecordRow
from sleepd.service import Service
from sleepd.settings import FileSource, load_settings
from sleepd.sql.config import sql_source
from sleepd.watchers import Watchers
from tests.helpers import enrich_pending

USERS = ("ann", "bob", "cy", "dee", "eve", "fay")
GROUPS = ("eng", "legal", "sales", "hr", "ops")
#: queries per hypothesis example (one principal asks several questions)
PER_EXAMPLE = 5
EXAMPLES = 2000
#: the property is checked over at least this many queries
MIN_QUERIES = EXAMPLES * PER_EXAMPLE
#: every this many examples, one first changes a source's access (drawn by hypothesis)
CHANGE_EVERY = 40
#: path globs an access change may give lists of their own: "dir/**" (a folder) or a file's path
GLOBS = {"core": ("orbit/**", "tests/**", "orbit/orbit_cache.py"),
         "vault": ("payroll/**", "payroll/zephyr_bonus.py"),
         "handbook": ("welcome.md",),
         "deals": ("nda_pangolix.txt", "msa_quokkaworks.txt")}

#: source -> (profile, access, {file: text}); every word ending in "ix" or "zephyr" etc. is unique
#: to its source, so seeing it in a context names that source's items
FILES: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "core": ("code", ("eng",), {
        "orbit/orbit_router.py": (
            '"""Routes orbitix requests to the right orbit handler."""\n\n'
            "from orbit.orbit_cache import orbit_lookup\n\n\n"
            "def orbit_route(path):\n    \"\"\"Pick the orbitix handler for a path, cached.\"\"\"\n"
            "    return orbit_lookup(path) or 'default'\n"),
        "orbit/orbit_cache.py": (
            '"""An LRU cache of orbitix routes."""\n\n_CACHE = {}\n\n\n'
            "def orbit_lookup(path):\n    \"\"\"The cached orbitix handler of a path.\"\"\"\n"
            "    return _CACHE.get(path)\n"),
        "tests/test_orbit_router.py": (
            "from orbit.orbit_router import orbit_route\n\n\n"
            "def test_orbit_route_default():\n    assert orbit_route('/x') == 'default'\n"),
    }),
    "vault": ("code", ("hr", "ann"), {
        "payroll/zephyr_payroll.py": (
            '"""Monthly zephyr payroll: salaries and the engineering bonus pool."""\n\n'
            "def zephyr_salary(grade):\n    \"\"\"The zephyr salary of a grade, in dollars.\"\"\"\n"
            "    return 100_000 + grade * 12_000\n"),
        "payroll/zephyr_bonus.py": (
            '"""The zephyr bonus pool, split by rating."""\n\n'
            "def zephyr_bonus(rating):\n    \"\"\"Bonus share of a zephyr rating.\"\"\"\n"
            "    return rating * 0.05\n"),
    }),
    "handbook": ("docs", ("*",), {
        "welcome.md": "# Welcome\n\nHow to install the tools, ask for access and find the on-call rota.\n",
    }),
    "deals": ("contracts", ("legal", "bob"), {
        "msa_quokkaworks.txt": (
            "MASTER SERVICES AGREEMENT\n\nThis Master Services Agreement is entered into as of January 5, 2024 "
            "between Quokkaworks Inc. (\"Provider\") and Tarsierfoods LLC (\"Customer\").\n\n"
            "1. Term. The initial term is 24 months and renews automatically for successive one-year periods "
            "unless either party gives sixty days written notice.\n\n"
            "2. Fees. Customer shall pay Provider $12,000 per month.\n\n"
            "3. Governing Law. This Agreement is governed by the laws of the State of Delaware.\n"),
        "nda_pangolix.txt": (
            "MUTUAL NON-DISCLOSURE AGREEMENT\n\nThis Agreement is made on March 2, 2023 between Pangolix Ltd. "
            "and Axolotlbank plc.\n\n1. Term. This Agreement expires two years after the effective date.\n\n"
            "2. Confidentiality. Each party shall keep the other's confidential information secret.\n\n"
            "3. Governing Law. This Agreement is governed by the laws of England and Wales.\n"),
    }),
}
#: words naming one file source's items, beyond its file stems
SOURCE_WORDS = {"core": ("orbitix",), "vault": ("zephyr",), "deals": ("quokkaworks", "tarsierfoods", "pangolix",
                                                                      "axolotlbank")}
#: accounts: key -> (company, readers); several share readers, so aggregate groups have members
ACCOUNTS = {
    "acct_walrus": ("Walrusco", "sales"), "acct_narwhal": ("Narwhalix", "sales"),
    "acct_ibex": ("Ibexora", "sales,eve"), "acct_okapi": ("Okapindustries", "eve"),
    "acct_dugong": ("Dugongware", "*"), "acct_tapir": ("Tapirtech", "ops,legal"),
    "acct_gharial": ("Gharialgas", "ops,legal"), "acct_kinkajou": ("Kinkajoutel", "dee"),
    "acct_quoll": ("Quollquarry", "sales,hr"),
}
QUESTIONS = (
    "How are orbit requests routed?", "What does orbit_lookup cache?", "Which tests cover the router?",
    "What is the zephyr salary of a grade?", "How is the bonus pool split?", "payroll budget",
    "Which contracts renew automatically?", "Which law governs the services agreement?",
    "What are the fees of the master services agreement?", "Who are the parties of the NDA?",
    "How do I install the tools?", "Where is the on-call rota?",
    "What is the status of the Walrusco account?", "Which accounts asked for a refund?",
    "Which accounts renew in March?", "Give an overview of the crm source", "overview of every source",
    "repository map of the code", "Which packages are there and what do they do?", "portfolio of contracts",
    "Tapirtech Gharialgas contract dispute", "Okapindustries Kinkajoutel Quollquarry", "secret salaries",
    "What does each account owe?", "Which customer is at risk of churn?",
)
WORDS = ("orbit", "zephyr", "bonus", "contract", "renewal", "account", "refund", "overview", "map", "law",
         "Walrusco", "Ibexora", "Dugongware", "tests", "cache", "salary", "handbook", "fees")


@dataclass(frozen=True)
class Item:
    source: str
    key: str
    access: tuple[str, ...]
    words: tuple[str, ...]
    #: what the item says: a word of another item found here may be in a context through this one
    text: str


def _write_memory(root: Path) -> tuple[list[FileSource], list[Item], Path]:
    sources, items = [], []
    for name, (profile, access, files) in FILES.items():
        folder = root / name
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
            stem = Path(rel).stem
            items.append(Item(name, rel, access, (stem, *SOURCE_WORDS.get(name, ())), text.lower()))
        sources.append(FileSource(name=name, path=folder, profile=profile, access=access))
    db = root / "crm.db"
    rng = random.Random(11)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY, company TEXT, note TEXT, plan TEXT, readers TEXT)")
        for key, (company, readers) in ACCOUNTS.items():
            note = rng.choice(("asked for a refund", "renewal due in March", "at risk of churn", "owes two invoices"))
            row = (key, company, f"{company} {note}", rng.choice(("gold", "silver")), readers)
            conn.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?)", row)
            items.append(Item("crm", key, tuple(readers.split(",")), (key, company), " ".join(row).lower()))
    return sources, items, db


@dataclass
class Memory:
    service: Service
    items: list[Item]
    #: who may read each item now (the test's own truth, changed with each access change)
    access: dict[tuple[str, str], tuple[str, ...]]
    #: each file item's version and enriched hash: an access change must leave them as they are
    versions: dict[tuple[str, str], tuple[int, str | None]]


def _versions(svc: Service) -> dict[tuple[str, str], tuple[int, str | None]]:
    with svc.ledger.read() as s:
        return {(i.source, i.key): (i.version, i.enriched_hash) for i in s.exec(select(ItemRow)).all()
                if not is_aggregate(i.key)}


def _matches(glob: str, key: str) -> bool:
    """This file's reading of GLOBS: a folder and all below it, or one path."""
    return key.startswith(glob[:-2]) if glob.endswith("/**") else key == glob


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Memory]:
    root = tmp_path_factory.mktemp("permissions")
    files, items, db = _write_memory(root)
    svc = Service.open(load_settings({"SLEEPD_HOME": str(root / "home")}))
    svc._embedder = embedder
    crm = sql_source(f"sqlite:///{db}", "crm", "accounts.id", access_column="accounts.readers")
    for source in [*files, crm]:
        svc.ledger.save_source(source)
    Watchers(svc.ledger.sources(), svc.ledger, svc.settings).scan_all()
    enrich_pending(svc, embedder)
    yield Memory(svc, items, {(i.source, i.key): i.access for i in items}, _versions(svc))
    svc.close()
    svc.ledger.close()


def _aggregate_access(svc: Service) -> dict[tuple[str, str], list[list[str]]]:
    """The access lists of the current records of every aggregate item, from the ledger."""
    with svc.ledger.read() as s:
        rows = s.exec(select(RecordRow, ItemRow).where(RecordRow.item_id == ItemRow.id,
                                                       RecordRow.version == ItemRow.version)).all()
    out: dict[tuple[str, str], list[list[str]]] = {}
    for record, item in rows:
        if is_aggregate(item.key):
            out.setdefault((item.source, item.key), []).append(json.loads(record.access))
    return out


def test_the_memory_has_split_aggregates(memory: Memory) -> None:
    """The property below is only worth something if the memory has what it guards: every kind
    of aggregate, and the accounts' overview split into one per access group."""
    keys = set(_aggregate_access(memory.service))
    for name in ("source_overview", "repo_map", "package_summary", "test_map", "portfolio"):
        assert any(k.startswith(f"@aggregate/{name}") for _, k in keys), (name, sorted(keys))
    crm_overviews = [k for s, k in keys if s == "crm" and k.startswith("@aggregate/source_overview~")]
    assert len(crm_overviews) == len({readers for _, readers in ACCOUNTS.values()})


def leaks(result: QueryResult, principal: Principal, memory: Memory,
          aggregate_access: dict[tuple[str, str], list[list[str]]]) -> list[str]:
    """Everything in ``result`` the principal may not see: records of unreadable items or
    aggregates, evidence pointing at them, and their words anywhere in the context."""
    readable = {where for where, access in memory.access.items() if principal.can_read(access)}
    known = {(i.source, i.key) for i in memory.items}
    found = []
    for record in result.records:
        where = (record.source, record.item)
        if is_aggregate(record.item):
            if not all(principal.can_read(a) for a in aggregate_access[where]):
                found.append(f"aggregate {where} returned")
        elif where not in readable:
            found.append(f"record of {where} returned")
        found.extend(f"evidence {record.source}:{e['path']} in {where}" for e in record.evidence
                     if _evidence_item(record.source, e["path"], known) not in readable)
    context = result.context.lower()
    # a word of an unreadable item that a readable one also says (a source's word, an imported name,
    # once a source's items have lists of their own) may come from the readable one
    said = " ".join(i.text + " " + " ".join(i.words).lower() for i in memory.items if (i.source, i.key) in readable)
    for item in memory.items:
        if (item.source, item.key) not in readable:
            found.extend(f"{word!r} of {item.source}:{item.key} in the context" for word in item.words
                         if word.lower() in context and word.lower() not in said)
    found.extend(f"stale item {s['source']}:{s['item']}" for s in result.stale_items
                 if (s["source"], s["item"]) not in readable and not is_aggregate(s["item"]))
    return found


def _evidence_item(source: str, path: str, known: set[tuple[str, str]]) -> tuple[str, str]:
    """The item evidence points at: a file's path, or a SQL row's ``table:key``."""
    if (source, path) not in known and ":" in path:
        return source, path.split(":", 1)[1]
    return source, path


principals = st.builds(
    Principal,
    name=st.sampled_from((*USERS, "zed")),
    groups=st.lists(st.sampled_from((*GROUPS, "nobody")), max_size=3, unique=True).map(tuple),
    admin=st.sampled_from((False,) * 39 + (True,)),
)
questions = st.one_of(st.sampled_from(QUESTIONS),
                      st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join))
budgets = st.one_of(st.integers(16, 600), st.integers(600, 8000))


readers = st.lists(st.sampled_from((*GROUPS, *USERS, "*")), min_size=1, max_size=2, unique=True).map(tuple)
#: (source, its new list, [(glob, its list), ...] in order, rebuild the aggregates after the queries?)
Change = tuple[str, tuple[str, ...], list[tuple[str, tuple[str, ...]]], bool]
a_change = st.sampled_from(sorted(GLOBS)).flatmap(lambda source: st.tuples(
    st.just(source), readers, st.lists(st.tuples(st.sampled_from(GLOBS[source]), readers), max_size=2,
                                       unique_by=lambda rule: rule[0]), st.booleans()))
ADMIN = Principal("permissions-admin", admin=True)


def change_access(memory: Memory, change: Change) -> None:
    """Apply an access change as an admin does, update this file's truth, and check it landed
    in place: the ledger's and the index's lists are the truth, and no version moved."""
    source, new, paths, _ = change
    svc = memory.service
    svc.change_access(ADMIN, source, list(new), {glob: list(r) for glob, r in paths})
    for item in memory.items:
        if item.source == source:
            memory.access[(source, item.key)] = next((r for glob, r in paths if _matches(glob, item.key)), new)
    with svc.ledger.read() as s:
        rows = [r for r in s.exec(select(RecordRow).where(RecordRow.source == source)).all()
                if not is_aggregate(r.path)]
    payloads = svc.index.payloads([r.id for r in rows])
    for row in rows:
        truth = list(memory.access[(source, row.path)])
        assert json.loads(row.access) == truth and payloads[row.id]["access"] == truth, (change, row.path)
    assert _versions(svc) == memory.versions, "an access change enriched nothing again"


@pytest.mark.timeout(1200)  # 10,000 real queries and 50 access changes: ~210 s on 2 busy cores
def test_no_query_returns_what_its_asker_may_not_read(memory: Memory, embedder: Embedder) -> None:
    aggregate_access = _aggregate_access(memory.service)
    ran: list[int] = []
    applied: list[Change] = []
    started, changing = time.perf_counter(), [0.0]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(principal=principals, asked=st.lists(st.tuples(questions, budgets), min_size=PER_EXAMPLE,
                                                 max_size=PER_EXAMPLE), drawn=a_change)
    def check(principal: Principal, asked: list[tuple[str, int]], drawn: Change) -> None:
        nonlocal aggregate_access
        # a count, not a draw, decides when: hypothesis favours small integers, and would change far more often
        change = drawn if len(ran) % (PER_EXAMPLE * CHANGE_EVERY) == PER_EXAMPLE * (CHANGE_EVERY - 1) else None
        if change is not None:
            began = time.perf_counter()
            change_access(memory, change)
            applied.append(change)
            aggregate_access = _aggregate_access(memory.service)
            changing[0] += time.perf_counter() - began
        for q, budget in asked:
            result = memory.service.query(q, budget, principal)
            ran.append(len(result.records))
            assert not leaks(result, principal, memory, aggregate_access), (principal, q, budget, applied[-3:])
        if change is not None and change[3]:  # the retracted aggregates, rebuilt for the new groups
            began = time.perf_counter()
            enrich_pending(memory.service, embedder)
            assert _versions(memory.service) == memory.versions
            aggregate_access = _aggregate_access(memory.service)
            changing[0] += time.perf_counter() - began

    check()
    elapsed = time.perf_counter() - started
    globs = sum(len(c[2]) for c in applied)
    print(f"\npermission property: {len(ran)} queries, {sum(ran)} records returned, {len(applied)} access changes "
          f"({globs} path globs, {changing[0]:.1f}s of it with rebuilds), 0 leaks, {elapsed:.1f}s")
    assert len(ran) >= MIN_QUERIES and sum(ran) > len(ran)  # and they returned something to check
    assert len(applied) == EXAMPLES // CHANGE_EVERY and globs > 0 and any(c[3] for c in applied)
