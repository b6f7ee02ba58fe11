"""The scheduler over a real ledger: when it waits (and says why), what goes first, how much is in
flight, and the bound on staleness that keeps a busy machine from starving enrichment.

The scheduler's ``send`` is where Celery would take the batch; here it records the batches, so
the tests read exactly what the scheduler handed out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from sleepd import defaults
from sleepd.cli import cli
from sleepd.cli.status import scheduler_line as _scheduler_line
from sleepd.errors import ConfigError
from sleepd.ledger import Ledger
from sleepd.scheduler import Scheduler, SchedulerState
from sleepd.schema import ChangeRow, QueryLogRow
from sleepd.settings import FileSource, Settings, load_settings
from tests.helpers import wait_for

#: a load limit no machine reaches, so only the query rule decides (the load rule has its own test)
NO_LOAD_LIMIT = 10_000.0


class Broker:
    """Records what the scheduler hands out, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, bool]]] = []

    def __call__(self, batch: list[tuple[int, bool]]) -> None:
        self.batches.append(batch)

    @property
    def items(self) -> list[int]:
        return [item for batch in self.batches for item, _ in batch]


def _changes(ledger: Ledger, source: str, *keys: str) -> dict[str, int]:
    ledger.save_source(FileSource(name=source, path=Path("/nonexistent") / source))
    for key in keys:
        assert ledger.observe(source, key, f"hash-of-{key}", 10, 1)
    return {k: i.id for k, i in ledger.known_items(source).items() if i.id is not None}


def _question(ledger: Ledger) -> None:
    now = time.time()
    ledger.log_query(QueryLogRow(at=now, principal="assistant", query="what changed?", budget=512,
                                 tokens_used=100, n_records=3, latency_ms=5.0))


@pytest.fixture
def busy_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(idle_seconds=10.0, busy_load_per_core=NO_LOAD_LIMIT)


def test_recent_queries_hold_changes_back_and_say_why(ledger: Ledger, busy_settings: Settings) -> None:
    _changes(ledger, "repo", "a.py", "b.py")
    for _ in range(3):
        _question(ledger)
    broker = Broker()
    scheduler = Scheduler(ledger, busy_settings, broker)
    assert scheduler.tick() == 0 and broker.batches == []
    assert scheduler.state == SchedulerState.WAITING_FOR_IDLE
    assert scheduler.reason == "3 queries in the last 10 s"
    status = scheduler.describe()
    assert status["state"] == "waiting_for_idle" and status["reason"] == "3 queries in the last 10 s"
    assert status["idle"] is False
    [repo] = status["queue"]
    assert repo["source"] == "repo" and repo["pending"] == 2 and repo["max_staleness_s"] == 60.0
    assert 0 <= repo["oldest_age_s"] < 60 and 0 < repo["forced_in_s"] <= 60
    assert status["oldest_pending_age_s"] == repo["oldest_age_s"] and status["forced_in_s"] == repo["forced_in_s"]


def test_an_idle_machine_gets_everything(ledger: Ledger, make_settings: Callable[..., Settings]) -> None:
    ids = _changes(ledger, "repo", "a.py", "b.py")
    broker = Broker()
    scheduler = Scheduler(ledger, make_settings(idle_seconds=10.0, busy_load_per_core=NO_LOAD_LIMIT), broker)
    assert scheduler.tick() == 2  # no query ever: idle
    assert sorted(broker.items) == sorted(ids.values())
    assert scheduler.state == SchedulerState.DISPATCHING and scheduler.reason is None
    assert scheduler.describe()["queue"] == []


def test_a_loaded_machine_waits_and_says_its_load(ledger: Ledger, make_settings: Callable[..., Settings]) -> None:
    _changes(ledger, "repo", "a.py")
    scheduler = Scheduler(ledger, make_settings(idle_seconds=10.0, busy_load_per_core=0.0), Broker())
    assert scheduler.tick() == 0
    assert scheduler.state == SchedulerState.WAITING_FOR_IDLE
    assert scheduler.reason is not None and scheduler.reason.startswith("load ") and "cores)" in scheduler.reason


def test_refreshes_go_first_and_even_when_busy(ledger: Ledger, busy_settings: Settings,
                                               make_settings: Callable[..., Settings]) -> None:
    ids = _changes(ledger, "repo", "a.py", "b.py", "c.py")
    assert ledger.request_refresh("repo", "c.py", force=True) == 1
    _question(ledger)
    broker = Broker()
    scheduler = Scheduler(ledger, busy_settings, broker)
    assert scheduler.tick() == 1 and broker.batches == [[(ids["c.py"], True)]]
    assert scheduler.state == SchedulerState.WAITING_FOR_IDLE  # the others wait

    # idle, one slot: of two waiting changes, a refresh goes before the older plain change
    assert ledger.request_refresh("repo", "b.py", force=False) == 1
    broker = Broker()
    scheduler = Scheduler(ledger, make_settings(idle_seconds=0.0, max_in_flight=2,
                                                busy_load_per_core=NO_LOAD_LIMIT), broker)
    assert scheduler.tick() == 1 and broker.items == [ids["b.py"]]


def test_in_flight_is_bounded(ledger: Ledger, make_settings: Callable[..., Settings]) -> None:
    _changes(ledger, "repo", *(f"f{i}.py" for i in range(5)))
    settings = make_settings(idle_seconds=0.0, max_in_flight=2, busy_load_per_core=NO_LOAD_LIMIT)
    broker = Broker()
    scheduler = Scheduler(ledger, settings, broker)
    assert scheduler.tick() == 2
    assert scheduler.tick() == 0, "two tasks in flight already"
    assert ledger.in_flight(settings.lease_seconds) == 2 and len(broker.items) == 2
    assert scheduler.describe()["queue"][0]["pending"] == 3


def test_a_change_past_max_staleness_goes_while_queries_keep_arriving(
        ledger: Ledger, make_settings: Callable[..., Settings]) -> None:
    # 3 s: the change is not yet due at the first tick even if a loaded machine stalls this test a while
    settings = make_settings(idle_seconds=10.0, max_staleness_seconds=3.0, busy_load_per_core=NO_LOAD_LIMIT)
    ids = _changes(ledger, "repo", "a.py")
    with ledger.read() as s:  # the change's own time: the clock the scheduler measures staleness by
        observed = s.exec(select(ChangeRow.observed_at).where(ChangeRow.item_id == ids["a.py"])).one()
    broker = Broker()
    scheduler = Scheduler(ledger, settings, broker)
    _question(ledger)
    assert scheduler.tick() == 0 and scheduler.state == SchedulerState.WAITING_FOR_IDLE
    questions = 1

    def forced() -> bool:
        nonlocal questions
        _question(ledger)  # an assistant that never stops asking
        questions += 1
        return scheduler.tick() == 1

    wait_for(forced, timeout=15, interval=0.1, what="the stale change forced out while queries arrive")
    assert time.time() - observed >= defaults.STALE_DISPATCH_SHARE * 3.0, \
        "forced only once it had waited its share of max staleness, early enough to be fresh within it"
    assert broker.items == [ids["a.py"]] and questions >= 2  # a question came just before each tick
    assert scheduler.state == SchedulerState.FORCING_STALE and scheduler.forced == 1
    assert scheduler.reason is not None and "queries in the last 10 s" in scheduler.reason


def test_max_staleness_per_source(ledger: Ledger, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(idle_seconds=10.0, max_staleness_seconds=3600.0, busy_load_per_core=NO_LOAD_LIMIT,
                             source_staleness=(("hot", 0.5),))
    cold = _changes(ledger, "cold", "a.md")
    hot = _changes(ledger, "hot", "b.md")
    broker = Broker()
    scheduler = Scheduler(ledger, settings, broker)

    def hot_forced() -> bool:
        _question(ledger)
        return scheduler.tick() > 0

    wait_for(hot_forced, timeout=15, interval=0.1, what="the hot source's change forced")
    assert broker.items == [hot["b.md"]] and cold["a.md"] not in broker.items
    [queue] = scheduler.describe()["queue"]
    assert queue["source"] == "cold" and queue["max_staleness_s"] == 3600.0
    assert queue["forced_in_s"] > defaults.STALE_DISPATCH_SHARE * 3600 - 100


def test_max_staleness_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "sleepd.toml"
    (tmp_path / "docs").mkdir()
    (tmp_path / "code").mkdir()
    config.write_text('[sleepd]\nmax_staleness_seconds = 120\n\n[[sources]]\npath = "docs"\n'
                      'max_staleness_seconds = 5\n\n[[sources]]\npath = "code"\n')
    env = {"SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": str(config)}
    settings = load_settings(env)
    assert settings.max_staleness("docs") == 5.0 and settings.max_staleness("code") == 120.0
    assert load_settings({**env, "SLEEPD_MAX_STALENESS_SECONDS": "30"}).max_staleness("code") == 30.0
    assert [s.name for s in settings.sources] == ["docs", "code"]
    with pytest.raises(ConfigError, match=r"sources\[0\].max_staleness_seconds.*'soon'"):
        config.write_text('[[sources]]\npath = "docs"\nmax_staleness_seconds = "soon"\n')
        load_settings(env)
    with pytest.raises(ConfigError, match=r"'max_staleness_seconds' has value 0\.0"):
        load_settings({**env, "SLEEPD_MAX_STALENESS_SECONDS": "0"})


def test_status_shows_the_scheduler_in_words_and_the_queue_as_a_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    led = Ledger(f"sqlite:///{home / 'ledger.db'}")
    _changes(led, "proj", "a.py", "b.py")
    led.close()
    done = CliRunner().invoke(cli, ["status"], env={"SLEEPD_HOME": str(home), "SLEEPD_CONFIG": ""},
                              catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "changes: 2 pending" in done.output and "daemon: not running" in done.output
    assert "waiting for enrichment" in done.output and "forced in" in done.output
    assert "{" not in done.output, "no Python dict in the human view"
    assert "skipped" in done.output.split("\n")[2], "the sources table counts skipped files apart from failures"
    line = _scheduler_line({"state": "waiting_for_idle", "reason": "3 queries in the last 10 s",
                            "oldest_pending_age_s": 12.2, "forced_in_s": 47.8, "error": None})
    assert line == ("scheduler: waiting for idle (3 queries in the last 10 s); oldest pending change 12 s old, "
                    "enriched anyway in 48 s")
