"""Reading an item as S(c) sees it: a file's text (or a PDF's or Word document's text layer) or an
sql item's rows as one document, with its content hash and access list.

Shared by the task (``workers.tasks``) and the LLM layer's cost estimate (``workers.llm``), so both
see the same text; imports no other worker module but the extractor.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sleepd.access import access_for
from sleepd.errors import ItemError
from sleepd.settings import Settings, Source, SqlSource
from sleepd.sql.rows import account_document, item_access
from sleepd.sql.rows import read_item as read_sql_item
from workers.extract import document_text

__all__ = ["BINARY_SNIFF", "load_item", "read_item"]

#: bytes looked at for NUL to call a file binary (what git and grep do)
BINARY_SNIFF = 8192


def read_item(path: Path, max_bytes: int) -> tuple[str, str] | None:
    """The text and content hash of a file (PDF and DOCX: their text), None if it is gone or
    binary (NUL bytes), or ItemError saying why not (too large, invalid UTF-8, unreadable)."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ItemError("not a regular file")
        if size > max_bytes:
            raise ItemError(f"file too large: {size} bytes, the limit (max_file_bytes) is {max_bytes}")
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ItemError(f"unreadable: {exc.strerror or exc}") from None
    extracted = document_text(path.suffix, data)
    if extracted is not None:
        return extracted, hashlib.sha256(data).hexdigest()
    if b"\0" in data[:BINARY_SNIFF]:
        # not memory, as if gone: the watcher lists it as skipped (not failed), and a file that
        # turned binary after a change was observed has its old records retracted
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ItemError(f"invalid UTF-8 at byte {exc.start}: not enriched") from None
    return text, hashlib.sha256(data).hexdigest()


def load_item(source: Source, key: str, settings: Settings) -> tuple[str, str, tuple[str, ...]] | None:
    """An item's current text, content hash and access list; None if it is gone. An sql item is
    read from its database now (rows hashed exactly as the watcher hashes them, so a task for
    stale content publishes the current content); an unreachable database raises Unavailable,
    which the task retries with backoff."""
    if isinstance(source, SqlSource):
        found = read_sql_item(source, key)
        if found is None:
            return None
        rows, digest = found
        return account_document(source, key, rows), digest, item_access(source, rows)
    loaded = read_item(source.path / key, settings.max_file_bytes)
    return None if loaded is None else (*loaded, access_for(source, key) or source.access)
