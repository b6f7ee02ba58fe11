"""Access changes in the ledger, on SQLite and PostgreSQL: one transaction gives the records of
each item whose list changed the new list and an ``item:<id>`` index event, leaves versions alone,
retracts the source's aggregates with a change to rebuild them; and a publish that raced it (the
worker read the old list) gets the list of the source as it is when it commits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import select

from sleepd.access import access_event
from sleepd.audit import audit_entries
from sleepd.ledger import Ledger
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.schema import AGGREGATE_PREFIX, ChangeRow, IndexEventRow, ItemState, RecordRow, VersionRow
from sleepd.service import declare_sources
from sleepd.settings import FileSource, load_settings

PV = "test-pipeline"
AGGREGATE = f"{AGGREGATE_PREFIX}source_overview"


@pytest.fixture(params=["sqlite", "postgresql"])
def led(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    url = f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    ledger = Ledger(url)
    request.addfinalizer(ledger.close)
    return ledger


def _publish(led: Ledger, key: str, digest: str, access: list[str], **kw: bool) -> tuple[int, int | None]:
    """Observe ``key`` with ``digest`` and publish two records for it, as a worker does."""
    led.observe("repo", key, digest, 1, 1)
    item_id = led.known_items("repo")[key].id if not key.startswith(AGGREGATE_PREFIX) else _aggregate_id(led, key)
    assert item_id is not None
    drafts = [Draft(RecordKind.CHUNK, f"{key} record {i}", (Evidence(key, i + 1, i + 1),)) for i in range(2)]
    vectors = np.ones((2, 384), dtype=np.float32)
    return item_id, led.publish_version(item_id, digest, PV, drafts, vectors, access, led.last_change_id(item_id), **kw)


def _aggregate_id(led: Ledger, key: str) -> int:
    from sleepd.schema import ItemRow

    with led.read() as s:
        found = s.exec(select(ItemRow.id).where(ItemRow.source == "repo", ItemRow.key == key)).first()
    assert found is not None
    return found


def _access(led: Ledger) -> dict[str, list[str]]:
    with led.read() as s:
        return {r.text: json.loads(r.access) for r in s.exec(select(RecordRow)).all()}


def test_change_access_in_one_transaction(led: Ledger, tmp_path: Path) -> None:
    source = FileSource(name="repo", path=tmp_path, access=("eng",))
    led.save_source(source)
    a, _ = _publish(led, "a.py", "ha", ["eng"])
    b, _ = _publish(led, "private/b.py", "hb", ["eng"])
    agg, _ = _publish(led, AGGREGATE, "agg1", ["eng"])
    with led.read() as s:
        events_before = len(s.exec(select(IndexEventRow)).all())
        versions_before = sorted((v.item_id, v.version, v.status) for v in s.exec(select(VersionRow)).all())

    change = led.change_access(replace(source, access_paths=(("private/**", ("legal",)),)))
    assert (change.items, change.records, change.aggregates_retracted) == (1, 2, 1)
    assert _access(led) == {"a.py record 0": ["eng"], "a.py record 1": ["eng"],
                            "private/b.py record 0": ["legal"], "private/b.py record 1": ["legal"]}
    with led.read() as s:
        events = s.exec(select(IndexEventRow).order_by(IndexEventRow.seq)).all()[events_before:]
        versions = sorted((v.item_id, v.version, v.status) for v in s.exec(select(VersionRow)).all())
        rebuild = s.exec(select(ChangeRow).where(ChangeRow.item_id == agg, ChangeRow.status == "pending")).all()
    # b's points get a new payload; the aggregate's points go
    assert [(e.op, e.record_id) for e in events if e.op == "access"] == [("access", access_event(b))]
    assert sum(e.op == "delete" for e in events) == 2
    assert versions == [v if v[0] != agg else (agg, 1, "retracted") for v in versions_before]
    assert len(rebuild) == 1 and rebuild[0].priority > 0
    aggregate = led.item(agg)
    assert aggregate is not None and aggregate.state == ItemState.PENDING.value and aggregate.n_records == 0
    assert led.access_of_items([a, b]) == {'["eng"]': [a], '["legal"]': [b]}
    assert led.get_source("repo") == replace(source, access_paths=(("private/**", ("legal",)),))

    # the same lists again: nothing to do, nothing retracted
    again = led.change_access(replace(source, access_paths=(("private/**", ("legal",)),)))
    assert (again.items, again.records, again.aggregates_retracted) == (0, 0, 0)


def test_a_publish_after_an_access_change_gets_the_new_list(led: Ledger, tmp_path: Path) -> None:
    """The worker read the item (and the old list) before the change; it publishes after it."""
    source = FileSource(name="repo", path=tmp_path, access=("eng",))
    led.save_source(source)
    _publish(led, "a.py", "h1", ["eng"])
    agg, _ = _publish(led, AGGREGATE, "agg1", ["eng"])
    led.observe("repo", "a.py", "h2", 1, 2)
    led.observe("repo", AGGREGATE, "agg2", 1, 2)
    item = led.known_items("repo")["a.py"]
    assert item.id is not None
    seen_item, seen_aggregate = led.last_change_id(item.id), led.last_change_id(agg)
    led.change_access(replace(source, access=("legal",)))
    drafts = [Draft(RecordKind.CHUNK, "a.py v2", (Evidence("a.py", 1, 1),))]
    vectors = np.ones((1, 384), dtype=np.float32)
    assert led.publish_version(item.id, "h2", PV, drafts, vectors, ["eng"], seen_item, access_from_source=True) == 2
    assert _access(led)["a.py v2"] == ["legal"]
    # without the flag the worker's list is kept (what the ledger's callers that pass a list rely on)
    led.observe("repo", "a.py", "h3", 1, 3)
    drafts3 = [Draft(RecordKind.CHUNK, "a.py v3", (Evidence("a.py", 1, 1),))]
    assert led.publish_version(item.id, "h3", PV, drafts3, vectors, ["eng"], led.last_change_id(item.id)) == 3
    assert _access(led)["a.py v3"] == ["eng"]
    # an aggregate built for the old groups: a newer change (the rebuild) is open, so it is not published
    assert led.publish_version(agg, "agg2", PV, drafts, vectors, ["eng"], seen_aggregate) is None
    aggregate = led.item(agg)
    assert aggregate is not None and aggregate.n_records == 0 and aggregate.state == ItemState.PENDING.value
    with led.read() as s:
        open_changes = s.exec(select(ChangeRow).where(ChangeRow.item_id == agg,
                                                      ChangeRow.status == "pending")).all()
    assert [c.content_hash.startswith("access-change:") for c in open_changes if c.content_hash] == [True]
    # the rebuild itself (it saw that change) publishes
    assert led.publish_version(agg, "agg3", PV, drafts, vectors, ["legal"], led.last_change_id(agg)) == 2


def test_a_start_follows_declared_lists_and_keeps_an_admins_where_none_is_declared(led: Ledger, tmp_path: Path) -> None:
    """The config file's table declares access (a change takes the admin's path, audited as config),
    or declares none (the list an admin set stays: never back to the default "*"); the same for
    `sleepd run PATH` with and without --access."""
    config = tmp_path / "sleepd.toml"
    env = {"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)}
    table = f'[[sources]]\nname = "repo"\npath = "{tmp_path}"\n'
    config.write_text(table + 'access = ["eng"]\n')
    declare_sources(led, load_settings(env))
    _publish(led, "a.py", "ha", ["eng"])
    _publish(led, "private/b.py", "hb", ["eng"])

    config.write_text(table + 'access = ["ops"]\n[sources.access_paths]\n"private/**" = ["hr"]\n')
    declare_sources(led, load_settings(env))
    assert _access(led) == {"a.py record 0": ["ops"], "a.py record 1": ["ops"],
                            "private/b.py record 0": ["hr"], "private/b.py record 1": ["hr"]}
    assert [e["actor"] for e in audit_entries(led, action="access")] == ["config"]

    led.change_access(replace(FileSource(name="repo", path=tmp_path), access=("legal",)))  # `sources access`
    config.write_text(table)  # no access declared any more
    settings = load_settings(env)
    assert settings.access_undeclared == ("repo",)
    declare_sources(led, settings)
    assert set(map(tuple, _access(led).values())) == {("legal",)}
    assert led.get_source("repo") == FileSource(name="repo", path=tmp_path.resolve(), access=("legal",))

    config.write_text("")
    run_path = FileSource(name="repo", path=tmp_path)
    declare_sources(led, load_settings(env), (run_path,), extra_access=False)  # sleepd run PATH
    assert set(map(tuple, _access(led).values())) == {("legal",)}
    declare_sources(led, load_settings(env), (replace(run_path, access=("*",)),))  # sleepd run PATH --access '*'
    assert set(map(tuple, _access(led).values())) == {("*",)}
    assert len(audit_entries(led, action="access")) == 2
