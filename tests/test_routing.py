"""Questions across items routed to the aggregates (sleepd.routing): the detector on questions that
ask across items and ones that do not; the parts of one aggregate kept together; and, over real
CUAD contracts in two access groups with the real model, the clause index's lines (contract, lines,
an excerpt of the clause found there), a question in a user's own words reaching the right clause
index, and nothing of the other group in the pack."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import select

from sleepd.auth import Principal
from sleepd.embed import Embedder
from sleepd.routing import ROUTE_BOOST, cross_item, promote
from sleepd.schema import RecordRow
from sleepd.service import Service
from sleepd.settings import FileSource, load_settings
from tests.helpers import enrich
from workers.builders.portfolio import EXCERPT_WORDS

CUAD = Path("/work/shared/data/cuad/contracts")
#: the legal team's contracts: the first two renew automatically, the third does not
LEGAL = ("AMERICANPHYSICIANSCAPITALINC_03_31_2003-EX-10.26-AGENCY AGREEMENT.txt",
         "BLACKBOXSTOCKSINC_08_05_2014-EX-10.1-DISTRIBUTOR AGREEMENT.txt",
         "ADAMSGOLFINC_03_21_2005-EX-10.17-ENDORSEMENT AGREEMENT.txt")
#: the sales team's contract: renews automatically too, and only sales may read it
SALES = ("CardlyticsInc_20180112_S-1_EX-10.16_11002987_EX-10.16_Maintenance Agreement4.txt",)
ANN = Principal("ann", groups=("legal",))
SAM = Principal("sam", groups=("sales",))
RENEWS = "Which of our agreements roll over on their own unless somebody cancels them?"
_LINE = re.compile(r'^- (?P<path>.+?), lines (?P<spans>\d+-\d+(?:, \d+-\d+)*): "(?P<quote>.*)"$')

ACROSS = (
    "Which of our contracts renew automatically, and for what period?",
    "Which contracts have a Non-Compete clause?",
    "List all agreements governed by New York law",
    "Do any of our agreements have a most favored nation clause?",
    "How many customers asked for a refund this year?",
    "Which files handle redirects?",
    "every contract with an audit right",
    "Give an overview of the crm source",
)
ABOUT_ONE = (
    "What is the governing law of the Zogenix agreement?",
    "Which law governs the Distributor Agreement between Snotarator LLC and SMSA Ballinger Acquisition Corp?",
    "What are the fees of the master services agreement?",
    "How are redirects handled?",
    "I want to return all the items in my order",
    "What is the status of the Walrusco account?",
    "What is the Renewal Term clause of the Marketing Affiliate Agreement between Birch First Global "
    "Investments Inc. and Mount Knowledge Holdings Inc.?",
    # a long report names "all files" in passing: it is about its own case
    "When I run the test suite on a fresh checkout, importing the session module fails with a circular import "
    "error; it happens for all files that import the adapters first, and only on Python 3.12 with the "
    "optional extras installed, never on 3.11 or without them.",
)


@pytest.mark.parametrize("question", ACROSS)
def test_a_question_across_items_is_told(question: str) -> None:
    assert cross_item(question)


@pytest.mark.parametrize("question", ABOUT_ONE)
def test_a_question_about_one_item_is_not(question: str) -> None:
    assert not cross_item(question)


def _row(rid: str, path: str, title: str, kind: str = "clause") -> RecordRow:
    return RecordRow(id=rid, item_id=1 if path.startswith("@aggregate/") else 2, version=1, source="s", path=path,
                     kind=kind, title=title, text=title, evidence="[]", access='["*"]', embedding=b"",
                     content_hash="h", pipeline_version="p", created_at=0.0)


def test_promote_raises_aggregates_and_keeps_one_aggregates_parts_together() -> None:
    clause_a, clause_b = _row("a", "x.txt", "a clause"), _row("b", "y.txt", "another clause")
    part1 = _row("p1", "@aggregate/portfolio", "Contracts with a Renewal Term clause (1/2)", "portfolio")
    part2 = _row("p2", "@aggregate/portfolio", "Contracts with a Renewal Term clause (2/2)", "portfolio")
    other = _row("o", "@aggregate/portfolio", "Contracts with an Insurance clause", "portfolio")
    scored = [(0.70, clause_a), (0.50, part2), (0.60, clause_b), (0.45, part1), (0.40, other)]
    routed = promote(scored)
    assert [r.id for _, r in routed] == ["a", "p1", "p2", "b", "o"]
    assert dict((r.id, s) for s, r in routed)["p2"] == pytest.approx(0.50 + ROUTE_BOOST)
    # no aggregate among the candidates: the order is the one given
    assert [r.id for _, r in promote([(0.7, clause_a), (0.6, clause_b)])] == ["a", "b"]


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text))


@dataclass
class Memory:
    service: Service
    roots: dict[str, Path]


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Memory]:
    root = tmp_path_factory.mktemp("routing")
    sources, roots = [], {}
    for name, files, group in (("deals", LEGAL, "legal"), ("sales", SALES, "sales")):
        folder = root / name
        folder.mkdir()
        for file in files:
            shutil.copy(CUAD / file, folder / file)
        sources.append(FileSource(name=name, path=folder, profile="contracts", access=(group,)))
        roots[name] = folder
    svc = Service.open(load_settings({"SLEEPD_HOME": str(root / "home")}))
    enrich(svc, sources, embedder)
    yield Memory(svc, roots)
    svc.close()
    svc.ledger.close()


def _index_records(memory: Memory, source: str) -> list[RecordRow]:
    with memory.service.ledger.read() as s:
        rows = s.exec(select(RecordRow).where(RecordRow.source == source, RecordRow.kind == "portfolio")).all()
    return [r for r in rows if r.title.startswith("Contracts with")]


def test_each_clause_index_line_has_the_contract_its_lines_and_an_excerpt_from_them(memory: Memory) -> None:
    records = _index_records(memory, "deals")
    (renewal,) = [r for r in records if r.title == "Contracts with a Renewal Term clause"]
    lines = renewal.text.splitlines()
    assert "automatic" in lines[0] and "2 of 3 contracts" in lines[0]
    assert {_LINE.match(line).group("path") for line in lines[1:]} == set(LEGAL[:2])  # type: ignore[union-attr]
    checked = 0
    for record in records:
        evidence = {(e["path"], e["start_line"], e["end_line"]) for e in json.loads(record.evidence)}
        for line in record.text.splitlines()[1:]:
            found = _LINE.match(line)
            assert found is not None, line
            path, quote = found.group("path"), found.group("quote").strip(".")
            first = found.group("spans").split(", ")[0]
            start, end = (int(n) for n in first.split("-"))
            assert (path, start, end) in evidence
            assert 0 < len(quote.split()) <= EXCERPT_WORDS
            source_lines = (memory.roots["deals"] / path).read_text(encoding="utf-8").splitlines()
            # the same words in the same order (the clause's record evens out spacing and bullets)
            assert _words(quote) in _words(" ".join(source_lines[start - 1:end])), (quote, path, start, end)
            checked += 1
    assert checked >= 20


def test_a_question_in_plain_words_meets_the_right_clause_index(memory: Memory, embedder: Embedder) -> None:
    records = _index_records(memory, "deals")
    vectors = {r.title: np.frombuffer(r.embedding, dtype=np.float32) for r in records}
    for question, title in (("Which of our contracts renew automatically, and for what period?",
                             "Contracts with a Renewal Term clause"),
                            ("Which contracts can we get out of whenever we like, without giving a reason?",
                             "Contracts with a Termination For Convenience clause")):
        asked = embedder.encode_one(question)
        nearest = max(vectors, key=lambda t: float(np.dot(asked, vectors[t])))
        assert nearest == title, question
    # worded further from the category still: the sparse side meets "roll over" in its plain words
    result = memory.service.query(RENEWS, 1024, ANN)
    assert result.records[0].title == "Contracts with a Renewal Term clause"
    assert all(name in result.context for name in LEGAL[:2])


def test_a_question_about_one_contract_is_not_routed(memory: Memory) -> None:
    result = memory.service.query("What is the renewal term of the Blackboxstocks distributor agreement?", 1024, ANN)
    assert result.records[0].kind == "clause" and result.records[0].item == LEGAL[1]


def test_a_cross_item_answer_names_nothing_of_another_access_group(memory: Memory) -> None:
    for question in (RENEWS, "Which contracts have a Renewal Term clause?", "portfolio of contracts"):
        legal = memory.service.query(question, 4096, ANN)
        assert legal.records and not any(r.source == "sales" for r in legal.records)
        assert SALES[0] not in legal.context and "Cardlytics" not in legal.context
        assert all(e["path"] != SALES[0] for r in legal.records for e in r.evidence)
        sales = memory.service.query(question, 4096, SAM)  # the same question does reach it for sales
        assert sales.records and SALES[0] in sales.context
        assert not any(name in sales.context for name in LEGAL)

