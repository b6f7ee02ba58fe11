"""The indexer on real engines: it applies every published record even when publishers commit out of
order (PostgreSQL), ``rebuild`` and compaction lose nothing, and its loop prunes the query log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as edge
from sqlalchemy import event, func
from sqlmodel import select

from sleepd.index import VectorIndex, open_index
from sleepd.indexer import TERMS_META, Indexer, point_for
from sleepd.ledger import Ledger
from sleepd.records import Draft, Evidence, RecordKind
from sleepd.schema import IndexEventRow, QueryLogRow, RecordRow
from sleepd.settings import FileSource, load_settings
from sleepd.sparse import TERMS_VERSION, SparseVector, query_vector, term_index, terms
from tests.helpers import wait_for

PV = "test-pipeline"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
def led(url: str, tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(url)
    ledger.save_source(FileSource(name="repo", path=tmp_path, access=("team",)))
    yield ledger
    ledger.close()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[VectorIndex]:
    idx = open_index(tmp_path / "home", 384, None)
    yield idx
    idx.close()


def _drafts(n: int, tag: str) -> tuple[list[Draft], np.ndarray]:
    ds = [Draft(RecordKind.CHUNK, f"{tag} record {i}", (Evidence("a.py", i + 1, i + 1),)) for i in range(n)]
    return ds, np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)


def _item(led: Ledger, key: str) -> int:
    led.observe("repo", key, f"h-{key}", 1, 1)
    found = led.known_items("repo")[key].id
    assert found is not None
    return found


def _publish(led: Ledger, iid: int, key: str, n: int = 2, seen: int | None = None) -> None:
    ds, vs = _drafts(n, key)
    seen = led.last_change_id(iid) if seen is None else seen
    assert led.publish_version(iid, f"h-{key}", PV, ds, vs, ["team"], seen) is not None


def _record_ids(led: Ledger) -> set[str]:
    with led.read() as s:
        return set(s.exec(select(RecordRow.id)).all())


class HeldCommit:
    """Publishes on its own ledger (its own connections) in a thread, and holds the transaction
    open just before COMMIT (its index events already have their seq) until released. The action
    must commit nothing before its publish (no read: a read's COMMIT would be the one held)."""

    def __init__(self, url: str) -> None:
        self.ledger = Ledger(url)
        self.reached, self.release = threading.Event(), threading.Event()
        self.errors: list[BaseException] = []
        event.listen(self.ledger.engine, "commit", self._hold)
        self._armed = False
        self._thread: threading.Thread | None = None

    def _hold(self, _conn: Any) -> None:
        if self._armed and threading.current_thread() is self._thread:
            self._armed = False
            self.reached.set()
            assert self.release.wait(60), "never released"

    def start(self, action: Callable[[Ledger], None]) -> None:
        def run() -> None:
            try:
                action(self.ledger)
            except BaseException as exc:  # surfaced by finish()
                self.errors.append(exc)

        self._armed = True
        self._thread = threading.Thread(target=run)
        self._thread.start()
        assert self.reached.wait(60), "the held publish never reached its commit"

    def finish(self) -> None:
        self.release.set()
        assert self._thread is not None
        self._thread.join(60)
        self.ledger.close()
        assert self.errors == []


def test_a_lower_seq_committed_after_a_higher_one_is_still_indexed(pg_url: str, tmp_path: Path,
                                                                    index: VectorIndex) -> None:
    """Two workers publish at once: the first takes the lower seq but commits last. The indexer
    synced in between must still apply it, and compaction must not delete it first."""
    led = Ledger(pg_url)
    led.save_source(FileSource(name="repo", path=tmp_path, access=("team",)))
    a, b = _item(led, "a.py"), _item(led, "b.py")
    indexer = Indexer(led, index)
    held = HeldCommit(pg_url)
    try:
        seen = led.last_change_id(a)
        held.start(lambda other: _publish(other, a, "a.py", seen=seen))  # seq 1-2, not committed yet
        _publish(led, b, "b.py")  # seq 3-4, committed
        assert indexer.sync() == 2
        led.compact_events()
        held.finish()  # a's events commit now, below what the indexer already applied
        assert indexer.sync() == 2
        assert index.ids() == _record_ids(led) and len(index.ids()) == 4
        assert led.status()["index_lag"] == 0
        led.compact_events()
        with led.read() as s:
            assert s.exec(select(func.count()).select_from(IndexEventRow)).one() == 0
    finally:
        led.close()


def test_rebuild_while_a_publish_is_in_flight_loses_nothing(pg_url: str, tmp_path: Path,
                                                            index: VectorIndex) -> None:
    led = Ledger(pg_url)
    led.save_source(FileSource(name="repo", path=tmp_path, access=("team",)))
    a, b = _item(led, "a.py"), _item(led, "b.py")
    indexer = Indexer(led, index)
    held = HeldCommit(pg_url)
    try:
        seen = led.last_change_id(a)
        held.start(lambda other: _publish(other, a, "a.py", seen=seen))
        _publish(led, b, "b.py")
        assert indexer.rebuild() == 2  # b's records; a's are not committed
        held.finish()
        indexer.sync()
        assert index.ids() == _record_ids(led) and len(index.ids()) == 4
    finally:
        led.close()


def test_sync_applies_upserts_and_deletes_and_compaction_keeps_what_is_unapplied(
        led: Ledger, index: VectorIndex) -> None:
    a, b = _item(led, "a.py"), _item(led, "b.py")
    indexer = Indexer(led, index)
    _publish(led, a, "a.py", 3)
    assert indexer.sync() == 3 and led.status()["index_lag"] == 0
    _publish(led, b, "b.py", 2)
    led.observe("repo", "a.py", "h2", 1, 2)
    ds, vs = _drafts(1, "a2")
    led.publish_version(a, "h2", PV, ds, vs, ["team"], led.last_change_id(a))  # 3 deletes, 1 upsert
    assert led.status()["index_lag"] == 6
    assert led.compact_events() == 3  # only a's first three, applied
    assert indexer.sync() == 6
    assert index.ids() == _record_ids(led) and len(index.ids()) == 3
    assert indexer.sync() == 0
    # rebuild from the ledger gives the same points
    index.clear()
    assert indexer.rebuild() == 3 and index.ids() == _record_ids(led)


def _found_by_word(index: VectorIndex, word: str) -> set[str]:
    return {h.id for h in index.search_sparse(query_vector(terms(word)), 100)}


def test_sparse_vectors_are_indexed_by_sync_and_survive_rebuild(led: Ledger, index: VectorIndex) -> None:
    """Each record's point carries the sparse vector of its title and text, computed from the
    ledger's text (no re-embedding), whether applied by sync or by rebuild."""
    a, b = _item(led, "quuxle.py"), _item(led, "b.py")
    _publish(led, a, "quuxle.py", 3)
    _publish(led, b, "b.py", 2)
    indexer = Indexer(led, index)
    indexer.sync()
    with led.read() as s:
        quuxle = set(s.exec(select(RecordRow.id).where(RecordRow.item_id == a)).all())
    assert len(quuxle) == 3 and _found_by_word(index, "quuxle") == quuxle
    assert indexer.rebuild() == 5
    assert _found_by_word(index, "quuxle") == quuxle


def test_an_index_from_before_sparse_vectors_is_rebuilt_from_the_ledger_at_open(led: Ledger, tmp_path: Path) -> None:
    """Upgrade without a manual step: an old index (dense vectors only) is recreated at open and
    the indexer rebuilds it from the ledger, sparse vectors included."""
    a = _item(led, "quuxle.py")
    _publish(led, a, "quuxle.py", 3)
    led.mark_all_applied()  # what the old indexer had done
    path = tmp_path / "home" / "index"
    path.mkdir(parents=True)
    edge.EdgeShard.load(str(path), edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=384, distance=edge.Distance.Cosine))).close()
    index = open_index(tmp_path / "home", 384, None)
    try:
        assert index.upgraded and index.count() == 0
        Indexer(led, index)
        assert not index.upgraded
        assert index.ids() == _record_ids(led) and _found_by_word(index, "quuxle") == _record_ids(led)
    finally:
        index.close()


def test_an_index_whose_sparse_vectors_split_words_the_old_way_is_rebuilt_at_open(
        led: Ledger, index: VectorIndex) -> None:
    """Upgrade without a manual step: sparse vectors made before an identifier joined by
    underscores was a term of its own (a home from before TERMS_VERSION 2) are made again from the
    ledger when the indexer opens, so the exact name a question quotes finds its record."""
    a = _item(led, "hooks.py")
    draft = Draft(RecordKind.SYMBOL, "def register_hook(self, event, hook): ...", (Evidence("hooks.py", 1, 2),),
                  title="Session.register_hook")
    vector = np.random.default_rng(1).standard_normal((1, 384)).astype(np.float32)
    assert led.publish_version(a, "h-hooks.py", PV, [draft], vector, ["team"], led.last_change_id(a)) is not None
    joined = SparseVector((term_index("register_hook"),), (1.0,))  # the whole name, not its parts

    def found() -> set[str]:
        return {h.id for h in index.search_sparse(joined, 10)}

    Indexer(led, index).sync()
    (rid,) = _record_ids(led)
    assert found() == {rid}
    # what the old indexer wrote: the parts only, and no version in the ledger
    old = SparseVector(*zip(*sorted({term_index(t): 1.0 for t in ("register", "hook", "session")}.items()),
                            strict=True))
    (row,) = led.records_by_id([rid])
    index.upsert([replace(point_for(row), sparse=old)])
    led.set_meta(TERMS_META, "1")
    assert found() == set()
    Indexer(led, index)
    assert led.get_meta(TERMS_META) == TERMS_VERSION
    assert found() == {rid}


def test_the_run_loop_prunes_the_query_log_at_most_once_an_hour(led: Ledger, index: VectorIndex) -> None:
    now = time.time()
    old, recent = now - 31 * 86400, now - 29 * 86400
    iid = _item(led, "a.py")
    led.log_query(*(QueryLogRow(at=at, principal="p", query=f"q{at}", budget=100, tokens_used=1, n_records=1,
                                latency_ms=1.0, items=f"[{iid}]") for at in (old, recent)))
    indexer = Indexer(led, index, query_log_days=30)
    stop = threading.Event()
    loop = threading.Thread(target=indexer.run, args=(stop, 0.01))
    loop.start()
    try:
        wait_for(lambda: _queries(led) == [recent], what="the old query pruned")
        led.log_query(QueryLogRow(at=old, principal="p", query="late", budget=100, tokens_used=1, n_records=1,
                                  latency_ms=1.0, items=f"[{iid}]"))
        syncs = indexer.syncs
        wait_for(lambda: indexer.syncs >= syncs + 20, what="twenty more rounds of the loop")
        assert sorted(_queries(led)) == [old, recent], "pruned again within the hour"
    finally:
        stop.set()
        loop.join(30)
    assert indexer.last_error is None


def _queries(led: Ledger) -> list[float]:
    with led.read() as s:
        return list(s.exec(select(QueryLogRow.at)).all())


def test_query_log_days_setting(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert load_settings({"SLEEPD_HOME": home}).query_log_days == 30
    assert load_settings({"SLEEPD_HOME": home, "SLEEPD_QUERY_LOG_DAYS": "7"}).query_log_days == 7
    config = tmp_path / "sleepd.toml"
    config.write_text("[sleepd]\nquery_log_days = 90\n")
    assert load_settings({"SLEEPD_HOME": home, "SLEEPD_CONFIG": str(config)}).query_log_days == 90
    config.write_text("[sleepd]\nquery_log_days = -1\n")
    from sleepd.errors import ConfigError

    with pytest.raises(ConfigError, match="query_log_days"):
        load_settings({"SLEEPD_HOME": home, "SLEEPD_CONFIG": str(config)})
