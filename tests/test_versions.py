"""Versions' records over ledgers and settings: a ledger written before the archive gains it when
opened (SQLite and PostgreSQL), and the keep_versions setting with its per-source override.
History, show, diff, retention and purge over the real pipeline are in test_history.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, text
from sqlmodel import select

from sleepd.auth import Principal
from sleepd.errors import ConfigError
from sleepd.history import item_version
from sleepd.ledger import Ledger
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.schema import ItemRow, VersionRow
from sleepd.settings import Settings, load_settings

ADMIN = Principal("root", admin=True)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_older_ledger_gains_the_archive(database: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    """A ledger written before the archive (no record_archive table) gains it when opened; the
    versions it replaced before are said not kept, the next publish archives."""
    url = request.getfixturevalue("pg_url") if database == "postgresql" else settings.database_url
    led = Ledger(url)
    with led.write() as s:
        s.add(ItemRow(source="docs", key="a.md", version=1, state="enriched"))
    with led.write() as s:
        item = s.exec(select(ItemRow)).one()
        s.add(VersionRow(item_id=item.id, version=1, content_hash="h1", pipeline_version="p", status="published",
                         n_records=1, created_at=1.0))
    led.engine.dispose()
    with led.engine.begin() as conn:
        conn.execute(text("DROP TABLE record_archive"))
    assert not inspect(led.engine).has_table("record_archive")
    led.close()
    led = Ledger(url)
    try:
        assert inspect(led.engine).has_table("record_archive")
        indexes = {i["name"] for i in inspect(led.engine).get_indexes("record_archive")}
        assert "ix_record_archive_item_version" in indexes
        assert item.id is not None
        draft = Draft(kind=RecordKind.SECTION, title="A", text="alpha", evidence=(Evidence("a.md", 1, 1),))
        vectors = np.zeros((1, 384), dtype=np.float32)
        assert led.publish_version(item.id, "h2", "p", [draft], vectors, ["*"], 0) == 2
        shown = item_version(led, ADMIN, "docs:a.md", version=1)
        assert not shown["records_kept"] and "no longer kept" in shown["note"]
        assert led.archived_count() == 0
        assert led.publish_version(item.id, "h3", "p", [draft], vectors, ["*"], 0) == 3
        assert led.archived_count() == 1 and item_version(led, ADMIN, "docs:a.md", version=2)["records_kept"]
    finally:
        led.close()


def test_keep_versions_setting(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert load_settings({"SLEEPD_HOME": home}).keep_versions == 5
    assert load_settings({"SLEEPD_HOME": home, "SLEEPD_KEEP_VERSIONS": "2"}).keep_versions == 2
    (tmp_path / "docs").mkdir()
    config = tmp_path / "sleepd.toml"
    config.write_text('[sleepd]\nkeep_versions = 3\n\n[[sources]]\nname = "docs"\npath = "docs"\nkeep_versions = 0\n'
                      'max_staleness_seconds = 60\n')
    loaded = load_settings({"SLEEPD_HOME": home, "SLEEPD_CONFIG": str(config)})
    assert (loaded.keep_versions_for("docs"), loaded.keep_versions_for("other")) == (0, 3)
    assert loaded.max_staleness("docs") == 60
    assert loaded.sources[0].as_dict()["name"] == "docs"  # the override is not part of the source
    for bad, key in (("[sleepd]\nkeep_versions = -1\n", "'keep_versions'"),
                     ('[[sources]]\npath = "docs"\nkeep_versions = -2\n', "'sources[0].keep_versions'"),
                     ('[[sources]]\npath = "docs"\nkeep_versions = "many"\n', "sources[0].keep_versions")):
        config.write_text(bad)
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_settings({"SLEEPD_HOME": home, "SLEEPD_CONFIG": str(config)})


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_older_ledger_gains_the_card_index(database: str, settings: Settings,
                                              request: pytest.FixtureRequest) -> None:
    """A ledger whose records table predates the (item, kind) index gains it when opened, and the
    cards are read through it."""
    url = request.getfixturevalue("pg_url") if database == "postgresql" else settings.database_url
    led = Ledger(url)
    led.engine.dispose()
    with led.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_records_item_kind"))
    assert "ix_records_item_kind" not in {i["name"] for i in inspect(led.engine).get_indexes("records")}
    led.close()
    led = Ledger(url)
    try:
        assert "ix_records_item_kind" in {i["name"] for i in inspect(led.engine).get_indexes("records")}
        with led.write() as s:
            s.add(ItemRow(source="docs", key="a.md", version=0, state="pending"))
        with led.read() as s:
            item = s.exec(select(ItemRow)).one()
        assert item.id is not None
        drafts = [Draft(kind=kind, title="A", text=text_, evidence=(Evidence("a.md", 1, 1),))
                  for kind, text_ in ((RecordKind.SECTION, "alpha"), (RecordKind.CARD, "a.md: the card"))]
        led.publish_version(item.id, "h1", "p", drafts, np.zeros((2, 384), dtype=np.float32), ["*"], 0)
        cards = led.item_cards([item.id], RecordKind.CARD.value)
        assert [c.text for c in cards.values()] == ["a.md: the card"]
    finally:
        led.close()
