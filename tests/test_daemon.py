"""The embedded daemon end to end, as a user runs it: `sleepd run` on a folder, then the CLI
(status, query, refresh, purge, check), edits and deletes, bad files, restart."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sleepd.daemon import restart_delay
from sleepd.ledger import Ledger
from tests.helpers import click_repo, free_port, wait_for


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "sleepd", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    if check and done.returncode != 0:
        pytest.fail(f"sleepd {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def query(env: dict[str, str], q: str, budget: int = 1024) -> dict[str, Any]:
    return json.loads(cli(env, "query", q, "--budget", str(budget), "--json").stdout)  # type: ignore[no-any-return]


def status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(cli(env, "status", "--json").stdout)  # type: ignore[no-any-return]


def settled(env: dict[str, str]) -> bool:
    report = status(env)
    items = report["sources"][0]["items"] if report["sources"] else {"pending": 1}
    return items["pending"] == 0 and items["enriched"] > 0 and not report["queue"] and report["index_lag"] == 0


class Running:
    def __init__(self, env: dict[str, str], repo: Path, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sleepd", "run", str(repo)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or cli(env, "check", check=False).returncode == 0,
                 timeout=90, interval=0.5, what="daemon healthy")
        assert self.proc.poll() is None, log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # the load rule is off (test_scheduler tests it): a shared CI machine's load must not decide here;
    # no periodic rescan comes during a test: what it sees comes from the first scan, events or a lift
    return {**os.environ, "SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_API_PORT": str(free_port()),
            "SLEEPD_IDLE_SECONDS": "1", "SLEEPD_DEBOUNCE_SECONDS": "0.3", "SLEEPD_MAX_FILE_BYTES": "200000",
            "SLEEPD_BUSY_LOAD_PER_CORE": "1000", "SLEEPD_RESCAN_SECONDS": "1000000"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return click_repo(tmp_path / "proj", ("core.py", "decorators.py", "termui.py", "utils.py"),
                      {"NOTES.md": "# Notes\n\n## Releases\n\nWe release on Tuesdays.\n"})


@pytest.fixture
def daemon(env: dict[str, str], repo: Path, tmp_path: Path) -> Iterator[Running]:
    running = Running(env, repo, tmp_path / "daemon.log")
    yield running
    if running.proc.poll() is None:
        running.stop()


def test_run_query_edit_delete_and_bad_files(daemon: Running, env: dict[str, str], repo: Path,
                                             tmp_path: Path) -> None:
    wait_for(lambda: settled(env), timeout=180, interval=1.0, what="first pass enriched")
    # the memory says it is ready once the first scan's work is published and indexed, and the
    # daemon's log says so once
    wait_for(lambda: status(env)["daemon"]["ready"], timeout=30, interval=0.5, what="memory ready")
    assert (tmp_path / "daemon.log").read_text().count("first pass done: ") == 1
    body = query(env, "open a file in an editor or a pager for the user", 512)
    assert body["tokens_used"] <= 512 and body["records"]
    files = [r for r in body["records"] if not r["item"].startswith("@aggregate/")]  # maps cite many files
    assert files[0]["item"] in {"termui.py", "utils.py"}
    assert all(r["evidence"] and r["evidence"][0]["path"] == r["item"] for r in files)

    # an edit shows up in the next query after idle time
    with (repo / "utils.py").open("a") as fh:
        fh.write('\n\ndef frobnicate_quaternion(q):\n    """Frobnicate a quaternion into a zebra."""\n'
                 '    return q\n')
    seen: list[object] = []

    def shows_edit() -> bool:
        records = query(env, "frobnicate a quaternion into a zebra", 512)["records"]
        seen[:] = [(r["title"], r["fresh"]) for r in records]
        return any("frobnicate_quaternion" in r["text"] and r["fresh"] for r in records)

    try:
        wait_for(shows_edit, timeout=60, interval=1.0, what="the edit in the next query")
    except BaseException:  # say what the last query returned and where the item stands
        print("last query:", seen, "\nstatus:", json.dumps(status(env), indent=1)[:3000])
        raise

    # a delete removes the file's records
    (repo / "NOTES.md").unlink()
    wait_for(lambda: all(r["item"] != "NOTES.md" for r in query(env, "when do we release?", 2048)["records"]),
             timeout=60, interval=1.0, what="the delete in the next query")

    # bad input: recorded in status, the daemon keeps running; binary files are skipped, not failures
    (repo / "blob.bin.txt").write_bytes(b"\x00\x01binary" * 100)
    (repo / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (repo / "huge.txt").write_text("word " * 100_000)
    (repo / "loop").symlink_to(repo / "loop")

    def failures() -> dict[str, str]:
        return {f["item"]: f["error"] for f in status(env)["sources"][0]["failed"]}

    found = wait_for(lambda: len(failures()) >= 3 and failures(), timeout=60, interval=1.0, what="failures")
    assert isinstance(found, dict)
    assert "blob.bin.txt" not in found
    skipped = wait_for(lambda: {s["item"]: s["reason"] for s in status(env)["sources"][0]["skipped"]["items"]},
                       timeout=60, interval=1.0, what="the skipped binary file")
    assert skipped == {"blob.bin.txt": "binary file (NUL bytes)"}
    assert "UTF-8" in found["latin1.txt"]
    assert "too large" in found["huge.txt"]
    assert cli(env, "check").stdout.strip() == "ok"

    # purge prints its receipt; the purged file no longer answers
    receipt = json.loads(cli(env, "purge", "--path", "termui.py", "--json").stdout)
    assert receipt["items"] == 1 and receipt["records"] > 0 and receipt["index_points"] == receipt["records"]
    assert all(r["item"] != "termui.py" for r in query(env, "show a progress bar", 2048)["records"])
    # the purge sticks: an edit of the purged file is not tracked, until the purge is lifted
    with (repo / "termui.py").open("a") as fh:
        fh.write("\n# edited after the purge\n")
    # a file written after the edit: once the watcher recorded it, it has handled the edit too (its
    # debounce window ends later, and within one window paths are processed in sorted order)
    (repo / "zz-later.md").write_text("# Later\n")
    home_ledger = Ledger(f"sqlite:///{Path(env['SLEEPD_HOME']) / 'ledger.db'}")
    try:
        wait_for(lambda: "zz-later.md" in home_ledger.known_items("proj"), timeout=30, what="the later file seen")
        assert "termui.py" not in home_ledger.known_items("proj"), "the purged file is not tracked again"
        # the later file is enriched in its turn; then nothing is left pending (the purged edit made no change)
        wait_for(lambda: home_ledger.known_items("proj")["zz-later.md"].version > 0, timeout=60, interval=0.5,
                 what="the later file enriched")
    finally:
        home_ledger.close()
    proj = next(s for s in status(env)["sources"] if s["name"] == "proj")
    assert proj["purged"] == ["termui.py"] and proj["items"]["pending"] == 0
    lifted = json.loads(cli(env, "purge", "--path", "termui.py", "--lift", "--json").stdout)
    assert lifted["lifted"] == 1
    (repo / "termui.py").touch()
    with (repo / "termui.py").open("a") as fh:
        fh.write("# tracked again\n")
    wait_for(lambda: any(r["item"] == "termui.py" for r in query(env, "show a progress bar", 2048)["records"]),
             timeout=90, interval=1.0, what="the lifted file back in memory")
    refreshed = cli(env, "refresh", "--path", "core.py", "--force").stdout
    assert "queued 1 items" in refreshed

    assert daemon.stop() == 0
    assert cli(env, "check", check=False).returncode == 1


def test_a_lift_is_at_once_and_refresh_waits_for_fresh_items(env: dict[str, str], tmp_path: Path) -> None:
    """The first pass's progress once done; a lifted glob scanned at once (no periodic rescan comes
    in this test, and the file is not touched again); `refresh --wait` returning once its item is
    fresh, and exiting 1 naming an item that failed."""
    repo = _tiny_repo(tmp_path)
    (repo / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    daemon = Running(env, repo, tmp_path / "daemon.log")
    try:
        wait_for(lambda: status(env)["daemon"]["ready"], timeout=240, interval=1.0, what="memory ready")
        first_pass = status(env)["first_pass"]
        assert (first_pass["state"], first_pass["done"], first_pass["total"], first_pass["eta_s"]) == ("done", 3, 3, 0)
        assert first_pass["rate_per_s"] > 0
        shown = " ".join(cli(env, "status").stdout.split())
        assert "memory ready (first pass " in shown and "first pass: " not in shown  # the progress line went

        assert json.loads(cli(env, "purge", "--path", "NOTES.md", "--json").stdout)["items"] == 1
        lifted = json.loads(cli(env, "purge", "--path", "NOTES.md", "--lift", "--json").stdout)
        assert (lifted["lifted"], lifted["found"], lifted["items"]) == (1, 1, ["tiny:NOTES.md"])
        ledger = Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
        try:
            assert "NOTES.md" in ledger.known_items("tiny"), "tracked again before the command returned"
        finally:
            ledger.close()

        body = json.loads(cli(env, "refresh", "--path", "NOTES.md", "--wait", "--timeout", "120", "--json").stdout)
        assert (body["queued"], body["fresh"], body["waiting"], body["failed"]) == (1, 1, 0, 0)
        assert body["items"][0]["item"] == "NOTES.md" and body["items"][0]["version"] == 1

        done = cli(env, "refresh", "--path", "latin1.txt", "--force", "--wait", "--timeout", "120", check=False)
        assert done.returncode == 1, done.stderr
        assert done.stdout.startswith("queued 1 items for refresh (forced): tiny:latin1.txt")
        assert "1 of 1 items not fresh: tiny:latin1.txt failed (" in done.stderr and "UTF-8" in done.stderr
    finally:
        assert daemon.stop() == 0


def test_restart_finds_changes_made_while_stopped(env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    first = Running(env, repo, tmp_path / "daemon.log")
    wait_for(lambda: settled(env), timeout=180, interval=1.0, what="first pass enriched")
    assert first.stop() == 0
    ledger = Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    versions = {k: i.version for k, i in ledger.known_items("proj").items()}
    (repo / "NOTES.md").write_text("# Notes\n\n## Releases\n\nWe release on Thursdays now.\n")
    second = Running(env, repo, tmp_path / "daemon.log")
    try:
        # wait for the new version itself: the stale fallback already serves the edited text inside
        # the old record, so seeing "Thursdays" in a query does not mean version 2 is published
        wait_for(lambda: ledger.known_items("proj")["NOTES.md"].version > versions["NOTES.md"] and settled(env),
                 timeout=60, interval=0.5, what="the offline edit published")
        records = query(env, "when do we release?", 2048)["records"]
        assert any("Thursdays" in r["text"] and r["fresh"] and r["version"] == versions["NOTES.md"] + 1
                   for r in records if r["item"] == "NOTES.md"), [(r["item"], r["version"]) for r in records]
    finally:
        assert second.stop() == 0
    after = {k: i.version for k, i in ledger.known_items("proj").items()}
    assert after["NOTES.md"] == versions["NOTES.md"] + 1
    assert {k: v for k, v in after.items() if k != "NOTES.md"} == \
        {k: v for k, v in versions.items() if k != "NOTES.md"}, "unchanged files were not enriched again"
    ledger.close()


def test_bad_config_and_bad_path_get_clear_messages(tmp_path: Path) -> None:
    env = {**os.environ, "SLEEPD_HOME": str(tmp_path / "home")}
    config = tmp_path / "sleepd.toml"
    config.write_text("[sleepd]\nidle_seconds = 'soon'\n")
    done = cli({**env, "SLEEPD_CONFIG": str(config)}, "status", check=False)
    assert done.returncode == 2 and "idle_seconds" in done.stderr and "soon" in done.stderr
    config.write_text("[sleepd\n")
    done = cli({**env, "SLEEPD_CONFIG": str(config)}, "status", check=False)
    assert done.returncode == 2 and "not valid TOML" in done.stderr
    done = cli(env, "run", str(tmp_path / "missing"), check=False)
    assert done.returncode == 2 and "not a folder" in done.stderr
    done = cli(env, "query", "", "--json", check=False)
    assert done.returncode == 2 and "non-empty" in done.stderr
    done = cli(env, "query", "x", "--budget", "0", check=False)
    assert done.returncode == 2 and "out of range" in done.stderr


def _tiny_repo(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "NOTES.md").write_text("# Notes\n\n## Releases\n\nWe release on Tuesdays.\n")
    (root / "util.py").write_text('def add(a, b):\n    """Add two numbers."""\n    return a + b\n')
    return root


def _api(env: dict[str, str]) -> httpx.Client:
    """The daemon's API with the local admin token (faster than a CLI process per call)."""
    token = (Path(env["SLEEPD_HOME"]) / "token").read_text().strip()
    return httpx.Client(base_url=f"http://127.0.0.1:{env['SLEEPD_API_PORT']}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_questions_every_half_second_do_not_starve_an_edit(env: dict[str, str], tmp_path: Path) -> None:
    """An assistant that keeps asking holds enrichment back only up to max staleness."""
    env = {**env, "SLEEPD_IDLE_SECONDS": "3", "SLEEPD_MAX_STALENESS_SECONDS": "5"}
    repo = _tiny_repo(tmp_path)
    daemon = Running(env, repo, tmp_path / "daemon.log")
    api = _api(env)
    ledger = Ledger(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    stop = threading.Event()
    asked: list[float] = []

    def ask() -> None:
        with _api(env) as client:
            while not stop.wait(0.5):
                client.post("/v1/query", json={"q": "when do we release?", "budget": 256}).raise_for_status()
                asked.append(time.time())

    asker = threading.Thread(target=ask, daemon=True)
    try:
        wait_for(lambda: settled(env), timeout=180, interval=1.0, what="first pass enriched")
        before = ledger.known_items("tiny")["NOTES.md"].version
        asker.start()
        wait_for(lambda: len(asked) >= 2, timeout=60, what="questions flowing")
        (repo / "NOTES.md").write_text("# Notes\n\n## Releases\n\nWe release on Thursdays now.\n")
        edited = time.time()
        waits: list[str] = []

        def published() -> bool:
            scheduler = api.get("/v1/status").json()["scheduler"]
            if scheduler["state"] in ("waiting_for_idle", "forcing_stale"):
                waits.append(str(scheduler.get("reason")))
            return bool(ledger.known_items("tiny")["NOTES.md"].version > before)

        wait_for(published, timeout=90, interval=0.5, what="the edit published while questions continue")
        done = time.time()
        wait_for(lambda: asked[-1] > done, timeout=30, what="a question after the publish")
        assert asker.is_alive(), "the questions never stopped"
        assert all(later - earlier < 10 for earlier, later in itertools.pairwise(asked) if earlier > edited)
        assert any(reason.endswith("in the last 3 s") for reason in waits), waits
        assert api.get("/v1/status").json()["scheduler"]["forced"] >= 1
        print(f"edit published {done - edited:.1f} s after the edit, {len(asked)} questions so far")
    finally:
        stop.set()
        asker.join(timeout=60)
        api.close()
        ledger.close()
        assert daemon.stop() == 0


def test_a_query_at_start_up_waits_for_the_daemon(env: dict[str, str], tmp_path: Path) -> None:
    """`sleepd run` and `sleepd query` in the same instant: the daemon keeps running, the query
    answers or says the daemon is starting (exit code 3), never opening the index under it."""
    repo = _tiny_repo(tmp_path)
    for attempt in range(3):
        log = (tmp_path / f"daemon-{attempt}.log").open("wb")
        run = subprocess.Popen([sys.executable, "-m", "sleepd", "run", str(repo)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
        asked = subprocess.run([sys.executable, "-m", "sleepd", "query", "when do we release?", "--json"],
                               env=env, capture_output=True, text=True, timeout=180)
        try:
            assert asked.returncode in (0, 3), asked.stderr
            if asked.returncode == 3:
                assert "daemon is starting" in asked.stderr
            else:
                assert "records" in json.loads(asked.stdout)
            wait_for(lambda proc=run: proc.poll() is not None or cli(env, "check", check=False).returncode == 0,
                     timeout=120, interval=0.5, what="daemon healthy")
            assert run.poll() is None, (tmp_path / f"daemon-{attempt}.log").read_text()
            if attempt == 0:  # a second daemon on the same home stops at once, saying why
                second = cli(env, "run", str(repo), check=False)
                assert second.returncode == 2 and "another sleepd daemon already runs" in second.stderr
        finally:
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
            code = run.wait(timeout=60)
            log.close()
        assert code == 0, (tmp_path / f"daemon-{attempt}.log").read_text()


def test_no_daemon_and_no_index_names_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "index").write_text("not a folder")  # the index cannot be opened here
    done = cli({**os.environ, "SLEEPD_HOME": str(home), "SLEEPD_API_PORT": str(free_port())}, "query", "x",
               check=False)
    assert done.returncode == 2 and str(home) in done.stderr and "no daemon answers" in done.stderr


@pytest.mark.parametrize(("previous", "uptime", "expected"), [
    (None, 0.0, 1.0),      # the first restart
    (1.0, 0.1, 2.0),       # crashed at once: twice as long
    (32.0, 0.1, 60.0),     # capped
    (60.0, 0.1, 60.0),
    (8.0, 59.0, 16.0),     # up for less than a minute still counts as crashing
    (60.0, 61.0, 1.0),     # stayed up a minute: from the bottom again
])
def test_worker_restart_backoff(previous: float | None, uptime: float, expected: float) -> None:
    assert restart_delay(previous, uptime) == expected


def test_a_crashing_worker_is_restarted_ever_more_slowly(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "SLEEPD_WORKER_COMMAND": f"{sys.executable} -c 'raise SystemExit(3)'"}
    repo = _tiny_repo(tmp_path)
    log = (tmp_path / "daemon.log").open("wb")
    run = subprocess.Popen([sys.executable, "-m", "sleepd", "run", str(repo)], env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        def restarts() -> int:
            done = cli(env, "status", "--json", check=False)
            report = json.loads(done.stdout) if done.returncode == 0 else {}
            return int(report.get("daemon", {}).get("worker_restarts") or 0)

        wait_for(lambda: run.poll() is not None or restarts() >= 3, timeout=180, interval=1.0,
                 what="three worker restarts")
        assert run.poll() is None, (tmp_path / "daemon.log").read_text()
        daemon_block = status(env)["daemon"]
        # 1 s, 2 s, 4 s, then 8 s: never back to 1 s while the worker keeps crashing
        assert daemon_block["worker_restarts"] >= 3 and daemon_block["worker_restart_delay_s"] >= 4.0
        assert daemon_block["worker_restart_delay_s"] == 2.0 ** (daemon_block["worker_restarts"] - 1) or \
            daemon_block["worker_restart_delay_s"] == 2.0 ** daemon_block["worker_restarts"]
        assert cli(env, "check", check=False).returncode == 1  # the worker is down: unhealthy, said so
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
        log.close()
    assert code == 0


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_the_embedded_worker_keeps_celery_out_of_the_terminal(broker: str, tmp_path: Path,
                                                              request: pytest.FixtureRequest) -> None:
    """The worker as the daemon starts it (the daemon's pid in SLEEPD_PARENT_PID), on either broker
    and as root where the tests run as root: no Celery banner, no warning about running as root,
    no kombu warning about a missing hostname; its own log lines still come through."""
    from sleepd import defaults
    from sleepd.settings import load_settings
    from workers.app import configure

    broker_url = request.getfixturevalue("redis_url") if broker == "redis" else "filesystem://"
    env = {**os.environ, "SLEEPD_HOME": str(tmp_path / "home"), "SLEEPD_CONFIG": "", "SLEEPD_BROKER_URL": broker_url,
           "SLEEPD_PARENT_PID": str(os.getpid())}
    out_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        worker = subprocess.Popen([sys.executable, "-m", "sleepd", "worker"], env=env, stdout=out, stderr=err)
    try:
        configure(load_settings(env)).send_task("sleepd.no_such_task", queue=defaults.QUEUE)
        # a message it cannot run is logged as an error: the worker is up and consuming by then
        wait_for(lambda: worker.poll() is not None or "sleepd.no_such_task" in err_path.read_text(),
                 timeout=120, interval=0.5, what="the worker to take the message")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    shown = out_path.read_text() + err_path.read_text()
    assert "Received unregistered task of type 'sleepd.no_such_task'" in shown, shown
    assert "superuser" not in shown and "[tasks]" not in shown and "[config]" not in shown, shown
    assert "No hostname was supplied" not in shown, shown
