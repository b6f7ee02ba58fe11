"""The declared sources as the ledger keeps them: saved, listed, their scan time and error."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlmodel import select

from sleepd.ledger.engine import LedgerBase
from sleepd.schema import AuditRow, SourceRow
from sleepd.settings import FileSource, Source, SqlSource

__all__ = ["SourcesMixin", "source_from_row", "source_where"]


class SourcesMixin(LedgerBase):
    """The sources the ledger keeps, with their last scan and their error."""

    def save_source(self, source: Source, actor: str = "config") -> str | None:
        """Add the source, or store its new configuration; "added", "changed" or None (stored as
        it was). An addition or a change is audited (``source.add``, ``source.change``) as ``actor``'s."""
        config = json.dumps(source.as_dict())
        with self.write() as s:
            row = s.get(SourceRow, source.name)
            if row is None:
                s.add(SourceRow(name=source.name, kind=source.kind, config=config, created_at=time.time()))
                done = "added"
            elif row.config != config:
                row.config, done = config, "changed"
            else:
                return None
            where = str(source.path) if isinstance(source, FileSource) else source.where
            s.add(AuditRow(at=time.time(), actor=actor, action="source.add" if done == "added" else "source.change",
                           detail=json.dumps({"source": source.name, "kind": source.kind, "where": where,
                                              "profile": source.profile, "access": list(source.access)})))
        return done

    def sources(self) -> list[Source]:
        with self.read() as s:
            rows = s.exec(select(SourceRow).order_by(SourceRow.name)).all()
        return [source_from_row(r) for r in rows]

    def get_source(self, name: str) -> Source | None:
        with self.read() as s:
            row = s.get(SourceRow, name)
        return source_from_row(row) if row else None

    def set_source_error(self, name: str, error: str | None) -> None:
        with self.write() as s:
            row = s.get(SourceRow, name)
            if row is not None and row.error != error:
                row.error = error

    def mark_scanned(self, name: str) -> None:
        with self.write() as s:
            row = s.get(SourceRow, name)
            if row is not None:
                row.last_scan_at = time.time()
                row.error = None


def source_from_row(row: SourceRow) -> Source:
    cfg = json.loads(row.config)
    if row.kind == "sql":
        return SqlSource.from_dict(cfg)
    return FileSource(name=row.name, path=Path(cfg["path"]), include=tuple(cfg["include"]),
                      exclude=tuple(cfg["exclude"]), profile=cfg["profile"], access=tuple(cfg["access"]),
                      access_paths=tuple((g, tuple(a)) for g, a in cfg.get("access_paths", [])))


def source_where(row: SourceRow) -> str | None:
    """A files source's folder, or an sql source's URL without its password."""
    source = source_from_row(row)
    return str(source.path) if isinstance(source, FileSource) else source.where
