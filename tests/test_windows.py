"""Raw text windows (workers.enrich.windows): whole lines with exact evidence, on real files and
through the real worker, and the route they give a query, counted in the query log and status."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from sleepd import defaults
from sleepd.auth import Principal
from sleepd.embed import Embedder
from sleepd.records import RecordKind
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.status import status_report
from sleepd.tokens import get_tokenizer
from tests.helpers import enrich
from workers.enrich.windows import WINDOW_OVERLAP, WINDOW_TOKENS, item_windows, raw_windows

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = get_tokenizer(defaults.TOKENIZER)
ADMIN = Principal("test", admin=True)


def _check_windows(path: str, text: str, spans: list[tuple[int, int, str]]) -> None:
    """Each window is its lines word for word, tight, within size; together they hold every
    non-blank line, and each one after the first starts inside the one before or after blank lines."""
    lines = text.splitlines()
    held: set[int] = set()
    previous_end = 0
    for start, end, body in spans:
        assert body == "\n".join(lines[start - 1:end]), (path, start, end)
        assert lines[start - 1].strip() and lines[end - 1].strip(), (path, start, end)
        assert TOKENIZER.count(body) <= WINDOW_TOKENS
        if previous_end:  # the next window starts inside this one, or after blank lines only
            assert not any(line.strip() for line in lines[previous_end:start - 1]), (path, start, previous_end)
        held.update(range(start, end + 1))
        previous_end = end
    assert {i for i, line in enumerate(lines, 1) if line.strip()} <= held, path


def test_windows_of_real_files_are_whole_lines_with_exact_evidence() -> None:
    files = [*sorted(p for p in ROOT.glob("sleepd/*.py") if p.stat().st_size > 200)[:12], ROOT / "README.md",
             ROOT / "CHANGES.md"]
    overlapped = 0
    for file in files:
        path, text = str(file.relative_to(ROOT)), file.read_text(encoding="utf-8")
        drafts = raw_windows(path, text)
        assert drafts and all(d.kind is RecordKind.WINDOW and d.title == path for d in drafts)
        spans = [(d.evidence[0].start_line, d.evidence[0].end_line, d.text) for d in drafts]
        assert all(len(d.evidence) == 1 and d.evidence[0].path == path for d in drafts)
        _check_windows(path, text, spans)
        overlapped += sum(1 for (_, end, _), (start, _, _) in itertools.pairwise(spans) if start <= end)
    assert overlapped > 0  # consecutive windows repeat lines, up to WINDOW_OVERLAP tokens of them
    assert WINDOW_OVERLAP < WINDOW_TOKENS


def test_a_line_longer_than_a_window_is_one_window_cut_to_size() -> None:
    text = "short\n" + "word " * (3 * WINDOW_TOKENS) + "\n\n\nlast line\n"
    drafts = raw_windows("long.txt", text)
    spans = [(d.evidence[0].start_line, d.evidence[0].end_line) for d in drafts]
    assert spans == [(1, 1), (2, 2), (5, 5)]
    assert TOKENIZER.count(drafts[1].text) == WINDOW_TOKENS and drafts[1].text.startswith("word word")
    assert raw_windows("blank.txt", "\n\n  \n") == []
    # an sql item's text is one line of JSON; its raw rows are ROW records already
    assert item_windows("42", json.dumps({"rows": {"orders": [{"id": 1}]}}), "accounts") == []
    assert item_windows("a.md", "# A\n\nText.\n", "docs")[0].evidence[0].end_line == 3


def test_every_item_gets_windows_and_a_raw_question_is_served_and_counted(
        tmp_path: Path, settings: Settings, embedder: Embedder) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "refunds.md").write_text("# Refunds\n\nA refund takes five business days.\n\n"
                                       "## Exceptions\n\nGift cards are never refunded.\n")
    (folder / "cards.py").write_text("def block_card(card_id: str) -> None:\n"
                                     "    \"\"\"Block a lost card at once.\"\"\"\n    CARDS[card_id].blocked = True\n")
    (folder / "notes.txt").write_text("\n".join(f"Branch {i} opens at {8 + i % 3} and closes at 17."
                                                for i in range(300)))
    source = FileSource(name="kb", path=folder)
    svc = Service.open(settings)
    try:
        enrich(svc, [source], embedder)
        by_item: dict[str, list[tuple[int, int, str]]] = {}
        for rows in svc.ledger.iter_records():
            for row in rows:
                if row.kind == RecordKind.WINDOW.value:
                    span = json.loads(row.evidence)[0]
                    assert json.loads(row.access) == ["*"] and row.version >= 1  # like every record
                    by_item.setdefault(row.path, []).append((span["start_line"], span["end_line"], row.text))
        assert set(by_item) == {"refunds.md", "cards.py", "notes.txt"}
        for path, spans in by_item.items():
            _check_windows(path, (folder / path).read_text(), sorted(spans))
        assert len(by_item["notes.txt"]) > 1  # a long file has several windows
        # a question in the words of the raw text: windows serve it, and the answer says so (the
        # chunk of lines 101-124 and the window holding line 123 tie within 0.004 on cosine and
        # keywords; since issue 12's sparse score, BM25's length norm puts the shorter chunk first,
        # so the budget holds both)
        result = svc.query("Branch 123 opens at 8 and closes at 17.", 1024, ADMIN)
        assert result.route in ("raw", "mixed") and any(r.kind == "window" for r in result.records)
        memory = svc.query("How do I block a lost card?", 64, ADMIN)
        expected = {True: "raw", False: "memory"}
        kinds = {r.kind == "window" for r in memory.records}
        assert memory.route == (expected[kinds.pop()] if len(kinds) == 1 else "mixed")
        svc.engine.flush_log()
        queries = status_report(svc.ledger, svc.settings)["queries"]
        assert queries["logged"] == 2
        assert queries["routes"][result.route] >= 1 and queries["routes"][memory.route] >= 1
        assert sum(queries["routes"].values()) == 2 and abs(sum(queries["shares"].values()) - 1.0) < 1e-6
    finally:
        svc.close()
        svc.ledger.close()
