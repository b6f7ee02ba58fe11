"""The sql watcher against real databases: SQLite files, the local PostgreSQL and MariaDB (each
test in its own schema or database, dropped afterwards), the real worker and the real model."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    text,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from sleepd.auth import Principal
from sleepd.bench.datasets import load_tau2_retail, tau2_retail_source
from sleepd.cli import cli
from sleepd.embed import Embedder
from sleepd.errors import ConfigError, Unavailable
from sleepd.ledger import Ledger
from sleepd.schema import ItemState, RecordRow
from sleepd.service import Service
from sleepd.settings import Settings, SqlAccessLookup, SqlSource, SqlTable, load_settings
from sleepd.sql.engines import open_engine, reading
from sleepd.sql.rows import account_document, item_hash, read_item
from sleepd.sql.triggers import trigger_sql
from sleepd.watchers import SqlWatcher, Watchers
from tests.helpers import enrich_pending, free_port, unavailable, wait_for
from workers.enrich.accounts import enrich_account

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306/test"
BACKENDS = ["sqlite", "postgresql", "mariadb"]
LATER = datetime(2030, 1, 1)


@dataclass
class Db:
    """A writable handle on a watched database (the test plays the application)."""

    url: str
    schema: str | None
    engine: Engine

    def table(self, name: str) -> str:
        quote = self.engine.dialect.identifier_preparer.quote
        return f"{quote(self.schema)}.{quote(name)}" if self.schema else quote(name)

    def run(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql.format(**{n: self.table(n) for n in ("accounts", "tickets", "payments")})),
                         params)


def _server(url: str, what: str) -> Engine:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives a restart
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError:
        engine.dispose()
        unavailable(what)
    return engine


@pytest.fixture
def make_db(tmp_path: Path) -> Iterator[Callable[[str], Db]]:
    """A fresh, empty database per backend: a SQLite file, or a PostgreSQL schema / MariaDB
    database with a unique name, dropped at the end."""
    cleanups: list[Callable[[], None]] = []

    def make(backend: str) -> Db:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'app-{uuid.uuid4().hex[:6]}.db'}"
            db = Db(url, None, create_engine(url))
            cleanups.append(db.engine.dispose)
            return db
        schema = f"sleepd_sqlw_{uuid.uuid4().hex[:8]}"
        server = _server(PG_SERVER if backend == "postgresql" else MARIADB_SERVER, backend)
        with server.connect() as conn:
            conn.execute(text(f"CREATE {'SCHEMA' if backend == 'postgresql' else 'DATABASE'} {schema}"))

        def drop() -> None:
            with server.connect() as conn:
                conn.execute(text(f"DROP {'SCHEMA' if backend == 'postgresql' else 'DATABASE'} {schema}"
                                  + (" CASCADE" if backend == "postgresql" else "")))
            server.dispose()

        cleanups.append(drop)
        db = Db(str(server.url.render_as_string(hide_password=False)), schema,
                create_engine(server.url, pool_pre_ping=True))
        cleanups.append(db.engine.dispose)
        return db

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


def _create(db: Db) -> None:
    """accounts (integer key) with tickets (updated_at) and payments (no updated_at)."""
    md = MetaData(schema=db.schema)
    Table("accounts", md, Column("id", Integer, primary_key=True, autoincrement=False), Column("name", String(100)),
          Column("team", String(50)), Column("updated_at", DateTime, index=True))
    Table("tickets", md, Column("ticket_id", Integer, primary_key=True, autoincrement=False),
          Column("account_id", Integer, index=True), Column("status", String(30)),
          Column("body", Text().with_variant(LONGTEXT(), "mysql", "mariadb")),
          Column("updated_at", DateTime, index=True))
    Table("payments", md, Column("payment_id", Integer, primary_key=True, autoincrement=False),
          Column("account_id", Integer, index=True), Column("amount", Numeric(10, 2)), Column("note", String(200)),
          Column("receipt", LargeBinary))
    md.create_all(db.engine)
    t0 = datetime(2025, 1, 1)
    for i in (1, 2, 3):
        db.run("INSERT INTO {accounts} VALUES (:i, :n, :team, :t)", i=i, n=f"Customer {i}", team=f"team{i}", t=t0)
        db.run("INSERT INTO {tickets} VALUES (:i, :a, 'open', :b, :t)", i=10 + i, a=i, b=f"ticket of {i}", t=t0)
        db.run("INSERT INTO {payments} VALUES (:i, :a, 9.99, NULL, NULL)", i=100 + i, a=i)


def _source(db: Db, **options: Any) -> SqlSource:
    tables = (SqlTable("accounts", "id", updated_at="updated_at"),
              SqlTable("tickets", "account_id", updated_at="updated_at"),
              SqlTable("payments", "account_id"))
    return SqlSource(name="crm", url=db.url, tables=tables, db_schema=db.schema, **options)


@pytest.fixture
def watch(ledger: Ledger, settings: Settings) -> Iterator[Callable[[SqlSource], SqlWatcher]]:
    made: list[SqlWatcher] = []

    def make(source: SqlSource) -> SqlWatcher:
        ledger.save_source(source)
        watcher = SqlWatcher(source, ledger, settings)
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def _hashes(ledger: Ledger) -> dict[str, str | None]:
    return {k: v.observed_hash for k, v in ledger.known_items("crm").items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_inserts_updates_and_deletes_become_changes(backend: str, make_db: Callable[[str], Db], ledger: Ledger,
                                                    watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    watcher = watch(_source(db))
    first = watcher.scan()
    assert (first.seen, first.changed, first.errors) == (3, 3, 0), watcher.error
    assert sorted(_hashes(ledger)) == ["1", "2", "3"]
    assert watcher.scan().changed == 0 and watcher.poll().changed == 0, "nothing changed: nothing observed"

    before = _hashes(ledger)
    db.run("UPDATE {tickets} SET status = 'closed', updated_at = :t WHERE ticket_id = 12", t=LATER)
    db.run("INSERT INTO {accounts} VALUES (4, 'Customer 4', 'team4', :t)", t=LATER)
    polled = watcher.poll()
    assert (polled.changed, polled.hashed) == (2, 2), "the watermark poll re-hashes only the touched items"
    after = _hashes(ledger)
    assert after["2"] != before["2"] and after["1"] == before["1"] and "4" in after

    db.run("UPDATE {tickets} SET updated_at = :t WHERE ticket_id = 11", t=LATER + timedelta(seconds=5))
    assert watcher.poll().changed == 0, "a touch that changes no content is not a change"
    assert watcher.poll().hashed == 1, "the mark lags one poll: late commits of that moment are seen"
    assert watcher.poll().hashed == 0

    db.run("DELETE FROM {payments} WHERE payment_id = 101")  # no updated_at: only the full diff sees it
    db.run("DELETE FROM {tickets} WHERE account_id = 3")
    db.run("DELETE FROM {accounts} WHERE id = 3")
    assert watcher.poll().changed == 0
    full = watcher.scan()
    assert (full.changed, full.deleted) == (1, 1)
    assert "3" not in ledger.known_items("crm") or ledger.known_items("crm")["3"].observed_hash is None
    assert watcher.scan().deleted == 0, "a recorded deletion is not recorded again"


def test_a_table_without_updated_at_and_the_same_hash_from_worker_and_watcher(
        make_db: Callable[[str], Db], ledger: Ledger, watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db("sqlite")
    _create(db)
    source = replace(_source(db), tables=tuple(replace(t, updated_at=None) for t in _source(db).tables))
    watcher = watch(source)
    assert watcher.scan().changed == 3
    assert watcher.poll().hashed == 0, "no updated_at anywhere: polls read nothing"
    db.run("UPDATE {tickets} SET body = 'edited' WHERE ticket_id = 11")
    assert watcher.scan().changed == 1
    found = read_item(source, "1", engine=open_engine(source))
    assert found is not None and found[1] == ledger.known_items("crm")["1"].observed_hash
    assert read_item(source, "99", engine=open_engine(source)) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_nulls_huge_text_and_bad_bytes(backend: str, make_db: Callable[[str], Db], ledger: Ledger,
                                       watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    huge = "x" * 300_000
    db.run("UPDATE {tickets} SET body = :b, status = NULL WHERE ticket_id = 11", b=huge)
    db.run("UPDATE {payments} SET receipt = :r, amount = NULL WHERE payment_id = 101", r=b"\xff\xfe\x00binary")
    source = _source(db)
    watcher = watch(source)
    assert watcher.scan().changed == 3 and watcher.error is None
    rows, _ = read_item(source, "1", engine=open_engine(source)) or ({}, "")
    body = rows["tickets"][0]["body"]
    assert len(body) < 30_000 and "cut: 300000 chars" in body
    assert rows["payments"][0]["receipt"]["$binary"] == 9 and rows["tickets"][0]["status"] is None
    db.run("UPDATE {tickets} SET body = :b WHERE ticket_id = 11", b=huge[:-1] + "y")  # past the cut
    assert watcher.scan().changed == 1, "the hash covers all of a cut value"
    if backend == "sqlite":  # a TEXT cell that is not UTF-8
        path = db.url.split("///", 1)[1]
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE tickets SET body = CAST(x'6f6bff' AS TEXT) WHERE ticket_id = 12")
        report = watcher.scan()
        assert (report.changed, report.errors) == (1, 0)
        rows2, _ = read_item(source, "2", engine=open_engine(source)) or ({}, "")
        assert rows2["tickets"][0]["body"] == "ok\ufffd"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dropped_table_is_a_recorded_error_then_the_watcher_catches_up(
        backend: str, make_db: Callable[[str], Db], ledger: Ledger,
        watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    watcher = watch(_source(db))
    assert watcher.scan().changed == 3
    db.run("ALTER TABLE {tickets} RENAME TO tickets_old" if backend != "mariadb"
           else "RENAME TABLE {tickets} TO " + db.table("tickets_old"))
    report = watcher.poll()
    assert report.errors == 1 and report.deleted == 0, "a missing table is not 'everything deleted'"
    assert watcher.error is not None and "tickets" in watcher.error
    status = {s["name"]: s for s in ledger.status()["sources"]}["crm"]
    assert status["error"] == watcher.error and "password" not in str(status["path"])
    assert watcher.backoff() > watcher.source.poll_seconds
    assert watcher.scan().errors == 1 and len(ledger.known_items("crm")) == 3
    stuck = ledger.known_items("crm")["2"]  # a task for it ran out of retries during the outage
    assert stuck.id is not None
    ledger.fail_item(stuck.id, "database unreachable", ledger.last_change_id(stuck.id))

    db.run(("ALTER TABLE " + db.table("tickets_old") + " RENAME TO tickets") if backend != "mariadb"
           else "RENAME TABLE " + db.table("tickets_old") + " TO {tickets}")
    db.run("UPDATE {tickets} SET status = 'closed', updated_at = :t WHERE ticket_id = 13", t=LATER)
    db.run("DELETE FROM {payments} WHERE payment_id = 101")  # made while the watcher could not read
    recovered = watcher.poll()  # after an error a poll is a full diff: deletes are caught up too
    assert (recovered.changed, recovered.errors) == (2, 0)
    assert watcher.error is None and {s["name"]: s for s in ledger.status()["sources"]}["crm"]["error"] is None
    assert ledger.known_items("crm")["2"].state == ItemState.PENDING.value, "failed items are queued again"
    assert stuck.id in {c.item_id for c in ledger.due_changes(10, lease_seconds=60)}


def test_a_database_that_is_down_is_an_error_with_backoff(ledger: Ledger,
                                                          watch: Callable[[SqlSource], SqlWatcher]) -> None:
    source = SqlSource(name="crm", url="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere",
                       tables=(SqlTable("accounts", "id"),), poll_seconds=0.5)
    watcher = watch(source)
    delays = []
    for _ in range(3):
        assert watcher.poll().errors == 1
        delays.append(watcher.backoff())
    assert watcher.error is not None and "unreachable" in watcher.error
    assert delays == sorted(delays) and delays[0] < delays[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_watcher_never_writes(backend: str, make_db: Callable[[str], Db],
                                  watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    source = _source(db)
    engine = open_engine(source)
    try:
        with pytest.raises(Unavailable, match=r"(?i)read.only|readonly"), \
                reading(engine, source, "writing") as conn:
            conn.execute(text(f"DELETE FROM {db.table('accounts')}"))
    finally:
        engine.dispose()
    watcher = watch(source)
    watcher.scan()
    if backend != "sqlite":  # the test connects as a superuser / root: more rights than needed
        assert watcher.warning is not None and "SELECT" in watcher.warning


def test_the_thread_polls_and_wakes_the_scheduler(make_db: Callable[[str], Db], ledger: Ledger,
                                                  settings: Settings) -> None:
    db = make_db("sqlite")
    _create(db)
    woken: list[int] = []
    source = replace(_source(db), poll_seconds=0.05)
    ledger.save_source(source)
    watchers = Watchers([source], ledger, settings, on_change=lambda: woken.append(1))
    watchers.start()
    try:
        watchers.scan_all()
        assert woken and isinstance(watchers.get("crm"), SqlWatcher)
        before = _hashes(ledger)["1"]
        db.run("UPDATE {accounts} SET name = 'Renamed', updated_at = :t WHERE id = 1", t=LATER)
        wait_for(lambda: _hashes(ledger)["1"] != before, timeout=10, what="the poll thread to see the rename")
    finally:
        watchers.stop()


def test_listen_notify_fast_path(make_db: Callable[[str], Db], ledger: Ledger,
                                 watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db("postgresql")
    _create(db)
    source = replace(_source(db), listen=True, poll_seconds=60, full_diff_seconds=600)
    with db.engine.begin() as conn:  # the admin installs what `sleepd sql-triggers` prints
        conn.exec_driver_sql(trigger_sql(source))
    watcher = watch(source)
    watcher.scan()
    watcher.start()
    before = _hashes(ledger)["2"]
    wait_for(lambda: watcher._listener is not None, timeout=10, what="LISTEN")
    db.run("DELETE FROM {payments} WHERE payment_id = 102")  # no updated_at: only a notification names it
    wait_for(lambda: _hashes(ledger)["2"] != before, timeout=10, what="the notification to re-hash account 2")


def test_access_from_a_column(make_db: Callable[[str], Db], ledger: Ledger, settings: Settings,
                              embedder: Embedder, watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db("sqlite")
    _create(db)
    db.run("UPDATE {accounts} SET team = 'support, billing' WHERE id = 1")
    source = replace(_source(db), access_column="accounts.team")
    watch(source).scan()
    svc = Service(settings, ledger, _null_index(settings), embedder)
    enrich_pending(svc, embedder)
    with ledger.read() as s:
        access = {json.dumps(sorted(json.loads(r.access))) for r in s.exec(select(RecordRow)).all()
                  if r.path == "1"}
    assert access == {json.dumps(["billing", "support"])}
    svc.close()


def _null_index(settings: Settings) -> Any:
    from sleepd.index import open_index

    return open_index(settings.home, 384, None)


def _count_published(outcomes: list[Any]) -> int:
    return sum(1 for o in outcomes if o.status == "published")


def test_the_same_content_is_never_enriched_twice(make_db: Callable[[str], Db], ledger: Ledger,
                                                  settings: Settings, embedder: Embedder,
                                                  watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db("sqlite")
    _create(db)
    watcher = watch(_source(db))
    watcher.scan()
    svc = Service(settings, ledger, _null_index(settings), embedder)
    try:
        assert _count_published(enrich_pending(svc, embedder)) == 4  # three accounts and the source overview
        watcher.scan()
        assert enrich_pending(svc, embedder) == [], "rescanning unchanged rows queues nothing"
        # the task runs after the rows changed again: it publishes what is there now, once
        db.run("UPDATE {tickets} SET status = 'waiting', updated_at = :t WHERE ticket_id = 11", t=LATER)
        watcher.poll()
        db.run("UPDATE {tickets} SET status = 'closed', updated_at = :t WHERE ticket_id = 11",
               t=LATER + timedelta(seconds=1))
        assert _count_published(enrich_pending(svc, embedder)) == 1
        watcher.poll()  # observes 'closed', which the task already published
        outcomes = enrich_pending(svc, embedder)
        assert [o.status for o in outcomes] == ["unchanged"]
        item = ledger.known_items("crm")["1"]
        assert item.observed_hash == item.enriched_hash and item.state == ItemState.ENRICHED.value
        # a change undone before the worker ran: nothing new to publish
        db.run("UPDATE {tickets} SET status = 'waiting', updated_at = :t WHERE ticket_id = 12",
               t=LATER + timedelta(seconds=2))
        assert watcher.poll().changed == 1
        db.run("UPDATE {tickets} SET status = 'open' WHERE ticket_id = 12")
        assert [o.status for o in enrich_pending(svc, embedder)] == ["unchanged"]
    finally:
        svc.close()


# -- configuration and CLI ----------------------------------------------------------------------

def test_sql_sources_in_toml_round_trip_through_the_ledger(tmp_path: Path, ledger: Ledger) -> None:
    config = tmp_path / "sleepd.toml"
    config.write_text('''
[[sources]]
kind = "sql"
name = "retail"
url = "postgresql+psycopg2://reader:secret@db.example/shop"
key = "users.user_id"
tables = ["orders.user_id", {name = "tickets", key = "customer", updated_at = "changed", id = "ticket_no"}]
updated_at = {users = "updated_at", orders = "updated_at"}
schema = "retail"
access_column = "users.team"
poll_seconds = 2

[[sources]]
path = "."
''')
    settings = load_settings({"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)})
    sql = settings.sources[0]
    assert isinstance(sql, SqlSource)
    assert [(t.name, t.key, t.updated_at, t.id) for t in sql.tables] == [
        ("users", "user_id", "updated_at", None), ("orders", "user_id", "updated_at", None),
        ("tickets", "customer", "changed", "ticket_no")]
    assert (sql.db_schema, sql.poll_seconds, sql.profile, sql.access_column) == ("retail", 2.0, "accounts",
                                                                                 "users.team")
    for source in settings.sources:
        ledger.save_source(source)
    assert {s.name: s for s in ledger.sources()}["retail"] == sql
    assert "secret" not in json.dumps(ledger.status()["sources"])


@pytest.mark.parametrize(("body", "fragment"), [
    ('url = "sqlite:///x.db"', "key' is missing"),
    ('url = "sqlite:///x.db"\nkey = "users"', "'table.column'"),
    ('url = "sqlite:///x.db"\nkey = "users.id"\nupdated_at = {orders = "t"}', "not watched"),
    ('url = "oracle://x/y"\nkey = "users.id"', "Supported"),
    ('key = "users.id"', "url' is missing"),
    ('url = "sqlite:///x.db"\nkey = "users.id"\nprofile = "code"', "profile"),
    ('url = "sqlite:///x.db"\nkey = "users.id"\npoll_seconds = 0', "positive"),
    ('url = "sqlite:///x.db"\nkey = "users.id"\nquerry = "select 1"', "unknown keys"),
    ('url = "sqlite:///x.db"\nname = "q"\nkey = "id"\nquery = "select 1; drop table users"', "single SELECT"),
    ('url = "sqlite:///x.db"\nname = "q"\nkey = "id"\nquery = "delete from users"', "single SELECT"),
    ('url = "sqlite:///x.db"\nname = "q"\nkey = "users.id"\nquery = "select 1"', "result column"),
    ('url = "sqlite:///x.db"\nname = "q"\nkey = "id"\nquery = "select 1"\ntables = ["a.b"]', "only table"),
    ('url = "sqlite:///x.db"\nkey = "users.id"\naccess_lookup = {table = "acl"}', "access_lookup"),
    ('url = "sqlite:///x.db"\nkey = "users.id"\naccess_lookup = {table = "acl", key = "u", column = "p; x"}',
     "plain identifier"),
    ('url = "postgresql://u:pw@db/x"\nkey = "users.id"\npassword_env = "PW"', "leave the password out"),
    ('url = "sqlite:///x.db"\nkey = "users.id; drop"', "'table.column'"),
])
def test_bad_sql_sources_stop_start_up_naming_the_key(tmp_path: Path, body: str, fragment: str) -> None:
    config = tmp_path / "sleepd.toml"
    config.write_text(f'[[sources]]\nkind = "sql"\n{body}\n')
    with pytest.raises(ConfigError, match=fragment) as info:
        load_settings({"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)})
    assert "sources[0]" in info.value.message


def test_cli_adds_an_sql_source_and_prints_triggers(tmp_path: Path) -> None:
    env = {"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()
    result = runner.invoke(cli, ["sources", "add", "--sql", "postgresql://reader:pw@db/shop", "--key",
                                 "users.user_id", "--table", "orders.user_id", "--updated-at",
                                 "orders.updated_at", "--schema", "retail", "--name", "shop"], env=env)
    assert result.exit_code == 0, result.output
    assert "added source shop" in result.output and "pw" not in result.output
    listed = runner.invoke(cli, ["sources", "list"], env=env)
    assert "shop\tsql" in listed.output
    triggers = runner.invoke(cli, ["sql-triggers", "shop"], env=env)
    assert triggers.exit_code == 0, triggers.output
    assert 'CREATE TRIGGER "sleepd_sleepd_shop_orders"' in triggers.output
    assert '"retail"."orders"' in triggers.output and "pg_notify" in triggers.output
    bad = runner.invoke(cli, ["sources", "add", "--sql", "sqlite:///x.db"], env=env)
    assert bad.exit_code != 0 and "--key" in bad.output


# -- tau2 retail end to end ---------------------------------------------------------------------

#: the customer of the query and a few others, so retrieval has to choose
RETAIL_USERS = ["yusuf_rossi_9620", "ivan_rossi_9776", "yusuf_khan_2015", "noah_brown_6181", "james_li_5688",
                "mei_kovacs_8020"]


def test_tau2_retail_end_to_end(tmp_path: Path, settings: Settings, embedder: Embedder) -> None:
    url = f"sqlite:///{tmp_path / 'retail.db'}"
    counts = load_tau2_retail(url, users=RETAIL_USERS)
    assert counts["users"] == len(RETAIL_USERS) and counts["orders"] > len(RETAIL_USERS)
    source = tau2_retail_source(url, poll_seconds=0.1)
    svc = Service.open(settings)
    svc._embedder = embedder
    svc.ledger.save_source(source)
    watcher = SqlWatcher(source, svc.ledger, settings)
    admin = Principal("root", admin=True)
    try:
        assert watcher.scan().changed == len(RETAIL_USERS)
        outcomes = enrich_pending(svc, embedder)
        assert {o.status for o in outcomes} == {"published"}
        q = "customer Yusuf Rossi, zip 19122, wants to exchange the keyboard from order #W2378156"
        body = svc.query(q, 1024, admin).as_dict()
        assert body["tokens_used"] <= 1024
        brief = next(r for r in body["records"] if r["kind"] == "account")
        assert brief["item"] == "yusuf_rossi_9620" and "Mechanical Keyboard" in brief["text"]
        assert {"path": "orders:#W2378156", "start_line": 1, "end_line": 1} in brief["evidence"]
        assert body["records"][0]["item"] == "yusuf_rossi_9620", body["records"][:3]

        # the order changes in the database; the next query after idle time shows it
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE orders SET status = 'exchange requested', updated_at = :t "
                              "WHERE order_id = '#W2378156'"), {"t": LATER})
        engine.dispose()
        assert watcher.poll().changed == 1
        assert [o.status for o in enrich_pending(svc, embedder)] == ["published"]
        after = svc.query(q, 1024, admin).as_dict()
        texts = "\n".join(r["text"] for r in after["records"] if r["item"] == "yusuf_rossi_9620")
        assert "#W2378156 exchange requested" in texts and all(r["fresh"] for r in after["records"])
    finally:
        watcher.stop()
        svc.close()
        svc.ledger.close()


def test_sql_errors_from_the_worker_are_retryable(tmp_path: Path) -> None:
    source = SqlSource(name="gone", url=f"sqlite:///{tmp_path / 'missing.db'}", tables=(SqlTable("users", "id"),))
    with pytest.raises(Unavailable, match="source gone"):
        read_item(source, "1", engine=open_engine(source))
    assert item_hash({"users": []}) != item_hash({"users": [{"id": 1}]})


# -- query sources, access lookup tables, stored watermarks, passwords from the environment ------

def _query_source(db: Db, **options: Any) -> SqlSource:
    """Accounts joined to their tickets: several result rows per account."""
    query = (f"SELECT a.id AS account_id, a.name, t.ticket_id, t.status, t.updated_at\n"
             f"FROM {db.table('accounts')} a JOIN {db.table('tickets')} t ON t.account_id = a.id"
             "  -- open and closed\n;")
    return SqlSource(name="crm", url=db.url, tables=(SqlTable("crm", "account_id", updated_at="updated_at",
                                                              id="ticket_id"),), query=query, **options)


def _as_configured(source: SqlSource) -> SqlSource:
    from sleepd.settings import check_sql_source

    return check_sql_source(source)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_source_declared_by_a_query(backend: str, make_db: Callable[[str], Db], ledger: Ledger,
                                      watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    db.run("INSERT INTO {tickets} VALUES (21, 1, 'open', 'second ticket of 1', :t)", t=datetime(2025, 1, 1))
    source = _as_configured(_query_source(db, batch_size=2))  # key ranges over DISTINCT keys
    watcher = watch(source)
    first = watcher.scan()
    assert (first.seen, first.changed, first.errors) == (3, 3, 0), watcher.error
    found = read_item(source, "1", engine=open_engine(source))
    assert found is not None and len(found[0]["crm"]) == 2, "one item is every result row of its key"
    assert found[1] == _hashes(ledger)["1"], "the worker reads the item through the same query"

    before = _hashes(ledger)
    db.run("UPDATE {tickets} SET status = 'closed', updated_at = :t WHERE ticket_id = 21", t=LATER)
    polled = watcher.poll()
    assert (polled.changed, polled.hashed) == (1, 1), "the watermark poll through the subquery"
    assert _hashes(ledger)["1"] != before["1"] and _hashes(ledger)["2"] == before["2"]
    db.run("DELETE FROM {tickets} WHERE account_id = 3")
    assert watcher.poll().deleted == 0
    full = watcher.scan()
    assert (full.changed, full.deleted) == (0, 1) and _hashes(ledger)["3"] is None

    doc = json.loads(account_document(source, "1", found[0]))
    drafts = enrich_account("1", json.dumps(doc))
    assert any("21" in d.text for d in drafts if d.kind.value == "account"), "the second row is related"

    if backend == "postgresql":  # a query that would write fails in the read-only transaction
        writer = replace(source, query=f"WITH gone AS (DELETE FROM {db.table('accounts')} RETURNING id) "
                                       "SELECT id AS account_id FROM gone", tables=(SqlTable("crm", "account_id"),))
        assert watch(writer).scan().errors == 1
        with db.engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {db.table('accounts')}")).scalar() == 3


def _create_acl(db: Db) -> None:
    Table("acl", MetaData(schema=db.schema), Column("user_id", Integer, index=True),
          Column("principal", String(50)), Column("changed_at", DateTime, index=True)).create(db.engine)
    for user, who in ((1, "alice"), (1, "bob"), (2, "alice")):
        db.run(f"INSERT INTO {db.table('acl')} VALUES (:u, :p, :t)", u=user, p=who, t=datetime(2025, 1, 1))


def _items_seen(svc: Service, who: str, aggregates: bool = False) -> set[str]:
    """The accounts ``who`` gets records of (and with ``aggregates``, the cross-item records too)."""
    body = svc.query("Customer ticket of account", 4096, Principal(who)).as_dict()
    return {r["item"] for r in body["records"] if aggregates or not r["item"].startswith("@")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_access_from_a_lookup_table(backend: str, make_db: Callable[[str], Db], ledger: Ledger,
                                    settings: Settings, embedder: Embedder,
                                    watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    _create_acl(db)
    lookup = SqlAccessLookup(table="acl", key="user_id", column="principal", updated_at="changed_at")
    watcher = watch(_source(db, access_lookup=lookup))
    assert watcher.scan().changed == 3
    svc = Service(settings, ledger, _null_index(settings), embedder)
    try:
        enrich_pending(svc, embedder)
        assert _items_seen(svc, "alice") == {"1", "2"} and _items_seen(svc, "bob") == {"1"}
        assert _items_seen(svc, "carol") == set(), "an item with no lookup row is for admins only"

        db.run(f"DELETE FROM {db.table('acl')} WHERE principal = 'bob'")  # a revocation: the full diff sees it
        db.run(f"INSERT INTO {db.table('acl')} VALUES (3, 'carol', :t)", t=LATER)  # a grant: the poll sees it
        assert (watcher.poll().changed, watcher.scan().changed) == (1, 1)
        assert _count_published(enrich_pending(svc, embedder)) >= 2, "both items re-published (and overviews)"
        assert _items_seen(svc, "bob", aggregates=True) == set(), "a revoked principal sees nothing of it"
        assert _items_seen(svc, "alice") == {"1", "2"} and _items_seen(svc, "carol") == {"3"}
    finally:
        svc.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_watermarks_survive_a_restart(backend: str, make_db: Callable[[str], Db], ledger: Ledger,
                                      settings: Settings, watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db(backend)
    _create(db)
    source = _source(db)
    first = watch(source)
    assert first.scan().seen == 3
    assert first.rescan().seen == 0, "the periodic rescan diffs only when full_diff_seconds are up"
    db.run("UPDATE {tickets} SET status = 'closed', updated_at = :t WHERE ticket_id = 12", t=LATER)
    assert first.poll().changed == 1
    first.stop()

    db.run("UPDATE {accounts} SET name = 'Renamed', updated_at = :t WHERE id = 3", t=LATER)  # while stopped
    restarted = watch(source).scan()
    assert (restarted.seen, restarted.changed) == (2, 1), "a poll from the stored marks, not a full diff"
    assert ledger.get_meta("sql_watermark:crm:tickets") is not None

    db.run("ALTER TABLE {accounts} ADD COLUMN tier INTEGER")  # the shape changed: every hash may change
    again = watch(source).scan()
    assert (again.seen, again.changed) == (3, 3), "a changed shape means a full diff at start"
    due_watcher = watch(replace(source, full_diff_seconds=0.001))
    assert due_watcher.scan().seen == 3, "a full diff that is due runs at start"
    time.sleep(0.01)
    assert due_watcher.rescan().seen == 3, "and again at the periodic rescan"
    other = watch(replace(source, name="crm2"))
    assert other.scan().seen == 3, "no stored marks: a full diff"
    ledger.purge(source="crm")  # a purged source added again starts over with a full diff
    assert ledger.get_meta("sql_watermark:crm:tickets") is None
    assert ledger.get_meta("sql_watermark:crm2:tickets") is not None


def test_the_password_comes_from_an_environment_variable(make_db: Callable[[str], Db], ledger: Ledger,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         watch: Callable[[SqlSource], SqlWatcher]) -> None:
    db = make_db("postgresql")
    _create(db)
    source = _as_configured(_source(db, password_env="CRM_DB_PASSWORD"))
    watcher = watch(source)
    assert watcher.scan().errors == 1 and "CRM_DB_PASSWORD" in (watcher.error or "")
    monkeypatch.setenv("CRM_DB_PASSWORD", "s3cret-from-env")  # local trust auth accepts any password
    assert "s3cret-from-env" in source.connect_url() and "s3cret" not in json.dumps(source.as_dict())
    assert watch(source).scan().changed == 3

    env = {"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    result = CliRunner().invoke(cli, ["sources", "add", "--sql", "postgresql://reader@db/shop", "--name", "shop",
                                      "--query", "SELECT * FROM orders", "--key", "user_id", "--updated-at",
                                      "updated_at", "--access-lookup", "acl.user_id.principal",
                                      "--password-env", "SHOP_DB_PASSWORD"], env=env)
    assert result.exit_code == 0, result.output
    stored = Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    shop = stored.get_source("shop")
    stored.close()
    assert isinstance(shop, SqlSource) and shop.password_env == "SHOP_DB_PASSWORD" and shop.query
    assert shop.access_lookup == SqlAccessLookup("acl", "user_id", "principal")
    assert shop.root.updated_at == "updated_at"


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb into tmp_path, run as the ``postgres`` user on a free
    port), so the outage test stops that one and never the machine's shared server."""

    def __init__(self, root: Path) -> None:
        import glob
        import shutil

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins or not shutil.which("runuser"):
            unavailable("PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb) and runuser")
        self.bin = Path(bins[-1]).parent
        self.data = root / "pgdata"
        self.port = free_port()
        root.mkdir(mode=0o755)  # the postgres user walks into tmp_path
        for parent in root.parents:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
        self.data.mkdir()
        shutil.chown(self.data, "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                          "--no-sync")
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        import subprocess

        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120)

    def ctl(self, action: str) -> None:
        """Start or stop it; ``start`` waits (-w) until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data}"
        extra = ["-o", options, "-l", str(self.data / "server.log")] if action == "start" else ["-m", "fast"]
        self._as_postgres(str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-w", "-t", "60", *extra)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(tmp_path / "pg")
    server.ctl("start")
    yield server
    if server.running():
        server.ctl("stop")


def test_a_postgresql_restart_is_an_error_then_the_watcher_catches_up(
        private_pg: PrivatePostgres, ledger: Ledger, watch: Callable[[SqlSource], SqlWatcher]) -> None:
    engine = create_engine(private_pg.url, pool_pre_ping=True)
    db = Db(private_pg.url, None, engine)
    try:
        _create(db)
        watcher = watch(_source(db))
        assert watcher.scan().changed == 3
        private_pg.ctl("stop")
        try:
            report = watcher.poll()
            assert report.errors == 1 and report.deleted == 0, "a database that is down is not 'everything deleted'"
            assert watcher.error is not None
            assert {s["name"]: s for s in ledger.status()["sources"]}["crm"]["error"] == watcher.error
        finally:
            private_pg.ctl("start")  # returns once the server accepts connections
        db.run("UPDATE {tickets} SET status = 'closed', updated_at = :t WHERE ticket_id = 12", t=LATER)
        recovered = watcher.poll()
        assert (recovered.changed, recovered.errors) == (1, 0) and watcher.error is None
        assert {s["name"]: s for s in ledger.status()["sources"]}["crm"]["error"] is None
    finally:
        engine.dispose()
