"""Text out of document formats, so a folder of PDF or Word contracts is read like one of text files.

Only the text layer is read: a scanned PDF with no text is a clear :class:`ItemError`, not an empty
memory. Line numbers in evidence count lines of the extracted text (pages and paragraphs in order).
"""

from __future__ import annotations

import io
import logging

from sleepd.errors import ItemError

__all__ = ["DOCUMENT_SUFFIXES", "document_text"]

DOCUMENT_SUFFIXES = (".pdf", ".docx")
#: fewer extracted characters per page than this and a PDF counts as scanned (no text layer)
MIN_CHARS_PER_PAGE = 20

logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns per malformed object; the item error says enough


def document_text(suffix: str, data: bytes) -> str | None:
    """The text of a PDF or DOCX file's bytes; None for any other suffix; ItemError if unreadable."""
    suffix = suffix.lower()
    if suffix == ".pdf":
        return _pdf(data)
    if suffix == ".docx":
        return _docx(data)
    return None


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ItemError("encrypted PDF: not enriched")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ItemError:
        raise
    except Exception as exc:  # a malformed PDF can fail anywhere inside pypdf
        raise ItemError(f"unreadable PDF: {type(exc).__name__}: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if len(text) < MIN_CHARS_PER_PAGE * max(1, len(pages)):
        raise ItemError(f"PDF has no text layer ({len(pages)} pages, scanned?): not enriched")
    return text + "\n"


def _docx(data: bytes) -> str:
    from docx import Document

    try:
        document = Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zipfile, lxml and its own errors alike
        raise ItemError(f"unreadable DOCX: {exc}") from None
    paragraphs = [p.text for p in document.paragraphs]
    for table in document.tables:
        paragraphs.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows)
    text = "\n".join(paragraphs).strip()
    if not text:
        raise ItemError("DOCX has no text: not enriched")
    return text + "\n"
