"""Item cards (issue 12, item 3): one compact card per item written at sleep time, for every kind
of item, and the small-budget pack that cards many likely items before the detail of the top ones:
within budget, deterministic, and never an item's card beside its own detail."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

import click.core

from sleepd import defaults
from sleepd.aggregates import AGGREGATE_PREFIX
from sleepd.auth import Principal
from sleepd.cards import CARD_BUDGET, CARD_KIND, CARD_SHARE, card_plan, why
from sleepd.embed import Embedder
from sleepd.pack import pack
from sleepd.ranking import rank_key
from sleepd.records import RecordKind
from sleepd.schema import ItemRow, RecordRow
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.sparse import terms
from sleepd.tokens import get_tokenizer
from tests.helpers import enrich, retail_account
from workers.enrich import enrich_text
from workers.enrich.cards import CARD_CHARS, item_card

TOKENIZER = get_tokenizer(defaults.TOKENIZER)
ADMIN = Principal("test", admin=True)

CONTRACT = textwrap.dedent("""\
    SUPPLY AGREEMENT

    This Supply Agreement (the "Agreement") is entered into as of January 5, 2020 (the "Effective
    Date") by and between Acme Widgets, Inc. ("Supplier") and Globex Corporation ("Buyer").

    1. Term. This Agreement shall commence on the Effective Date and continue for a period of two (2)
    years, and shall automatically renew for successive one (1) year periods unless either party gives
    notice of non-renewal at least sixty (60) days before the end of the then-current term.

    2. Governing Law. This Agreement shall be governed by the laws of the State of Delaware.

    3. Limitation of Liability. In no event shall either party be liable for indirect or consequential
    damages arising out of this Agreement.
    """)

GUIDE = textwrap.dedent("""\
    # Ferry

    Ferry copies files between object stores and keeps a manifest of what it moved. It is built for
    nightly backups of build artefacts, where most files do not change between runs.

    ## Installing

    Ferry needs Python 3.11 or later. Clone the repository and run `pip install .` in it; the
    `ferry` command is then on your PATH. A virtual environment keeps its dependencies apart.

    ## Copying

    Run `ferry copy SOURCE TARGET`. Ferry lists both stores, compares checksums, and copies only what
    changed. The manifest is written to the target as `ferry.json` after every run, so a run that
    stops half way resumes where it stopped. Large files are split into parts of 64 MiB.

    ## Troubleshooting

    When a copy fails, Ferry retries three times with a growing pause. An expired credential is
    reported once and stops the run; renew it and run again. Every error is logged with the path.
    """)


def _card(path: str, text: str, profile: str = "auto") -> str:
    drafts = enrich_text(path, text, profile)
    [card] = item_card(path, drafts)
    assert card.kind is RecordKind.CARD
    assert 0 < len(card.text) <= CARD_CHARS + 2 and "\n" not in card.text
    assert profile == "accounts" or path not in card.text  # the card's header cites the path
    assert card.evidence
    return card.text


def test_every_kind_of_item_gets_one_compact_card(tmp_path: Path) -> None:
    code = _card("click/core.py", inspect.getsource(click.core))
    assert code.startswith("python module click.core (")
    guide = _card("docs/ferry.md", GUIDE)
    assert guide.startswith("Ferry; Ferry copies files between object stores")
    # an article too short for a summary is carded from its first section, under its title
    assert _card("note.md", "# Release\n\nCall Ana before the release. The build is green.\n") == (
        "Release; # Release; Call Ana before the release. The build is green.")
    contract = _card("supply.txt", CONTRACT, "contracts")
    assert "Parties: Acme Widgets" in contract and "Governing law: Delaware" in contract
    document = retail_account(tmp_path, "yusuf_rossi_9620")
    account = _card("yusuf_rossi_9620", document, "accounts")
    assert account.startswith("Account yusuf_rossi_9620: Yusuf Rossi")
    orders = json.loads(document)["rows"]["orders"]
    assert all(o["order_id"] in account for o in orders)  # an order is asked about by its id
    assert item_card("empty.md", []) == []


def _row(i: int, text: str, item_id: int, kind: str = "section", lines: tuple[int, int] = (1, 9)) -> RecordRow:
    path = f"kb-{item_id:03d}.md"
    return RecordRow(id=f"r{i:05d}", item_id=item_id, version=1, source="kb", path=path, kind=kind, title=path,
                     text=text, evidence=json.dumps([{"path": path, "start_line": lines[0], "end_line": lines[1]}]),
                     access='["*"]', embedding=b"", content_hash="h", pipeline_version="p", created_at=0.0)


def _items(n: int) -> dict[int, ItemRow]:
    return {i: ItemRow(id=i, source="kb", key=f"kb-{i:03d}.md", observed_hash="h", enriched_hash="h", version=1)
            for i in range(n)}


def _memory(n: int = 10) -> tuple[list[tuple[float, RecordRow]], dict[int, RecordRow]]:
    """``n`` articles about refunds, each a long section (about 300 tokens) and a card, scored close."""
    scored = [(0.8 - i / 1000, _row(i, f"Refunds of kind {i}.\n" + f"Article {i} on refunds says more. " * 40, i))
              for i in range(n)]
    cards = {i: _row(100 + i, f"Refund policy {i}; what refunds of kind {i} cover", i, CARD_KIND, (1, 40))
             for i in range(n)}
    return scored, cards


def test_a_small_budget_packs_cards_of_many_likely_items_within_budget_and_deterministic() -> None:
    scored, cards = _memory()
    for budget, least in ((256, 1), (512, 3), (1024, 6)):
        result = pack(TOKENIZER, "how are refunds of kind 3 made?", budget, scored, _items(10), cards=cards)
        assert result.tokens_used == TOKENIZER.count(result.context) <= budget
        packed = [r.item for r in result.records]
        # an item's card says why it matches only when the item has no detail: its detail says so
        detailed = {r.item for r in result.records if r.kind != CARD_KIND}
        assert all(("matches:" in r.text) != (r.item in detailed) for r in result.records if r.kind == CARD_KIND)
        carded = [r for r in result.records if r.kind == CARD_KIND]
        assert len(packed) == len(set(packed)) + len(detailed & {r.item for r in carded})  # one card an item
        assert len(carded) >= least, (budget, [r.kind for r in result.records])
        assert sum(TOKENIZER.count(r.header + r.text) for r in carded) <= budget * CARD_SHARE + len(carded)
        # the detail of the top item first, then cards of the next likely items
        assert (result.records[0].kind, result.records[0].item) == ("section", "kb-000.md")
        assert [r.item for r in carded] == sorted(r.item for r in carded)  # likely items best first
        assert carded[0].item == "kb-000.md" and carded[0].text == "Refund policy 0; what refunds of kind 0 cover"
        # why it matches: the best line of the item's best record, cited with its lines
        first = next(r for r in carded if r.item not in detailed)
        assert f"matches: Refunds of kind {int(first.item[3:6])}." in first.text and "(lines 1-9)" in first.text
        again = pack(TOKENIZER, "how are refunds of kind 3 made?", budget, list(scored), _items(10),
                     cards=dict(reversed(cards.items())))
        assert again.context == result.context
        # the same budget without cards reaches fewer items (main's packing before issue 12, item 3)
        plain = pack(TOKENIZER, "how are refunds of kind 3 made?", budget, scored, _items(10))
        assert len({r.item for r in plain.records}) < len(set(packed))
    # a summary says all its card says: never packed beside it (it takes the card's place)
    summary = (0.81, _row(50, "Refund policy 0, in full: refunds of kind 0 cover all of it.", 0, "file_summary",
                              (1, 40)))
    ranked = sorted([summary, *scored], key=rank_key)
    result = pack(TOKENIZER, "refunds of kind 0", 512, ranked, _items(10), cards=cards)
    assert next(r.kind for r in result.records if r.item == "kb-000.md") == "file_summary"
    assert CARD_KIND not in [r.kind for r in result.records if r.item == "kb-000.md"]
    assert sum(r.kind == CARD_KIND for r in result.records) >= 3
    # above the card budget, or with one likely item, the pack is detail only
    assert not card_plan("refunds", CARD_BUDGET + 1, scored, cards, _items(10))
    assert not card_plan("refunds", 512, scored[:1], cards, _items(10))
    # nor when an aggregate leads (a portfolio's lines name the items a line each: the cards of
    # the question's items)
    led = _items(10)
    led[0].key = f"{AGGREGATE_PREFIX}portfolio"
    assert card_plan("refunds", 512, scored, cards, _items(10)) and not card_plan("refunds", 512, scored, cards, led)
    assert why(terms("kind 3 refunds"), scored[3][1]) == "Refunds of kind 3."


def test_a_query_at_a_small_budget_reaches_more_articles_through_their_cards(
        tmp_path: Path, settings: Settings, embedder: Embedder) -> None:
    """Through the real worker, ledger, index and query: every item gets its card at sleep time,
    and a 512-token pack for a question many articles answer cites more of them than the detail
    of two articles does (main's packing cited 2 of the 8)."""
    folder = tmp_path / "kb"
    folder.mkdir()
    for topic in ("cards", "loans", "savings", "mortgages", "travel", "pensions", "shares", "fx"):
        body = "\n".join(f"Fees for {topic} product {j} are listed in the {topic} tariff, page {j}." for j in range(25))
        (folder / f"{topic}.md").write_text(f"# Fees for {topic}\n\nEvery {topic} fee is charged monthly. {body}\n")
    source = FileSource(name="kb", path=folder)
    svc = Service.open(settings)
    try:
        enrich(svc, [source], embedder)
        kinds = [(row.path, row.kind) for rows in svc.ledger.iter_records() for row in rows]
        assert sorted(p for p, k in kinds if k == CARD_KIND) == sorted(f.name for f in folder.iterdir())
        question = "Which fees are charged monthly, and where are they listed?"
        result = svc.query(question, 512, ADMIN)
        assert result.tokens_used == TOKENIZER.count(result.context) <= 512
        assert len({r.item for r in result.records}) >= 3, [(r.kind, r.item) for r in result.records]
        assert any(r.kind == CARD_KIND for r in result.records)
        assert svc.query(question, 512, ADMIN).context == result.context
    finally:
        svc.close()
        svc.ledger.close()


def test_a_leader_by_a_quoted_name_still_leaves_cards_for_the_next_items() -> None:
    """Issue 12: a bug report's first file often leads by a name the report quotes (NAMED_WEIGHT,
    +0.5), and the file at fault ranks 2nd-6th, 0.3-0.6 below it; with cards only within 0.15 of
    the leader, a pack of 1,024 tokens held the leader's records alone (code tune half, file level
    .545 at 1,024; .636 with the wider spread). A leader far above everything (a named contract) is
    still carded alone: nothing else is likely."""
    scored, cards = _memory()
    led = [(score - (0.4 if i else 0.0), row) for i, (score, row) in enumerate(scored)]
    plan = card_plan("how are refunds of kind 3 made?", 1024, led, cards, _items(10))
    assert [c.row.item_id for c in plan][:3] == [0, 1, 2]
    alone = [(score - (1.0 if i else 0.0), row) for i, (score, row) in enumerate(scored)]
    assert not card_plan("how are refunds of kind 3 made?", 1024, alone, cards, _items(10))
