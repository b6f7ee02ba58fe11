"""PDF and Word contracts are read through their text layer; a scan without one is a clear error."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
from docx import Document
from matplotlib import pyplot as plt

from sleepd.errors import ItemError
from sleepd.records import RecordKind
from workers.enrich import enrich_text
from workers.tasks import read_item

CLAUSES = [
    "MASTER SERVICES AGREEMENT between Acme Corp. and Widget Ltd.",
    "1. Term. This Agreement renews automatically for successive one (1) year terms.",
    "2. Governing Law. This Agreement is governed by the laws of the State of Delaware.",
]


def _pdf(path: Path, lines: list[str] | None) -> Path:
    with matplotlib.rc_context({"pdf.fonttype": 42}):  # TrueType text, as a word processor writes
        fig = plt.figure(figsize=(8.5, 11))
        if lines is None:  # a "scan": only an image, no text layer
            fig.figimage(np.random.default_rng(0).random((200, 200)))
        for i, line in enumerate(lines or []):
            fig.text(0.05, 0.95 - i * 0.04, line, fontsize=9)
        fig.savefig(path)
        plt.close(fig)
    return path


def test_a_pdf_contract_is_read_and_enriched(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "msa.pdf", CLAUSES)
    loaded = read_item(path, 2_000_000)
    assert loaded is not None
    text, digest = loaded
    assert "governed by the laws of the State of Delaware" in text and len(digest) == 64
    drafts = enrich_text("msa.pdf", text, "contracts")
    law = [d for d in drafts if d.kind == RecordKind.CLAUSE and "Governing Law" in d.meta["categories"]]
    assert law and "Delaware" in law[0].text
    lines = text.splitlines()
    ev = law[0].evidence[0]
    assert "Delaware" in "\n".join(lines[ev.start_line - 1:ev.end_line])


def test_a_word_contract_is_read_with_its_tables(tmp_path: Path) -> None:
    document = Document()
    for line in CLAUSES:
        document.add_paragraph(line)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Fee", "USD 10,000 per month"
    path = tmp_path / "msa.docx"
    document.save(str(path))
    loaded = read_item(path, 2_000_000)
    assert loaded is not None
    assert "renews automatically" in loaded[0] and "Fee | USD 10,000 per month" in loaded[0]


def test_scanned_or_broken_documents_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match="no text layer"):
        read_item(_pdf(tmp_path / "scan.pdf", None), 2_000_000)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")
    with pytest.raises(ItemError, match="PDF"):
        read_item(tmp_path / "broken.pdf", 2_000_000)
    (tmp_path / "broken.docx").write_bytes(b"PK not a zip")
    with pytest.raises(ItemError, match="unreadable DOCX"):
        read_item(tmp_path / "broken.docx", 2_000_000)
