"""Aggregates over the real pipeline: a repository map over real click modules, re-made only when an
input changes; package summaries and the test map; a CUAD contracts portfolio that answers a renewal
question; access grouping; purge and status."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from sleepd.aggregates import (
    AGGREGATE_PREFIX,
    AggregateInput,
    access_groups,
    intersect_access,
    plan_aggregates,
)
from sleepd.auth import Principal
from sleepd.embed import Embedder
from sleepd.schema import ItemRow, RecordRow
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.tokens import get_tokenizer
from sleepd.watchers import Watchers
from tests.helpers import click_repo, enrich, enrich_once, enrich_pending
from workers.builders import REPO_MAP_TOKENS
from workers.tasks import Outcome

CUAD = Path("/work/shared/data/cuad/contracts")
#: two contracts that renew automatically, one that does not
CONTRACTS = ("AMERICANPHYSICIANSCAPITALINC_03_31_2003-EX-10.26-AGENCY AGREEMENT.txt",
             "BLACKBOXSTOCKSINC_08_05_2014-EX-10.1-DISTRIBUTOR AGREEMENT.txt",
             "ADAMSGOLFINC_03_21_2005-EX-10.17-ENDORSEMENT AGREEMENT.txt")
ADMIN = Principal("root", admin=True)
REPO_MAP = AGGREGATE_PREFIX + "repo_map"
TESTS_FILE = '''"""Tests of the command line."""
from core import Command, Group
from exceptions import UsageError


def test_command_invokes_its_callback():
    cmd = Command("hello", callback=lambda: 1)
    assert cmd.name == "hello"


def test_group_rejects_unknown_subcommand():
    group = Group("cli")
    assert group.commands == {}
    assert UsageError
'''


def _code_sources(root: Path) -> list[FileSource]:
    return [FileSource(name="click", path=root / "repo")]


@pytest.fixture(scope="module")
def enriched(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """Four click modules (core is imported by the other three; decorators by none) and a test file,
    enriched once for the module; each test gets its own copy."""
    root = tmp_path_factory.mktemp("aggregates")
    click_repo(root / "repo", ("core.py", "decorators.py", "parser.py", "exceptions.py"),
               {"tests/test_cli.py": TESTS_FILE})
    return enrich_once(root, _code_sources(root), embedder)


@pytest.fixture
def service(tmp_path: Path, enriched: Path, settings: Settings, embedder: Embedder) -> Iterator[Service]:
    for name in ("repo", "home"):
        shutil.copytree(enriched / name, tmp_path / name)
    svc = Service.open(settings)
    svc._embedder = embedder
    for source in _code_sources(tmp_path):
        svc.ledger.save_source(source)
    yield svc
    svc.close()
    svc.ledger.close()


def _records(svc: Service, key: str) -> list[RecordRow]:
    with svc.ledger.read() as s:
        item = s.exec(select(ItemRow).where(ItemRow.key == key)).first()
        if item is None:
            return []
        return list(s.exec(select(RecordRow).where(RecordRow.item_id == item.id)).all())


def _items(svc: Service) -> dict[str, ItemRow]:
    with svc.ledger.read() as s:
        return {i.key: i for i in s.exec(select(ItemRow)).all()}


def _rescan(svc: Service) -> list[Outcome]:
    Watchers(svc.ledger.sources(), svc.ledger, svc.settings).scan_all()
    return enrich_pending(svc, svc._embedder)  # type: ignore[arg-type]


def _listed_files(map_text: str) -> list[str]:
    """The file paths a repository map lists, in order (file lines are not indented)."""
    return [line.split(" (", 1)[0] for line in map_text.splitlines()[1:] if line and not line.startswith(" ")]


def test_repo_map_ranks_the_most_referenced_module_first_within_its_budget(service: Service) -> None:
    (record,) = _records(service, REPO_MAP)
    assert record.kind == "repo_map"
    listed = _listed_files(record.text)
    assert listed[0] == "core.py", record.text
    assert set(listed) == {"core.py", "decorators.py", "parser.py", "exceptions.py", "tests/test_cli.py"}
    assert get_tokenizer(service.settings.tokenizer).count(record.text) <= REPO_MAP_TOKENS
    assert "class Command" in record.text and "class Group" in record.text
    evidence = json.loads(record.evidence)
    assert [e["path"] for e in evidence] == listed
    lines = (Path(service.ledger.get_source("click").path) / "core.py").read_text().splitlines()  # type: ignore[union-attr]
    assert evidence[0] == {"path": "core.py", "start_line": 1, "end_line": len(lines)}


def test_package_summary_and_test_map(service: Service) -> None:
    (summary,) = _records(service, AGGREGATE_PREFIX + "package_summary/.")
    assert summary.kind == "package_summary"
    assert "4 modules" in summary.text and "core.py" in summary.text and "Key symbols" in summary.text
    (tests,) = _records(service, AGGREGATE_PREFIX + "test_map")
    assert tests.kind == "test_map"
    line = next(x for x in tests.text.splitlines() if "test_command_invokes_its_callback" in x)
    assert "core.Command" in line
    assert "exceptions.UsageError" in next(x for x in tests.text.splitlines() if "test_group_rejects" in x)


def test_an_unchanged_rescan_does_not_remake_aggregates(service: Service) -> None:
    before = {k: (i.version, i.state) for k, i in _items(service).items()}
    outcomes = _rescan(service)
    assert outcomes == []
    assert {k: (i.version, i.state) for k, i in _items(service).items()} == before
    assert before[REPO_MAP] == (1, "enriched"), "a rescan never takes an aggregate for a deleted file"


def test_editing_a_leaf_file_remakes_the_aggregates_that_read_it(service: Service) -> None:
    before = {k: i.version for k, i in _items(service).items()}
    repo = Path(service.ledger.get_source("click").path)  # type: ignore[union-attr]
    with (repo / "decorators.py").open("a") as f:
        f.write("\n\ndef brand_new_helper(name):\n    return Command(name)\n")
    _rescan(service)
    after = {k: i.version for k, i in _items(service).items()}
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"decorators.py", REPO_MAP, AGGREGATE_PREFIX + "package_summary/.",
                       AGGREGATE_PREFIX + "test_map"}, "the overview reads keys only; other files are untouched"
    assert _listed_files(_records(service, REPO_MAP)[0].text)[0] == "core.py"


def test_deleting_a_file_updates_the_aggregates(service: Service) -> None:
    repo = Path(service.ledger.get_source("click").path)  # type: ignore[union-attr]
    (repo / "parser.py").unlink()
    _rescan(service)
    (record,) = _records(service, REPO_MAP)
    assert "parser.py" not in _listed_files(record.text)
    assert all(e["path"] != "parser.py" for e in json.loads(record.evidence))
    overview = _records(service, AGGREGATE_PREFIX + "source_overview")[0].text
    assert "5 items" in overview or "4 items" in overview
    assert "parser.py" not in overview


def test_status_counts_aggregates_apart_and_purge_removes_them(service: Service) -> None:
    (src,) = service.status()["sources"]
    assert src["items"]["enriched"] == 5
    assert src["aggregates"]["enriched"] == 4  # overview, repo map, test map, one package
    # a purge by path takes the aggregates that drew on it, and re-makes them from what is left
    service.purge(ADMIN, "click", "decorators.py")
    enrich_pending(service, service._embedder)  # type: ignore[arg-type]
    assert "decorators.py" not in _listed_files(_records(service, REPO_MAP)[0].text)
    receipt = service.purge(ADMIN, "click")
    assert (receipt["items"], receipt["aggregates"]) == (4, 4)
    with service.ledger.read() as s:
        assert not s.exec(select(ItemRow)).all()
        assert not s.exec(select(RecordRow)).all()


def _inputs(spec: dict[str, tuple[str, ...]]) -> list[AggregateInput]:
    return [AggregateInput(i, key, f"h{i}", 1, access) for i, (key, access) in enumerate(spec.items(), 1)]


def test_access_intersection_and_one_aggregate_per_access_group() -> None:
    assert intersect_access([("a", "b"), ("b", "c")]) == ("b",)
    assert intersect_access([("*",), ("hr",)]) == ("hr",)
    assert intersect_access([("*",), ("*",)]) == ("*",)
    assert intersect_access([("a",), ("b",)]) == ()
    inputs = _inputs({"app/core.py": ("eng",), "app/util.py": ("eng",), "hr/pay.py": ("hr",),
                      "README.md": ("eng",)})
    groups = access_groups(inputs)
    assert [(access, [i.key for i in members]) for access, members in groups] == [
        (("eng",), ["app/core.py", "app/util.py", "README.md"]), (("hr",), ["hr/pay.py"])]
    plans = plan_aggregates(FileSource(name="s", path=Path("/x")), inputs)
    maps = [p for p in plans.values() if p.name == "repo_map"]
    assert len(maps) == 2 and len({p.key for p in maps}) == 2
    by_access = {p.access: {i.key for i in p.inputs} for p in maps}
    assert by_access == {("eng",): {"app/core.py", "app/util.py"}, ("hr",): {"hr/pay.py"}}
    # one group: plain keys, and the input hash moves with an input's version, not with its order
    same = plan_aggregates(FileSource(name="s", path=Path("/x")), [i for i in inputs if i.access == ("eng",)])
    assert REPO_MAP in same and (AGGREGATE_PREFIX + "package_summary/app") in same
    flipped = plan_aggregates(FileSource(name="s", path=Path("/x")), list(reversed(
        [i for i in inputs if i.access == ("eng",)])))
    assert flipped[REPO_MAP].input_hash == same[REPO_MAP].input_hash
    bumped = [AggregateInput(i.item_id, i.key, i.enriched_hash, 2 if i.key == "app/util.py" else 1, i.access)
              for i in inputs if i.access == ("eng",)]
    assert plan_aggregates(FileSource(name="s", path=Path("/x")), bumped)[REPO_MAP].input_hash \
        != same[REPO_MAP].input_hash


def test_contracts_portfolio_answers_which_contracts_renew(tmp_path: Path, settings: Settings,
                                                           embedder: Embedder) -> None:
    folder = tmp_path / "contracts"
    folder.mkdir()
    for name in CONTRACTS:
        shutil.copy(CUAD / name, folder / name)
    source = FileSource(name="deals", path=folder, profile="contracts", access=("legal",))
    svc = Service.open(settings)
    try:
        enrich(svc, [source], embedder)
        records = _records(svc, AGGREGATE_PREFIX + "portfolio")
        (record,) = [r for r in records if r.title.startswith("Contract portfolio")]
        assert all(json.loads(r.access) == ["legal"] for r in records)
        # the clause index: per category, the contracts that have it, with their clauses' lines
        (law,) = [r for r in records if r.title == "Contracts with a Governing Law clause"]
        assert law.text.startswith("Contracts with a Governing Law clause (") and "3 of 3 contracts in source deals" \
            in law.text.splitlines()[0]
        assert f'- {CONTRACTS[0]}, lines 123-123: "' in law.text and all(name in law.text for name in CONTRACTS)
        (renewal_index,) = [r for r in records if r.title == "Contracts with a Renewal Term clause"]
        assert CONTRACTS[0] in renewal_index.text and CONTRACTS[2] not in renewal_index.text
        renewal = {line.split(" | ")[0]: line.split(" | ")[2] for line in record.text.splitlines()
                   if " | renewal | " in line}
        assert renewal[CONTRACTS[0]].startswith("renews automatically")
        assert renewal[CONTRACTS[1]].startswith("renews automatically for 24 months")
        assert renewal[CONTRACTS[2]] == "no automatic renewal found"
        result = svc.query("Which contracts renew automatically?", 3000, Principal("ann", groups=("legal",)))
        kinds = [r.kind for r in result.records]
        assert "portfolio" in kinds[:5], kinds
        assert not svc.query("Which contracts renew automatically?", 3000, Principal("bob")).records
        # a question that names a contract gets that contract's clause first, not its preamble
        # or another contract's clause of the same kind
        for question, contract, heading in (
                ("Which law governs the Distributor Agreement between Snotarator LLC and SMSA Ballinger "
                 "Acquisition Corp?", CONTRACTS[1], "9.05 Applicable Law"),
                ("What is the governing law of the Americanphysicianscapitalinc agency agreement?", CONTRACTS[0],
                 "5 Applicable Law")):
            first = svc.query(question, 512, ADMIN).records[0]
            assert (first.item, first.kind) == (contract, "clause") and heading in first.title, (question, first)
    finally:
        svc.close()
        svc.ledger.close()
