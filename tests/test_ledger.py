"""The ledger on SQLite and PostgreSQL: outbox semantics, atomic and idempotent publish, purge."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlmodel import select

from sleepd.ledger import Ledger, record_id
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.schema import (
    ChangeRow,
    ChangeStatus,
    IndexEventRow,
    ItemState,
    QueryLogItemRow,
    QueryLogRow,
    RecordRow,
    VersionRow,
)
from sleepd.settings import FileSource

PV = "test-pipeline"


@pytest.fixture(params=["sqlite", "postgresql"])
def led(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    url = f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    ledger = Ledger(url)
    ledger.save_source(FileSource(name="repo", path=tmp_path, access=("team",)))
    request.addfinalizer(ledger.close)
    return ledger


def drafts(n: int, tag: str) -> tuple[list[Draft], np.ndarray]:
    ds = [Draft(RecordKind.CHUNK, f"{tag} record {i}", (Evidence("a.py", i + 1, i + 1),)) for i in range(n)]
    vectors = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)
    return ds, vectors


def item_id(led: Ledger, key: str = "a.py") -> int:
    found = led.known_items("repo")[key].id
    assert found is not None
    return found


def test_observe_records_a_change_only_when_content_differs(led: Ledger) -> None:
    assert led.observe("repo", "a.py", "h1", 10, 1)
    assert not led.observe("repo", "a.py", "h1", 10, 2)  # touched, same content
    assert led.observe("repo", "a.py", "h2", 11, 3)
    with led.read() as s:
        changes = s.exec(select(ChangeRow)).all()
    assert [c.content_hash for c in changes] == ["h1", "h2"]
    assert led.known_items("repo")["a.py"].mtime_ns == 3


def test_publish_is_idempotent_and_replaces_the_version(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 10, 1)
    iid = item_id(led)
    seen = led.last_change_id(iid)
    ds, vs = drafts(3, "v1")
    assert led.publish_version(iid, "h1", PV, ds, vs, ["team"], seen) == 1
    assert led.publish_version(iid, "h1", PV, ds, vs, ["team"], seen) is None  # duplicate delivery
    item = led.item(iid)
    assert item is not None and item.state == ItemState.ENRICHED.value and item.version == 1
    led.observe("repo", "a.py", "h2", 10, 2)
    ds2, vs2 = drafts(2, "v2")
    assert led.publish_version(iid, "h2", PV, ds2, vs2, ["team"], led.last_change_id(iid)) == 2
    with led.read() as s:
        records = s.exec(select(RecordRow)).all()
        versions = s.exec(select(VersionRow).order_by(VersionRow.version)).all()
        events = s.exec(select(IndexEventRow)).all()
        open_changes = s.exec(select(ChangeRow).where(ChangeRow.status.in_(["pending", "enqueued"]))).all()
    assert sorted(r.text for r in records) == ["v2 record 0", "v2 record 1"]
    assert [v.status for v in versions] == ["superseded", "published"]
    assert [e.op for e in events].count("delete") == 3 and [e.op for e in events].count("upsert") == 5
    assert open_changes == []


def test_a_change_seen_after_the_read_stays_open(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 10, 1)
    iid = item_id(led)
    seen = led.last_change_id(iid)
    led.observe("repo", "a.py", "h2", 10, 2)  # arrives while the worker enriches h1
    ds, vs = drafts(1, "v1")
    led.publish_version(iid, "h1", PV, ds, vs, ["team"], seen)
    item = led.item(iid)
    assert item is not None and item.state == ItemState.PENDING.value
    due = led.due_changes(10, lease_seconds=60)
    assert [c.content_hash for c in due] == ["h2"]


def test_readers_see_one_whole_version(led: Ledger) -> None:
    """Atomic publish: while versions flip, every snapshot holds records of exactly one version."""
    led.observe("repo", "a.py", "h0", 1, 0)
    iid = item_id(led)
    ds, vs = drafts(20, "v")
    led.publish_version(iid, "h0", PV, ds, vs, ["team"], led.last_change_id(iid))
    stop = threading.Event()
    mixes: list[set[int]] = []

    def read_loop() -> None:
        while not stop.is_set():
            with led.read() as s:
                rows = s.exec(select(RecordRow).where(RecordRow.item_id == iid)).all()
            versions = {r.version for r in rows}
            if len(versions) != 1 or len(rows) != 20:
                mixes.append(versions)

    reader = threading.Thread(target=read_loop)
    reader.start()
    for n in range(1, 15):
        led.observe("repo", "a.py", f"h{n}", 1, n)
        led.publish_version(iid, f"h{n}", PV, ds, vs, ["team"], led.last_change_id(iid))
    stop.set()
    reader.join()
    assert mixes == []
    item = led.item(iid)
    assert item is not None and item.version == 15


def test_due_changes_dedupe_per_item_and_lease_expiry(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 1, 1)
    led.observe("repo", "b.py", "h1", 1, 1)
    led.request_refresh("repo", "b.py", force=True)
    due = led.due_changes(10, lease_seconds=60)
    assert due[0].force is True  # the refresh jumps the queue
    assert len(due) == 2
    led.mark_enqueued([c.id for c in due if c.id is not None])
    assert led.due_changes(10, lease_seconds=60) == []
    assert led.in_flight(60) == 2
    # a lease of zero has run out at once: the changes are handed out again
    again = led.due_changes(10, lease_seconds=0)
    assert {c.item_id for c in again} == {c.item_id for c in due}


def test_poison_change_fails_after_max_attempts(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 1, 1)
    for _ in range(5):  # handed out, begun by a worker that dies, lease over, again
        due = led.due_changes(10, lease_seconds=0)
        led.mark_enqueued([c.id for c in due if c.id is not None])
        led.start_attempt([c.item_id for c in due])
    assert led.due_changes(10, lease_seconds=0) == []
    item = led.item(item_id(led))
    assert item is not None and item.state == ItemState.FAILED.value and "gave up" in (item.error or "")


def test_hand_outs_no_worker_began_are_not_attempts(led: Ledger) -> None:
    """Messages lost by a broker restart (or a lease over while a slow worker still runs) are
    handed out again and again; the change is not given up for that."""
    led.observe("repo", "a.py", "h1", 1, 1)
    for _ in range(8):
        due = led.due_changes(10, lease_seconds=0)
        assert [c.item_id for c in due] == [item_id(led)]
        led.mark_enqueued([c.id for c in due if c.id is not None])
    item = led.item(item_id(led))
    assert item is not None and item.state == ItemState.PENDING.value


def test_delete_retracts_records(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 1, 1)
    iid = item_id(led)
    ds, vs = drafts(2, "v1")
    led.publish_version(iid, "h1", PV, ds, vs, ["team"], led.last_change_id(iid))
    assert led.observe_deleted("repo", "a.py")
    assert led.retract_item(iid, led.last_change_id(iid)) == 2
    item = led.item(iid)
    assert item is not None and item.state == ItemState.DELETED.value
    assert "a.py" not in led.known_items("repo")
    with led.read() as s:
        assert s.exec(select(RecordRow)).all() == []


def test_purge_removes_everything_and_counts_it(led: Ledger) -> None:
    for key in ("a.py", "docs/b.md"):
        led.observe("repo", key, "h1", 1, 1)
        iid = item_id(led, key)
        ds, vs = drafts(2, key)
        led.publish_version(iid, "h1", PV, ds, vs, ["team"], led.last_change_id(iid))
    led.log_query(QueryLogRow(at=1.0, principal="p", query="secret about a", budget=100, tokens_used=10,
                              n_records=1, latency_ms=1.0, items=f"[{item_id(led)}]"))
    receipt, record_ids = led.purge("repo", "*.py")
    assert (receipt.items, receipt.records, receipt.versions, receipt.query_log) == (1, 2, 1, 1)
    assert len(record_ids) == 2
    assert set(led.known_items("repo")) == {"docs/b.md"}
    # a purge by path sticks: the watchers' next observation of a.py (or its read error) is ignored
    assert not led.observe("repo", "a.py", "h2", 1, 2)
    led.note_item_error("repo", "a.py", "permission denied")
    assert set(led.known_items("repo")) == {"docs/b.md"} and led.purged_paths() == {"repo": ["*.py"]}
    assert led.observe("other", "a.py", "h1", 1, 1)  # another source is not affected
    assert led.lift_purge("repo", "*.py") == 1 and led.lift_purge("repo", "*.py") == 0
    assert led.observe("repo", "a.py", "h2", 1, 2)
    led.purge(None, "secret/**")  # every source
    assert not led.observe("other", "secret/x.txt", "h", 1, 1)
    receipt, _ = led.purge("repo")
    assert receipt.items == 2 and led.get_source("repo") is None


def test_fail_item_records_the_error(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 1, 1)
    iid = item_id(led)
    led.fail_item(iid, "binary file", led.last_change_id(iid))
    status = led.status()
    assert status["sources"][0]["failed"] == [{"item": "a.py", "error": "binary file"}]
    assert status["sources"][0]["items"]["failed"] == 1


def test_outdated_pipeline_items_are_queued_lazily_most_queried_first(led: Ledger) -> None:
    for key in ("a.py", "b.py", "c.py"):
        led.observe("repo", key, f"h-{key}", 10, 1)
        iid = item_id(led, key)
        ds, vs = drafts(1, key)
        assert led.publish_version(iid, f"h-{key}", PV, ds, vs, ["team"], led.last_change_id(iid)) == 1
    hot = item_id(led, "c.py")
    led.log_query(QueryLogRow(at=1.0, principal="p", query="q", budget=100, tokens_used=10, n_records=1,
                              latency_ms=1.0, items=f"[{hot}]"))
    assert led.queue_outdated(PV, 10) == 0  # all current
    assert led.queue_outdated("new-pipeline", 1) == 1
    assert [c.item_id for c in led.due_changes(10, lease_seconds=60)] == [hot]  # the queried one first
    assert led.queue_outdated("new-pipeline", 10) == 2  # not the one already queued
    assert led.queue_outdated("new-pipeline", 10) == 0
    assert len(led.due_changes(10, lease_seconds=60)) == 3


def test_a_change_the_worker_closed_before_mark_enqueued_stays_closed(led: Ledger) -> None:
    """The scheduler marks changes after sending them; a fast worker may have finished first."""
    led.observe("repo", "a.py", "h1", 1, 1)
    iid = item_id(led)
    due = led.due_changes(10, lease_seconds=60)  # the scheduler picks the change and sends it
    ds, vs = drafts(1, "v1")
    assert led.publish_version(iid, "h1", PV, ds, vs, ["team"], led.last_change_id(iid)) == 1  # the worker
    led.mark_enqueued([c.id for c in due if c.id is not None])  # the scheduler, after send returned
    change = led.change(due[0].id or 0)
    assert change is not None and change.status == ChangeStatus.DONE.value and change.attempts == 0
    assert led.in_flight(60) == 0  # holds no max_in_flight slot
    assert led.due_changes(10, lease_seconds=0) == []  # and never runs again
    item = led.item(iid)
    assert item is not None and item.state == ItemState.ENRICHED.value and item.version == 1


def test_current_records_reads_one_snapshot_while_a_version_is_published(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL: a publisher commits v2 between the read of the records and the read of their
    items. The read must still pair v1 records with the v1 item (READ COMMITTED paired them with v2
    and dropped them all as stale)."""
    led, other = Ledger(pg_url), Ledger(pg_url)
    try:
        led.save_source(FileSource(name="repo", path=tmp_path, access=("team",)))
        led.observe("repo", "a.py", "h1", 1, 1)
        iid = item_id(led)
        ds, vs = drafts(3, "v1")
        led.publish_version(iid, "h1", PV, ds, vs, ["team"], led.last_change_id(iid))
        ids = [record_id(iid, 1, n) for n in range(3)]
        other.observe("repo", "a.py", "h2", 1, 2)
        seen = other.last_change_id(iid)
        published: list[int | None] = []

        def between(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if not published and "FROM items" in statement:
                ds2, vs2 = drafts(2, "v2")
                published.append(other.publish_version(iid, "h2", PV, ds2, vs2, ["team"], seen))

        event.listen(led.engine, "before_cursor_execute", between)
        rows, items = led.current_records(ids)
        event.remove(led.engine, "before_cursor_execute", between)
        assert published == [2]
        assert sorted(r.id for r in rows) == sorted(ids) and items[iid].version == 1
        rows, items = led.current_records(ids)  # the next read sees v2: the v1 records are gone
        assert rows == [] and items == {}
    finally:
        led.close()
        other.close()


def test_purge_finds_the_query_log_rows_by_sql(led: Ledger) -> None:
    """Only the query-log rows that drew on purged items are read and deleted, not the whole log."""
    ids = {}
    for key in ("a.py", "b.py"):
        led.observe("repo", key, "h1", 1, 1)
        ids[key] = item_id(led, key)
    a, b = ids["a.py"], ids["b.py"]
    led.log_query(*(QueryLogRow(at=1.0, principal="p", query=f"q{items}", budget=100, tokens_used=1, n_records=1,
                                latency_ms=1.0, items=items) for items in (f"[{a}]", f"[{b}]", f"[{b}, {a}]", "[]")))
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(led.engine, "before_cursor_execute", capture)
    receipt, _ = led.purge("repo", "a.py")
    event.remove(led.engine, "before_cursor_execute", capture)
    assert receipt.query_log == 2
    assert not [st for st in statements if re.search(r"^SELECT .* FROM query_log(?! *WHERE)(?!_items)", st)]
    with led.read() as s:
        assert sorted(s.exec(select(QueryLogRow.query)).all()) == sorted(["q[]", f"q[{b}]"])
        assert s.exec(select(QueryLogItemRow.item_id)).all() == [b]


def test_prune_query_log_deletes_rows_older_than_the_cutoff(led: Ledger) -> None:
    led.observe("repo", "a.py", "h1", 1, 1)
    iid = item_id(led)
    led.log_query(*(QueryLogRow(at=at, principal="p", query=f"q{at}", budget=100, tokens_used=1, n_records=1,
                                latency_ms=1.0, items=f"[{iid}]") for at in (10.0, 20.0, 30.0)))
    assert led.prune_query_log(before=25.0) == 2
    assert led.prune_query_log(before=25.0) == 0
    with led.read() as s:
        assert s.exec(select(QueryLogRow.at)).all() == [30.0]
        assert len(s.exec(select(QueryLogItemRow)).all()) == 1  # the pruned rows' items went with them
    receipt, _ = led.purge("repo", "a.py")
    assert receipt.query_log == 1


def test_a_ledger_of_the_cursor_era_is_upgraded(led: Ledger) -> None:
    """An older ledger (a seq cursor, no query-log items) opens: events up to the cursor count as
    applied, the rest not; queries logged before are still found by a purge."""
    led.observe("repo", "a.py", "h1", 1, 1)
    iid = item_id(led)
    ds, vs = drafts(4, "v1")
    led.publish_version(iid, "h1", PV, ds, vs, ["team"], led.last_change_id(iid))
    led.log_query(QueryLogRow(at=1.0, principal="p", query="q", budget=100, tokens_used=1, n_records=1,
                              latency_ms=1.0, items=f"[{iid}]"))
    with led.engine.begin() as conn:  # what an older sleepd left behind
        conn.execute(text("DROP INDEX ix_index_events_applied"))
        conn.execute(text("ALTER TABLE index_events DROP COLUMN applied"))
        conn.execute(text("DROP TABLE query_log_items"))
        first = conn.execute(text("SELECT min(seq) FROM index_events")).scalar()
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('index_cursor', :c)"), {"c": str(first + 1)})
    again = Ledger(led.url)
    try:
        assert again.status()["index_lag"] == 2
        assert again.purge("repo", "a.py")[0].query_log == 1
    finally:
        again.close()
