"""A real Celery worker, on the local filesystem transport and on Redis: tasks run S(c),
are idempotent, survive a broker outage and a worker killed mid-task; the team path with
PostgreSQL and a Qdrant (client) index."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from celery.contrib.testing.worker import start_worker
from sqlmodel import select

from sleepd import defaults
from sleepd.auth import Principal
from sleepd.embed import Embedder
from sleepd.ledger import Ledger
from sleepd.scheduler import Scheduler, SchedulerState
from sleepd.schema import ChangeRow, ItemState, RecordRow
from sleepd.service import Service
from sleepd.settings import FileSource, Settings, SqlSource, SqlTable
from sleepd.watchers import Watchers
from tests.helpers import free_port, wait_for
from workers.app import configure
from workers.tasks import TASK_NAME, enrich_items, run_batch

ADMIN = Principal("t", admin=True)


def write_repo(root: Path, n: int = 3) -> None:
    root.mkdir(exist_ok=True)
    for i in range(n):
        (root / f"mod{i}.py").write_text(
            f'"""Module {i}: helpers for widget number {i}."""\n\n\ndef widget_{i}(x):\n'
            f'    """Return widget {i} scaled by x."""\n    return x * {i}\n')


def sender(settings: Settings) -> Callable[[list[tuple[int, bool]]], None]:
    app = configure(settings)

    def send(items: list[tuple[int, bool]]) -> None:
        app.send_task(TASK_NAME, args=[items], queue=defaults.QUEUE, retry=False)

    return send


def _attempts(ledger: Ledger, key: str) -> int:
    """How many times workers began the open change of the item ``key`` of source repo."""
    item = ledger.known_items("repo")[key]
    with ledger.read() as s:
        rows = s.exec(select(ChangeRow).where(ChangeRow.item_id == item.id)).all()
    return max((r.attempts for r in rows), default=0)


def all_enriched(ledger: Ledger, source: str, n: int) -> bool:
    items = ledger.known_items(source)
    return len(items) == n and all(i.state == ItemState.ENRICHED.value for i in items.values())


@contextmanager
def worker_thread(settings: Settings) -> Iterator[None]:
    app = configure(settings)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, queues=[defaults.QUEUE]):
        yield


def run_pipeline(settings: Settings, ledger: Ledger, repo: Path) -> Scheduler:
    ledger.save_source(FileSource(name="repo", path=repo))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    scheduler = Scheduler(ledger, settings, sender(settings))
    assert scheduler.tick() == 3
    return scheduler


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_worker_enriches_and_is_idempotent(broker: str, make_settings: Callable[..., Settings], tmp_path: Path,
                                           embedder: object, request: pytest.FixtureRequest) -> None:
    broker_url = request.getfixturevalue("redis_url") if broker == "redis" else "filesystem://"
    settings = make_settings(broker_url=broker_url)
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo")
    with worker_thread(settings):
        run_pipeline(settings, ledger, tmp_path / "repo")
        wait_for(lambda: all_enriched(ledger, "repo", 3), what="three items enriched")
        item = ledger.known_items("repo")["mod1.py"]
        assert item.version == 1 and item.n_records >= 2
        # the same task delivered twice publishes nothing new
        send = sender(settings)
        assert item.id is not None
        send([(item.id, False)])
        send([(item.id, False), (item.id, False)])
        # then a task with real work: one solo worker takes tasks in order, so once it is done the
        # duplicates ran too (an event to wait on, not a pause)
        (tmp_path / "repo" / "marker.py").write_text('"""Marker."""\n')
        Watchers(ledger.sources(), ledger, settings).scan_all()
        marker = ledger.known_items("repo")["marker.py"]
        assert marker.id is not None and marker.version == 0
        send([(marker.id, False)])
        wait_for(lambda: ledger.known_items("repo")["marker.py"].version == 1, what="the marker task done")
    assert ledger.known_items("repo")["mod1.py"].version == 1
    ledger.close()


def test_broker_outage_only_delays(make_settings: Callable[..., Settings], tmp_path: Path, embedder: object) -> None:
    port = free_port()
    settings = make_settings(broker_url=f"redis://127.0.0.1:{port}/0")
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo")
    ledger.save_source(FileSource(name="repo", path=tmp_path / "repo"))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    scheduler = Scheduler(ledger, settings, sender(settings))
    assert scheduler.tick() == 0  # nothing listens on that port
    assert scheduler.state == SchedulerState.BROKER_DOWN and "broker" in (scheduler.last_error or "")
    assert len(ledger.due_changes(10, settings.lease_seconds)) == 3  # still open, nothing lost
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: scheduler.tick() == 3, timeout=15, what="broker back")
        with worker_thread(settings):
            wait_for(lambda: all_enriched(ledger, "repo", 3), what="enriched after the outage")
    finally:
        server.terminate()
        server.wait()
    ledger.close()


def test_worker_killed_mid_task_loses_nothing(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(lease_seconds=3.0)
    ledger = Ledger(settings.database_url)
    repo = tmp_path / "repo"
    repo.mkdir()
    # big enough that enrichment takes a few seconds (over MAX_LINES, so it is chunked as text)
    (repo / "big.py").write_text("".join(
        f'def function_{i}(a, b):\n    """Compute thing {i} from a and b."""\n    return a + b * {i}\n\n\n'
        for i in range(1500)))
    ledger.save_source(FileSource(name="repo", path=repo))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    env = {**os.environ, **settings.child_env()}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "sleepd", "worker"], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    scheduler = Scheduler(ledger, settings, sender(settings))
    assert scheduler.tick() == 1
    queue = settings.home / "broker" / "queue"
    wait_for(lambda: not any(queue.iterdir()), timeout=60, what="the worker took the task")
    # the worker counts an attempt when it begins the item: kill it then, mid-task
    wait_for(lambda: _attempts(ledger, "big.py") >= 1, timeout=60, interval=0.02, what="the worker began big.py")
    assert ledger.known_items("repo")["big.py"].state == ItemState.PENDING.value, "still mid-task"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker = subprocess.Popen([sys.executable, "-m", "sleepd", "worker"], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        # the lease runs out, the scheduler hands the change out again, the new worker finishes it
        wait_for(lambda: scheduler.tick() >= 0 and all_enriched(ledger, "repo", 1), timeout=120,
                 interval=0.5, what="re-enqueued after the lease")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    item = ledger.known_items("repo")["big.py"]
    assert item.version == 1 and item.n_records > 100  # published once, by the second worker
    ledger.close()


def test_team_path_postgres_redis_qdrant_client(make_settings: Callable[..., Settings], tmp_path: Path,
                                                redis_url: str, pg_url: str, embedder: object) -> None:
    settings = make_settings(broker_url=redis_url, database_url=pg_url,
                             qdrant_url=f"local:{tmp_path / 'qdrant'}")
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo")
    with worker_thread(settings):
        run_pipeline(settings, ledger, tmp_path / "repo")
        wait_for(lambda: all_enriched(ledger, "repo", 3), what="enriched on PostgreSQL")
    service = Service.open(settings, ledger)
    try:
        result = service.query("which function scales widget 2?", 400, ADMIN)
        assert result.records[0].item == "mod2.py"
        assert result.tokens_used <= 400
    finally:
        service.close()
        ledger.close()


def test_filesystem_messages_are_never_seen_half_written(make_settings: Callable[..., Settings]) -> None:
    """A consumer polling while a producer writes gets every message whole (kombu's own
    filesystem transport can hand a reader an empty file, which stops a Celery worker)."""
    import threading

    from kombu import Connection, Queue

    settings = make_settings()
    app = configure(settings)
    received: list[int] = []
    errors: list[BaseException] = []
    total = 60
    options = {**app.conf.broker_transport_options, "polling_interval": 0.0}  # the consumer polls flat out

    def consume() -> None:
        with Connection(app.conf.broker_url, transport=app.conf.broker_transport,
                        transport_options=options) as conn:
            queue = conn.SimpleQueue(Queue("race", routing_key="race"))
            try:
                while len(received) < total:
                    message = queue.get(timeout=20)
                    received.append(message.payload["n"])
                    message.ack()
            except BaseException as exc:  # a half-written file surfaces here as a decode error
                errors.append(exc)
            finally:
                queue.close()

    thread = threading.Thread(target=consume)
    thread.start()
    with Connection(app.conf.broker_url, transport=app.conf.broker_transport,
                    transport_options=options) as conn:
        queue = conn.SimpleQueue(Queue("race", routing_key="race"))
        for n in range(total):  # big messages, each written while the consumer waits for it
            queue.put({"n": n, "pad": "x" * 4_000_000})
            time.sleep(0.01)
        queue.close()
    thread.join(timeout=120)
    assert errors == [] and sorted(received) == list(range(total))


def test_a_batch_embeds_together_but_publishes_and_fails_each_item_alone(
        make_settings: Callable[..., Settings], tmp_path: Path, embedder: Embedder) -> None:
    settings = make_settings()
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo")
    (tmp_path / "repo" / "blob.py").write_bytes(b"\xff\xfe not text")
    ledger.save_source(FileSource(name="repo", path=tmp_path / "repo"))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    items = ledger.known_items("repo")
    batch = [(items[k].id or 0, False) for k in ("mod0.py", "blob.py", "mod1.py", "mod2.py")]
    outcomes = run_batch(ledger, embedder, settings, batch)
    assert [o.status for o in outcomes] == ["published", "failed", "published", "published"]
    assert "UTF-8" in (outcomes[1].error or "")
    after = ledger.known_items("repo")
    assert {k: i.version for k, i in after.items()} == {"mod0.py": 1, "blob.py": 0, "mod1.py": 1, "mod2.py": 1}
    with ledger.read() as s:  # each item's records carry that item's own vectors
        for key in ("mod0.py", "mod2.py"):
            rows = s.exec(select(RecordRow).where(RecordRow.item_id == after[key].id)).all()
            assert rows and all(key.removesuffix(".py").replace("mod", "widget_") in r.text or
                                key.removesuffix(".py") in r.text for r in rows)
            for row in rows:
                assert np.allclose(np.frombuffer(row.embedding, dtype=np.float32), embedder.encode([row.text])[0],
                                   atol=1e-4)
    assert [o.status for o in run_batch(ledger, embedder, settings, batch)] == [
        "unchanged", "failed", "unchanged", "unchanged"]  # a redelivered batch publishes nothing
    ledger.close()


def test_an_unexpected_error_fails_its_item_and_the_batchmates_publish(
        make_settings: Callable[..., Settings], tmp_path: Path, pg_url: str, embedder: Embedder,
        caplog: pytest.LogCaptureFixture) -> None:
    """Not only ItemError: any error of one item (here PostgreSQL refusing a NUL that sits past the
    binary sniff) fails that item with its error, closes its change, and the others publish."""
    settings = make_settings(database_url=pg_url)
    ledger = Ledger(pg_url)
    write_repo(tmp_path / "repo")
    (tmp_path / "repo" / "late_nul.py").write_text("x = 1\n" * 2000 + "y = '\0'\n")
    ledger.save_source(FileSource(name="repo", path=tmp_path / "repo"))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    items = ledger.known_items("repo")
    keys = ("mod0.py", "late_nul.py", "mod1.py", "mod2.py")
    due = ledger.due_changes(10, settings.lease_seconds)
    ledger.mark_enqueued([c.id for c in due if c.id is not None])
    outcomes = run_batch(ledger, embedder, settings, [(items[k].id or 0, False) for k in keys])
    assert [o.status for o in outcomes] == ["published", "failed", "published", "published"]
    assert "NUL" in (outcomes[1].error or "") and len(outcomes[1].error or "") < 1000
    assert [r.getMessage() for r in caplog.records if r.name == "sleepd.worker"] == ["repo:late_nul.py failed"]
    after = ledger.known_items("repo")
    assert after["late_nul.py"].state == ItemState.FAILED.value and "NUL" in (after["late_nul.py"].error or "")
    assert all(after[k].state == ItemState.ENRICHED.value for k in keys if k != "late_nul.py")
    assert ledger.in_flight(settings.lease_seconds) == 0, "every change closed: nothing re-runs after its lease"
    ledger.close()


def test_the_task_names_its_items_in_the_log(make_settings: Callable[..., Settings], tmp_path: Path,
                                             embedder: Embedder, caplog: pytest.LogCaptureFixture) -> None:
    """By source and path, as a person knows them, not by their number; an item gone since it was
    queued by its number, as nothing else is left to name it."""
    settings = make_settings()
    configure(settings)
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo", n=2)
    ledger.save_source(FileSource(name="repo", path=tmp_path / "repo"))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    ids = [ledger.known_items("repo")[k].id or 0 for k in ("mod0.py", "mod1.py")]
    with caplog.at_level(logging.INFO, logger="sleepd.worker"):
        statuses = enrich_items.apply(args=[[[ids[0], False], [ids[1], False], [987654, False]]]).get()
    assert statuses == ["published", "published", "missing"]
    records = {i: ledger.known_items("repo")[f"mod{i}.py"].n_records for i in range(2)}
    assert [r.getMessage() for r in caplog.records if r.name == "sleepd.worker"] == [
        f"repo:mod0.py: published v1 ({records[0]} records)", f"repo:mod1.py: published v1 ({records[1]} records)",
        "item 987654: missing"]
    ledger.close()


def test_a_redelivered_forced_task_publishes_once(make_settings: Callable[..., Settings], tmp_path: Path,
                                                  embedder: Embedder) -> None:
    """A forced refresh re-enriches once; the same task delivered again (a retry after a crash, the
    lease ran out) finds its change closed and publishes nothing new."""
    settings = make_settings()
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo", n=1)
    ledger.save_source(FileSource(name="repo", path=tmp_path / "repo"))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    iid = ledger.known_items("repo")["mod0.py"].id or 0
    assert [o.status for o in run_batch(ledger, embedder, settings, [(iid, False)])] == ["published"]
    assert ledger.request_refresh("repo", "mod0.py", force=True) == 1
    assert [o.version for o in run_batch(ledger, embedder, settings, [(iid, True), (iid, True)])] == [2, 2]
    assert [o.status for o in run_batch(ledger, embedder, settings, [(iid, True)])] == ["unchanged"]
    assert ledger.known_items("repo")["mod0.py"].version == 2
    ledger.close()


def test_a_transient_error_retries_its_item_alone(make_settings: Callable[..., Settings], tmp_path: Path,
                                                  embedder: Embedder) -> None:
    """A real worker gets a batch whose sql item's database is unreachable: the file items publish
    at once, the sql item is retried (not failed) and publishes once its database is back."""
    settings = make_settings()
    ledger = Ledger(settings.database_url)
    write_repo(tmp_path / "repo", n=2)
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, plan TEXT)")
        conn.execute("INSERT INTO users VALUES (1, 'Ada Lovelace', 'enterprise')")
    conn.close()
    ledger.save_source(FileSource(name="repo", path=tmp_path / "repo"))
    ledger.save_source(SqlSource(name="crm", url=f"sqlite:///{db}", tables=(SqlTable("users", "id"),)))
    Watchers(ledger.sources(), ledger, settings).scan_all()
    files, account = ledger.known_items("repo"), ledger.known_items("crm")["1"]
    db.rename(tmp_path / "crm.away")  # the database goes away before the worker reads it
    with worker_thread(settings):
        sender(settings)([(files["mod0.py"].id or 0, False), (account.id or 0, False),
                          (files["mod1.py"].id or 0, False)])
        wait_for(lambda: all_enriched(ledger, "repo", 2), timeout=20, what="the file items, while crm is down")
        assert ledger.known_items("crm")["1"].state == ItemState.PENDING.value  # retried, not failed
        (tmp_path / "crm.away").rename(db)
        wait_for(lambda: all_enriched(ledger, "crm", 1), timeout=30, what="the account, once crm is back")
    assert {k: i.version for k, i in ledger.known_items("repo").items()} == {"mod0.py": 1, "mod1.py": 1}
    ledger.close()
