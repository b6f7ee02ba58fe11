"""The query engine with the real model, ledger, index and tokenizer: ranking, focus, packing,
exact accounting, a candidate pool that grows with the budget, and determinism across homes."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sleepd import defaults
from sleepd.auth import Principal
from sleepd.embed import Embedder
from sleepd.index import Hit
from sleepd.order import item_order
from sleepd.pack import MIN_PARTIAL, ROUTES, pack
from sleepd.query import candidate_pool
from sleepd.ranking import Named, focus, fuse, rank, rank_key, settled
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.schema import ItemRow, RecordRow
from sleepd.service import Service
from sleepd.settings import load_settings
from sleepd.sparse import terms as _terms
from sleepd.tokens import get_tokenizer

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Principal("test", admin=True)
TOKENIZER = get_tokenizer(defaults.TOKENIZER)


def _row(i: int, text: str, *, item_id: int = 1, kind: str = "section", path: str = "a.md", title: str = "",
         line: int | None = None) -> RecordRow:
    line = i + 1 if line is None else line
    return RecordRow(id=f"r{i:05d}", item_id=item_id, version=1, source="docs", path=path, kind=kind, title=title,
                     text=text, evidence=json.dumps([{"path": path, "start_line": line, "end_line": line}]),
                     access='["*"]', embedding=b"", content_hash="h", pipeline_version="p", created_at=0.0)


def _items(*ids: int) -> dict[int, ItemRow]:
    return {i: ItemRow(id=i, source="docs", key=f"item{i}", observed_hash="h", enriched_hash="h", version=1)
            for i in ids}


# -- ranking --------------------------------------------------------------------------------------

def test_rank_is_a_total_order_on_content_not_on_input_order_or_ids() -> None:
    """Issue 12: ties (the same text twice) kept the order the ledger's IN query or the index gave;
    a home built another way gave another pack. Now the order is the same for any input order and
    any record ids (ids depend on item ids, which depend on the order items were seen)."""
    rows = [_row(i, "Notices shall be in writing." if i % 3 else f"Clause {i} on payment", line=i % 5)
            for i in range(30)]
    dense = {r.id: (0.5 if "Notices" in r.text else 0.4) for r in rows}
    terms = _terms("notices in writing")
    expected = [(r.text, r.evidence) for _, r in rank(terms, rows, dense, {}, {})]
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        renamed = [r.model_copy(update={"id": f"x{random.Random(seed + i).random()}"}) for i, r in enumerate(shuffled)]
        redense = {n.id: dense[o.id] for n, o in zip(renamed, shuffled, strict=True)}
        assert [(r.text, r.evidence) for _, r in rank(terms, renamed, redense, {}, {})] == expected
    assert expected[0][0] == "Notices shall be in writing."  # the best score still comes first


def test_scores_equal_to_the_last_bits_are_ties_broken_by_content() -> None:
    a, b = _row(1, "alpha", path="b.md"), _row(2, "beta", path="a.md")
    assert sorted([(0.3 + 1e-9, a), (0.3, b)], key=rank_key)[0][1] is b  # a.md before b.md
    assert sorted([(0.31, a), (0.3, b)], key=rank_key)[0][1] is a  # a real difference still wins


def test_a_cut_through_tied_hits_drops_them() -> None:
    hits = [Hit("a", 0.9), Hit("b", 0.8), Hit("c", 0.7), Hit("d", 0.7)]
    assert settled(hits, 4) == hits[:2]  # which of the tied points made the cut is up to the index
    assert settled(hits, 5) == hits  # the search was not cut: every tie is in
    assert settled([Hit("a", 0.5), Hit("b", 0.5)], 2) == [Hit("a", 0.5), Hit("b", 0.5)]


def test_focus_names_the_item_whose_records_all_share_the_words() -> None:
    acme = [_row(i, f"Acme Supply agreement, section {i}: topic {i}", item_id=1) for i in range(4)]
    other = [_row(10 + i, f"Globex licence, clause {i}", item_id=2) for i in range(4)]
    text = "What is the termination clause of the Acme Supply agreement?"
    scored = [(1.0 - i / 100, r) for i, r in enumerate(acme + other)]
    named = focus(text, _terms(text), scored)
    assert named is not None
    assert named[0] == [1] and named[1] == "termination clause"
    assert focus("termination", _terms("termination"), scored) is None  # no item named
    # raw windows of the contract, ranked first, do not repeat its name as its clauses do: the
    # question still names it (windows are not written to name their item)
    windows = [(1.5, _row(20 + i, f"raw lines {i} on termination", item_id=1, kind="window")) for i in range(3)]
    assert focus(text, _terms(text), windows + scored) == named



def test_the_topic_drops_the_items_name_with_its_parties_not_a_name_word_asked_about() -> None:
    """Issue 12: every word of the name was dropped wherever it stood, and the parties a record
    does not repeat were kept: "What is the Agreement Date clause of the Acme Supply Agreement
    between Acme Corp. and Globex Ltd.?" was asked again as "Date clause between Corp. Globex
    Ltd.". The name is the phrase where its words cluster, parties included."""
    acme = [_row(i, f"Acme Supply Agreement, section {i}: topic {i}", item_id=1) for i in range(4)]
    scored = [(1.0 - i / 100, r) for i, r in enumerate(acme)]
    text = "What is the Agreement Date clause of the Acme Supply Agreement between Acme Corp. and Globex Ltd.?"
    assert focus(text, _terms(text), scored) == ([1], "Agreement Date clause", True)
    text = "Does the Acme Supply Agreement (as amended) between Acme Corp. and Globex Ltd. renew on its own?"
    assert focus(text, _terms(text), scored) == ([1], "renew its own", True)


def test_words_every_text_repeats_name_no_item() -> None:
    """A franchise agreement in the first person repeats "we" and "have" in every clause: "Where do
    we have to warn the other side ...?" named it, and its clauses crowded out the answer."""
    ours = [_row(i, f"We have the right to approve item {i}.", item_id=1) for i in range(4)]
    text = "Where do we have to warn the other side ahead of time?"
    assert focus(text, _terms(text), [(1.0 - i / 100, r) for i, r in enumerate(ours)]) is None
    # words an article repeats name it, but not by a proper name: its records are not re-ranked
    # by the topic alone (a knowledge base's company profile crowded out the answer, kb tune half)
    profile = [_row(i, f"The company's year {i}: item {i}", item_id=1) for i in range(4)]
    text = "Can you identify the year in which the company was founded?"
    named = focus(text, _terms(text), [(1.0 - i / 100, r) for i, r in enumerate(profile)])
    assert named is not None and not named.proper


def test_within_a_named_item_the_topic_ranks_its_records_not_its_name() -> None:
    """Issue 12: within the contract a question names, every clause repeats its name, so the
    question's cosine and keywords favoured the preamble (all the parties) over the clause asked
    about, which only the focused search had found (no first-stage score at all)."""
    preamble = _row(0, "Supply Agreement between Acme Corp and Globex Inc, dated 1 May 2020", title="Parties")
    notices = _row(1, "Notices shall be given in writing to the addresses above", title="Notices")
    other = _row(2, "Globex Inc invoices are due in 30 days", item_id=2, path="b.md")
    rows = [preamble, notices, other]
    terms = _terms("What is the notices clause of the Acme Supply Agreement between Acme Corp and Globex Inc?")
    dense, fused, lexical = {preamble.id: 0.8, other.id: 0.5}, {preamble.id: 1.0, other.id: 0.5}, {preamble.id: 1.0}
    topical = {preamble.id: 0.2, notices.id: 0.6}
    named = Named(frozenset({1}), {notices.id: 1.0})
    assert rank(terms, rows, dense, topical, fused, lexical)[0][1].id == preamble.id
    assert [r.id for _, r in rank(terms, rows, dense, topical, fused, lexical, named=named)] == [
        notices.id, preamble.id, other.id]

# -- packing and exact accounting ----------------------------------------------------------------

def test_pack_cites_an_item_once_then_says_same_item_and_cuts_the_last_record() -> None:
    rows = [_row(0, "first " * 20), _row(1, "second " * 20), _row(2, "third " * 400)]
    result = pack(TOKENIZER, "q", 200, [(1.0, r) for r in rows], _items(1))
    assert [r.header for r in result.records] == ["[section] docs:a.md:1-1\n", "[section] same item, lines 2-2\n",
                                                  "[section] same item, lines 3-3\n"]
    assert result.records[2].text != rows[2].text and rows[2].text.startswith(result.records[2].text)
    assert result.tokens_used == TOKENIZER.count(result.context) and 200 - MIN_PARTIAL < result.tokens_used <= 200


def test_a_record_quoting_a_special_token_is_packed_and_counted_as_plain_text() -> None:
    """A tokenizer's source or a chat log quotes "<|endoftext|>"; counting it used to raise (the
    encoder refuses special tokens in text), and the query with it."""
    rows = [_row(0, "The model stops at <|endoftext|> and <|fim_prefix|> marks a prefix. " * 3),
            _row(1, "<|endoftext|>" * 200)]
    result = pack(TOKENIZER, "what ends a text <|endoftext|>", 120, [(1.0, r) for r in rows], _items(1))
    assert len(result.records) == 2 and result.records[0].text == rows[0].text  # the second one cut
    assert result.tokens_used == TOKENIZER.count(result.context) <= 120
    assert TOKENIZER.count("<|endoftext|>") > 1  # its characters, not the one special token


def test_an_empty_pack_says_why() -> None:
    rows = [_row(0, "a long clause " * 100)]
    tight = pack(TOKENIZER, "q", 16, [(1.0, r) for r in rows], _items(1))
    assert tight.records == [] and tight.tokens_used == 0
    assert tight.note is not None and "budget of 16 tokens cannot hold a single record" in tight.note
    assert tight.as_dict()["note"] == tight.note
    nothing = pack(TOKENIZER, "q", 1000, [], _items(1))
    assert nothing.note is not None and "nothing in memory matches" in nothing.note
    assert pack(TOKENIZER, "q", 1000, [(1.0, r) for r in rows], _items(1)).note is None


def test_pack_replaces_a_stale_items_record_with_its_raw_lines(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("line one\nline two changed\nline three\n")
    items = _items(1)
    items[1].observed_hash = "new"
    result = pack(TOKENIZER, "q", 500, [(1.0, _row(1, "old text"))], items, {"docs": tmp_path})
    assert result.records[0].text == "line two changed" and not result.records[0].fresh
    assert result.stale_items == [{"source": "docs", "item": "item1", "state": "pending"}]


def test_the_api_form_of_a_pack_holds_every_field_in_order_then_the_context(tmp_path: Path) -> None:
    """The API's JSON is built field by field (dataclasses.asdict deep-copied every record's evidence
    for 1 ms a pack): it must still hold what asdict gave, in the same order, so the bytes the API
    returns stay the same."""
    (tmp_path / "a.md").write_text("line one\nline two changed\nline three\n")
    items = _items(1, 2)
    items[1].observed_hash = "new"  # a stale item too, so stale_items is not empty
    rows = [_row(1, "old text"), _row(2, "another record " * 5, item_id=2, line=2)]
    result = pack(TOKENIZER, "q", 500, [(1.0, r) for r in rows], items, {"docs": tmp_path})
    assert len(result.records) == 2 and result.stale_items
    expected = dataclasses.asdict(result) | {"context": result.context}
    assert json.dumps(result.as_dict()) == json.dumps(expected)


def _spans(row: RecordRow, *spans: tuple[int, int]) -> RecordRow:
    return row.model_copy(update={"evidence": json.dumps(
        [{"path": row.path, "start_line": a, "end_line": b} for a, b in spans])})


def test_a_summary_and_the_section_it_covers_are_never_both_packed() -> None:
    """Issue 12: a pack held an article's summary, its likely questions and its sections side by
    side. A record whose lines a packed verbatim record of its item holds is left out; a verbatim
    record that holds the lines of packed ones takes their place."""
    summary = _spans(_row(0, "Refunds take five days.", kind="file_summary"), (1, 12), (3, 3))
    questions = _spans(_row(1, "Q: how long do refunds take? A: five days.", kind="questions"), (3, 4))
    section = _spans(_row(2, "# Refunds\n\nRefunds take five days.\nAsk the desk.", kind="section"), (1, 12))
    other = _row(3, "Shipping is free.", item_id=2, path="b.md")
    for ranked in ([summary, questions, section, other], [section, summary, questions, other],
                   [questions, section, other, summary]):
        result = pack(TOKENIZER, "q", 1000, [(1.0 - i / 10, r) for i, r in enumerate(ranked)], _items(1, 2))
        kinds = [(r.item, r.kind) for r in result.records]
        assert sorted(kinds) == [("a.md", "section"), ("b.md", "section")], kinds
        assert result.tokens_used == TOKENIZER.count(result.context) <= 1000
        assert result.records[0].header.startswith("[section] docs:a.md:1-12")  # cited in full once
    # a window that holds a symbol's lines: the symbol is not packed beside it
    window = _spans(_row(4, "def f():\n    return 1\n\ndef g():\n    return 2", kind="window"), (1, 5))
    symbol = _spans(_row(5, "def g():\n    return 2", kind="symbol"), (4, 5))
    result = pack(TOKENIZER, "q", 1000, [(0.9, symbol), (0.8, window)], _items(1))
    assert [r.kind for r in result.records] == ["window"]
    # a section that holds only part of what a summary cites does not replace it
    part = _spans(_row(6, "Refunds are paid back to the card they came from.", kind="section"), (3, 3))
    result = pack(TOKENIZER, "q", 1000, [(0.9, summary), (0.8, part)], _items(1))
    assert [r.kind for r in result.records] == ["file_summary", "section"]
    # ... and one that says no more than the summary in the same words is left out (sleepd.order.repeats)
    same = _spans(_row(7, "Refunds take five days.", kind="section"), (3, 3))
    result = pack(TOKENIZER, "q", 1000, [(0.9, summary), (0.8, same)], _items(1))
    assert [r.kind for r in result.records] == ["file_summary"]


def test_items_come_before_records_best_record_of_each_likely_item_first() -> None:
    """Coarse to fine: the best record of each item close to the best item's score, in item
    order, then the other records by score."""
    a = [_row(i, f"alpha {i}", item_id=1, path="a.md") for i in range(3)]
    b = [_row(10, "beta", item_id=2, path="b.md")]
    c = [_row(20, "gamma", item_id=3, path="c.md")]
    scored = [(0.9, a[0]), (0.88, b[0]), (0.7, c[0]), (0.3, a[1]), (0.3, a[2])]
    assert [r.text for _, r in item_order(scored)] == ["alpha 0", "beta", "gamma", "alpha 1", "alpha 2"]
    # an item whose records add up ranks its best record above a single better one
    d = [(0.87, _row(60, "delta 0", item_id=7, path="d.md")), (0.85, _row(61, "delta 1", item_id=7, path="d.md"))]
    scored = sorted([(0.9, a[0]), (0.88, b[0]), *d, (0.3, a[1])], key=rank_key)
    assert [r.text for _, r in item_order(scored)] == ["delta 0", "alpha 0", "beta", "delta 1", "alpha 1"]
    result = pack(TOKENIZER, "q", 1000, scored, _items(1, 2, 7))
    assert [r.text for r in result.records] == ["delta 0", "alpha 0", "beta", "delta 1", "alpha 1"]
    # an item's score is its best record's plus a share of the next ones': two good records beat one
    two = [(0.80, _row(30, "x", item_id=4, path="d.md")), (0.80, _row(31, "y", item_id=4, path="d.md"))]
    one = [(0.81, _row(40, "z", item_id=5, path="e.md"))]
    assert [r.item_id for _, r in item_order(sorted(one + two, key=rank_key))][:2] == [4, 5]
    # the order depends on the scores and contents only, not on the input order of ties
    tied = [(0.5, _row(50 + i, f"t{i}", item_id=6 + i, path=f"t{i}.md")) for i in range(6)]
    expected = [r.text for _, r in item_order(sorted(tied, key=rank_key))]
    for seed in range(3):
        shuffled = tied[:]
        random.Random(seed).shuffle(shuffled)
        assert [r.text for _, r in item_order(sorted(shuffled, key=rank_key))] == expected


def test_route_says_which_records_served_the_pack(tmp_path: Path) -> None:
    window = _row(0, "raw lines of the file", kind="window")
    section = _row(1, "an enriched section", item_id=2, path="b.md")
    assert pack(TOKENIZER, "q", 500, [(1.0, window)], _items(1, 2)).route == "raw"
    assert pack(TOKENIZER, "q", 500, [(1.0, section)], _items(1, 2)).route == "memory"
    assert pack(TOKENIZER, "q", 500, [(1.0, window), (0.9, section)], _items(1, 2)).route == "mixed"
    empty = pack(TOKENIZER, "q", 500, [], _items(1))
    assert empty.route is None and empty.as_dict()["route"] is None
    # a stale item's record is served from its current raw lines: raw too
    (tmp_path / "b.md").write_text("line one\nline two\n")
    items = _items(1, 2)
    items[2].observed_hash = "new"
    assert pack(TOKENIZER, "q", 500, [(1.0, section)], items, {"docs": tmp_path}).route == "raw"
    assert set(ROUTES) == {"memory", "raw", "mixed"}


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.tuples(_TEXT, st.sampled_from(["a.md", "b/c.py"]), st.integers(0, 50)), max_size=25),
       budget=st.integers(defaults.MIN_BUDGET, 3000))
def test_tokens_used_is_the_exact_count_of_the_context_and_within_budget(
        texts: list[tuple[str, str, int]], budget: int) -> None:
    """Whatever the texts (newlines at the joins, multi-byte characters cut by a token boundary)."""
    rows = [_row(i, text, path=path, line=line) for i, (text, path, line) in enumerate(texts)]
    result = pack(TOKENIZER, "q", budget, [(1.0 - i / 1000, r) for i, r in enumerate(rows)], _items(1))
    assert result.tokens_used == TOKENIZER.count(result.context)
    assert result.tokens_used <= budget


# -- the real engine -----------------------------------------------------------------------------

TOPICS = ["payment terms", "termination notice", "governing law", "liability cap", "confidential information",
          "audit rights", "insurance", "warranty period", "exclusivity", "assignment"]


#: one record among the 300 notes names a made-up code, in passing
ZORBLAX = "The garden hose leaked by the roses again; Maria patched it with tape (part zorblax-417) before the rain."


@pytest.fixture(scope="module")
def small_records(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Service]:
    """300 short records (about 20 tokens each) published through the ledger as a worker does."""
    home = tmp_path_factory.mktemp("small")
    svc = Service.open(load_settings({"SLEEPD_HOME": str(home)}))
    svc._embedder = embedder
    for i in range(300):
        key = f"note{i:03d}.md"
        svc.ledger.observe("notes", key, f"h{i}", 10, 1)
        item_id = svc.ledger.known_items("notes")[key].id
        assert item_id is not None
        text = f"Note {i}: the {TOPICS[i % len(TOPICS)]} of account {i * 7 % 97} were reviewed on day {i}."
        draft = Draft(RecordKind.SECTION, text, (Evidence(key, 1, 1),), title=f"note {i}")
        svc.ledger.publish_version(item_id, f"h{i}", "p1", [draft], embedder.encode([text]), ["*"],
                                   svc.ledger.last_change_id(item_id))
    svc.ledger.observe("notes", "incident.md", "hz", 10, 1)
    item_id = svc.ledger.known_items("notes")["incident.md"].id
    assert item_id is not None
    draft = Draft(RecordKind.SECTION, ZORBLAX, (Evidence("incident.md", 1, 1),), title="incident")
    svc.ledger.publish_version(item_id, "hz", "p1", [draft], embedder.encode([ZORBLAX]), ["*"],
                               svc.ledger.last_change_id(item_id))
    svc.indexer.sync()
    yield svc
    svc.close()
    svc.ledger.close()


def test_the_best_record_comes_first(small_records: Service) -> None:
    result = small_records.query("the governing law of account 8", 256, ADMIN)
    assert "governing law" in result.records[0].text


def test_a_made_up_word_is_found_by_the_sparse_side(small_records: Service, embedder: Embedder) -> None:
    """Issue 12: a made-up code named in one record among hundreds is not among the dense
    candidates (failed before the sparse vectors: the record was not in the pack); the question's
    words find it, and it comes first or second (the dense best has a far higher cosine)."""
    question = "what is zorblax-417?"
    dense = small_records.index.search(embedder.encode_one(question).tolist(), candidate_pool(256))
    rows, _ = small_records.ledger.current_records([h.id for h in dense])
    assert len(rows) == candidate_pool(256) and all("zorblax" not in r.text for r in rows)
    texts = [r.text for r in small_records.query(question, 256, ADMIN).records]
    assert ZORBLAX in texts[:2]


_FIRST = ["Ava", "Noah", "Liam", "Emma", "Omar", "Sofia", "Ethan", "Yara", "Raj", "Lei", "Ivan", "Chen"]
_LAST = ["Santos", "Moore", "Lopez", "Nguyen", "Garcia", "Patel", "Kim", "Li", "Brown", "Ito", "Wilson", "Ahmed"]
_GOODS = ["water bottle", "desk lamp", "mechanical keyboard", "smart thermostat", "t-shirt", "headphones"]
#: the account a customer's message names by name, zip code and order id, among others that
#: each carry the message's own words about the goods
_ACCOUNT = ('users:mei_kovacs_8020 {"name": "Mei Kovacs", "zip": "28236"} orders: #W6390527 delivered, '
            "#W7800651 processed")


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Service]:
    """150 accounts whose orders exchange the goods a message asks about, and one that is named by
    the message's rare words but whose text says little of the goods."""
    svc = Service.open(load_settings({"SLEEPD_HOME": str(tmp_path_factory.mktemp("accounts"))}))
    svc._embedder = embedder
    texts = [f'users:{_FIRST[i % 12].lower()}_{_LAST[i * 5 % 12].lower()}_{1000 + i} {{"name": "{_FIRST[i % 12]} '
             f'{_LAST[i * 5 % 12]}", "zip": "{10000 + i * 37}"}} orders: #W{5100000 + i} pending: {_GOODS[i % 6]}, '
             f"{_GOODS[(i + 1) % 6]}" for i in range(150)] + [_ACCOUNT]
    for i, text in enumerate(texts):
        key = f"account{i:03d}"
        svc.ledger.observe("accounts", key, f"h{i}", 10, 1)
        item_id = svc.ledger.known_items("accounts")[key].id
        assert item_id is not None
        draft = Draft(RecordKind.CHUNK, text, (Evidence(key, 1, 1),), title=key)
        svc.ledger.publish_version(item_id, f"h{i}", "p1", [draft], embedder.encode([text]), ["*"],
                                   svc.ledger.last_change_id(item_id))
    svc.indexer.sync()
    yield svc
    svc.close()
    svc.ledger.close()


def test_an_account_the_keywords_find_first_is_packed(accounts: Service, embedder: Embedder) -> None:
    """Issue 12: sleepd's ranker over tau2's account chunks recalled .06 where BM25 over the same
    chunks recalled .85. The sparse search found the customer's account first (by name, zip code
    and order id), but the final rank added each record's cosine and only a tenth of a reciprocal
    rank (1 for the first sparse hit, 0.5 for the 60th): the account, far from a long message
    about goods in embedding, ranked below dozens of accounts that repeat the message's words.
    Now the sparse score relative to the best one counts beside the cosine."""
    question = ("You want to exchange the water bottle and the desk lamp. You want the water bottle to be a "
                "bigger one and the desk lamp a less bright one (prefer battery over USB over AC). If the agent "
                "asks for confirmation, only exchange the desk lamp. You are Mei Kovacs in zip code 28236.")
    dense = accounts.index.search(embedder.encode_one(question).tolist(), 20)
    rows, _ = accounts.ledger.current_records([h.id for h in dense])
    assert all("Kovacs" not in r.text for r in rows)  # the embedding places the account far
    texts = [r.text for r in accounts.query(question, 256, ADMIN).records]
    assert _ACCOUNT in texts[:2]


def test_fusion_ranks_by_rounded_scores_whatever_the_order_of_ties() -> None:
    """Reciprocal rank fusion is the same in every home: equal scores (to SCORE_DIGITS) share the
    better rank, so neither the order the engine returned ties in nor the last bits of a score
    change a fused value."""
    dense = [Hit("a", 0.9), Hit("b", 0.8), Hit("c", 0.8 + 1e-9), Hit("d", 0.7)]
    sparse = [Hit("d", 5.0), Hit("e", 2.0)]
    fused = fuse([dense, sparse], [1.0, 1.0], k=60)
    assert fused["a"] == 1.0 and fused["b"] == fused["c"] == 61 / 62 and fused["e"] == 61 / 62
    assert fused["d"] == 61 / 64 + 1.0
    swapped = fuse([[dense[0], dense[2], dense[1], dense[3]], sparse], [1.0, 1.0], k=60)
    assert swapped == fused
    assert fuse([dense, sparse], [1.0, 0.0], k=60)["e"] == 0.0


def test_real_engine_counts_exactly_what_it_returns(small_records: Service) -> None:
    for budget in (16, 100, 512, 1000, 2048):
        result = small_records.query("termination notice reviewed", budget, ADMIN)
        assert result.tokens_used == TOKENIZER.count(result.context) <= budget


def test_a_larger_budget_fills_from_a_larger_pool(small_records: Service) -> None:
    """Every query ranked 64 candidates: an 8,192-token budget over 20-token records returned
    64 records and ~1,900 tokens while 300 were there. The pool grows with the budget."""
    assert candidate_pool(1024) == defaults.CANDIDATES and candidate_pool(8192) > defaults.CANDIDATES
    assert candidate_pool(defaults.MAX_BUDGET) == defaults.MAX_CANDIDATES
    small = small_records.query("payment terms", 1024, ADMIN)
    large = small_records.query("payment terms", 8192, ADMIN)
    assert len(large.records) > defaults.CANDIDATES
    assert large.tokens_used >= small.tokens_used
    # 300 notes of ~30 tokens hold more than the budget: the pack fills it
    assert 8192 - MIN_PARTIAL <= large.tokens_used == TOKENIZER.count(large.context) <= 8192


# -- determinism across homes --------------------------------------------------------------------

#: builds a home from a folder in a fresh process and prints the packs of the questions: items are
#: first seen in the given order (as watchdog events may arrive) and enriched in batches of the
#: given size (as the scheduler's timing makes them), through the worker's own functions
_BUILD = """
import json, os, sys
from dataclasses import replace
from pathlib import Path
from sleepd.auth import Principal
from sleepd.service import Service
from sleepd.settings import FileSource, load_settings
from sleepd.watchers import Watchers
from sleepd.watchers.folder import content_hash
from sleepd.bench.drain import enrich_pending
from workers.tasks import run_batch, then_aggregates

folder, home, order, size = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
questions = json.loads(sys.argv[5])
settings = replace(load_settings({"SLEEPD_HOME": home}), idle_seconds=0.0)
svc = Service.open(settings)
source = FileSource(name="contracts", path=folder, profile="contracts")
svc.ledger.save_source(source)
keys = sorted(p.name for p in folder.iterdir())
for key in (keys[::-1] if order == "reverse" else keys):
    st = (folder / key).stat()
    svc.ledger.observe("contracts", key, content_hash(folder / key, st.st_size, settings.max_file_bytes,
                       st.st_mtime_ns), st.st_size, st.st_mtime_ns)
Watchers([source], svc.ledger, settings).scan_all()
due = svc.ledger.due_changes(1000, lease_seconds=3600)
svc.ledger.mark_enqueued([c.id for c in due])
if order == "reverse":
    due = due[::-1]
for start in range(0, len(due), size):
    batch = due[start:start + size]
    run_batch(svc.ledger, svc.embedder(), settings, [(c.item_id, c.force) for c in batch])
    for c in batch:
        then_aggregates(svc.ledger, c.item_id)
enrich_pending(svc, svc.embedder())
admin = Principal("t", admin=True)
print(json.dumps([svc.query(q, b, admin).context for q in questions for b in (256, 1024, 4096)]))
svc.close()
"""

_CLAUSES = [
    ("PAYMENT", "Buyer shall pay each invoice within {n} days of receipt by wire transfer."),
    ("TERM", "This Agreement begins on the Effective Date and continues for {n} months."),
    ("TERMINATION", "Either party may terminate this Agreement on {n} days written notice."),
    ("GOVERNING LAW", "This Agreement is governed by the laws of the State of New York."),
    ("CONFIDENTIALITY", "Each party shall keep the other party's Confidential Information secret."),
    ("LIMITATION OF LIABILITY", "Neither party's liability shall exceed {n} thousand dollars."),
    ("ASSIGNMENT", "Neither party may assign this Agreement without the other's consent."),
]
#: pasted three times into each contract (as filings do with exhibits): three records with one text
_EXHIBIT = ["EXHIBIT", "", "1. NOTICES. All notices shall be in writing and delivered to the addresses above.", "",
            "2. PAYMENT. Buyer shall pay each invoice within 30 days of receipt by wire transfer.", ""]
_PARTIES = ["Acme Corp and Globex Inc", "Initech LLC and Umbrella Ltd", "Stark Industries and Wayne Enterprises",
            "Hooli Inc and Pied Piper LLC", "Vandelay Industries and Kramerica Inc", "Soylent Corp and Tyrell Co"]


def _contracts(folder: Path) -> None:
    """Small contracts, each with the same exhibit three times: records that tie."""
    folder.mkdir()
    for k, parties in enumerate(_PARTIES):
        lines = [f"SUPPLY AGREEMENT between {parties}", ""]
        for number, (heading, text) in enumerate(_CLAUSES, 1):
            lines += [f"{number}. {heading}. {text.format(n=10 * (k + number))}", ""]
        (folder / f"contract_{k}.txt").write_text("\n".join(lines + _EXHIBIT * 3))


def test_two_homes_from_the_same_folder_give_byte_identical_packs(tmp_path: Path) -> None:
    """Issue 12, pinned: two homes built from the same folder in separate processes (one under CPU
    load, items seen and enriched in another order and other batches) answer the same questions
    with byte-identical contexts."""
    folder = tmp_path / "contracts"
    _contracts(folder)
    questions = ["What is the notices clause of the supply agreement between Acme Corp and Globex Inc?",
                 "Which contracts have a governing law clause?", "payment within 30 days by wire transfer",
                 "notices in writing", "limitation of liability of Hooli Inc and Pied Piper LLC"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # load on the machine
    try:
        builds = [subprocess.Popen([sys.executable, "-c", _BUILD, str(folder), str(tmp_path / name), order, size,
                                    json.dumps(questions)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
                  for name, order, size in (("home-a", "forward", "8"), ("home-b", "reverse", "3"))]
        outs = [b.communicate(timeout=300) for b in builds]
    finally:
        burn.kill()
        burn.wait()
    assert [b.returncode for b in builds] == [0, 0], [err[-2000:] for _, err in outs]
    packs_a, packs_b = (json.loads(out) for out, _ in outs)
    assert all(packs_a) and len(packs_a) == 3 * len(questions)
    assert sum("All notices shall be in writing" in p for p in packs_a) >= 3  # the tied records are asked for
    assert packs_a == packs_b
