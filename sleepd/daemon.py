"""The embedded daemon: watchers, scheduler, indexer, HTTP API and one child Celery worker,
all under one home folder. SIGTERM or SIGINT stop it gracefully.

A home has two locks. ``daemon.lock`` is the daemon's for its whole life, taken before anything
else (`sleepd run` takes it before it even imports the heavy modules): a CLI command that finds it
held knows a daemon is there, starting or running, and waits for its API instead of opening the
index. ``index.lock`` is held by whoever has the index open: the daemon, or a CLI command working
locally while no daemon runs (the daemon waits for that command to finish). This module imports
only light modules at the top so the CLI can take and test the locks quickly.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sleepd import defaults
from sleepd.errors import ConfigError, Unavailable
from sleepd.settings import FileSource, Settings

if TYPE_CHECKING:
    import uvicorn

    from sleepd.ledger import Ledger
    from sleepd.scheduler import Scheduler
    from sleepd.service import Service
    from sleepd.watchers import Watchers

__all__ = ["DAEMON_LOCK", "INDEX_LOCK", "Daemon", "DaemonState", "HomeLock", "restart_delay"]

log = logging.getLogger("sleepd.daemon")

#: held by the daemon for its whole life
DAEMON_LOCK = "daemon.lock"
#: held by whoever has the index open (the daemon, or one CLI command while no daemon runs)
INDEX_LOCK = "index.lock"
#: a daemon lock still held after this long belongs to another daemon, not to a CLI probe
DAEMON_LOCK_PROBE_SECONDS = 1.0


class HomeLock:
    """An exclusive ``flock`` on one file of a home folder; released by :meth:`release` or when
    the process ends (so a crashed daemon never leaves a stale lock)."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle: IO[str] | None = handle

    @classmethod
    def try_take(cls, path: Path) -> HomeLock | None:
        """The lock, or None when another process holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(handle)

    @classmethod
    def wait(cls, path: Path, timeout: float) -> HomeLock | None:
        """The lock, waiting up to ``timeout`` seconds for its holder to let go."""
        deadline = time.monotonic() + timeout
        while True:
            lock = cls.try_take(path)
            if lock is not None or time.monotonic() >= deadline:
                return lock
            time.sleep(0.1)

    @staticmethod
    def held(path: Path) -> bool:
        """True when another process holds the lock (probing takes and drops it at once)."""
        if not path.exists():
            return False
        lock = HomeLock.try_take(path)
        if lock is None:
            return True
        lock.release()
        return False

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def take_daemon_lock(home: Path) -> HomeLock:
    """The home's daemon lock, or an error when another daemon has it. A CLI command probing
    the lock (:meth:`HomeLock.held`) holds it for an instant: that is waited out, a daemon is not."""
    lock = HomeLock.wait(home / DAEMON_LOCK, DAEMON_LOCK_PROBE_SECONDS)
    if lock is None:
        raise Unavailable(f"another sleepd daemon already runs with home {home}")
    return lock


def restart_delay(previous: float | None, worker_uptime: float) -> float:
    """How long to wait before restarting a worker that exited after ``worker_uptime`` seconds,
    given the wait before the previous restart (None: none yet). A worker that stayed up for
    ``WORKER_STABLE_SECONDS`` starts the backoff again from the bottom; one that keeps crashing
    waits twice as long each time, up to ``WORKER_MAX_RESTART_SECONDS``. (The daemon's own uptime
    says nothing about the worker: resetting on it restarted a crashing worker every 1.5 s.)"""
    if previous is None or worker_uptime >= defaults.WORKER_STABLE_SECONDS:
        return defaults.WORKER_RESTART_SECONDS
    return min(previous * 2, defaults.WORKER_MAX_RESTART_SECONDS)


class DaemonState(str, Enum):
    """Life cycle of the daemon."""

    #: opening the ledger and index, starting components
    STARTING = "starting"
    #: serving and enriching
    RUNNING = "running"
    #: a stop was requested; components are shutting down
    STOPPING = "stopping"
    #: everything is shut down
    STOPPED = "stopped"


class Daemon:
    #: the components, made by :meth:`start`
    ledger: Ledger
    service: Service
    scheduler: Scheduler
    watchers: Watchers

    def __init__(self, settings: Settings, extra_sources: tuple[FileSource, ...] = (),
                 lock: HomeLock | None = None, extra_access: bool = True) -> None:
        """``lock``: the home's daemon lock when the caller took it already (as `sleepd run` does).
        ``extra_access``: the extra sources' access lists were given (else a known source keeps its own)."""
        self.settings = settings
        self.extra_sources = extra_sources
        self.extra_access = extra_access
        self.state = DaemonState.STOPPED
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = lock
        self._index_lock: HomeLock | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._worker_started = 0.0
        self.worker_restarts = 0
        self.worker_restart_delay: float | None = None
        self._server: uvicorn.Server | None = None
        self.started_at = 0.0
        #: seconds from start until the first scan's work was published and indexed; None before
        self.first_pass_s: float | None = None
        #: items done (enriched or failed) when the daemon started: the first pass's rate counts
        #: only what this daemon does
        self.done_at_start = 0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.state = DaemonState.STARTING
        self.started_at = time.time()
        home = self.settings.home
        if self._lock is None:
            self._lock = take_daemon_lock(home)
        self._index_lock = HomeLock.wait(home / INDEX_LOCK, defaults.DAEMON_START_WAIT_SECONDS)
        if self._index_lock is None:
            raise Unavailable(f"the index in home {home} stayed in use by a sleepd command for "
                              f"{defaults.DAEMON_START_WAIT_SECONDS:g} s")
        from sleepd.ledger import Ledger
        from sleepd.progress import item_counts
        from sleepd.scheduler import Scheduler
        from sleepd.service import Service, declare_sources
        from sleepd.watchers import Watchers

        self.ledger = Ledger(self.settings.database_url)
        declare_sources(self.ledger, self.settings, self.extra_sources, self.extra_access)
        self.done_at_start = item_counts(self.ledger.status())[0]
        self._ensure_token(home)
        self.service = Service.open(self.settings, self.ledger)
        self.service.extra_status = self._extra_status
        # before the API answers: a query meanwhile gets a 503 at once, not a wait on the export
        self.service.model_loading = True
        self._spawn("model", self.service.load_model)
        from workers.app import configure
        from workers.tasks import TASK_NAME, pipeline_version

        celery = configure(self.settings)

        def send(items: list[tuple[int, bool]]) -> None:
            celery.send_task(TASK_NAME, args=[items], queue=defaults.QUEUE, retry=False)

        self.scheduler = Scheduler(self.ledger, self.settings, send, pipeline_version(self.settings))
        self.service.on_refresh = self.scheduler.wake.set
        self.watchers = Watchers(self.ledger.sources(), self.ledger, self.settings, on_change=self.scheduler.wake.set)
        self.service.rescan = self.watchers.scan_now  # a lifted purge is scanned by the running watchers
        self._serve_api()
        self._spawn("first-scan", self._first_scan)
        self._spawn("indexer", lambda: self.service.indexer.run(self.stop_event))
        self._spawn("scheduler", lambda: self.scheduler.run(self.stop_event))
        if self.settings.embedded_worker:
            self._spawn("worker-supervisor", self._supervise_worker)
        (home / "daemon.json").write_text(json.dumps({"pid": os.getpid(), "url": self.settings.base_url}))
        self.state = DaemonState.RUNNING
        log.info("sleepd running: API %s, home %s", self.settings.base_url, home)

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.start()
        try:
            self.stop_event.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        if self.state == DaemonState.STOPPED:
            return
        self.state = DaemonState.STOPPING
        self.stop_event.set()
        self.scheduler.wake.set()
        if self._server is not None:
            self._server.should_exit = True
        self.watchers.stop()
        self._stop_worker()
        for thread in self._threads:
            thread.join(timeout=15)
        self.service.close()
        self.ledger.close()
        (self.settings.home / "daemon.json").unlink(missing_ok=True)
        for lock in (self._index_lock, self._lock):
            if lock is not None:
                lock.release()
        self.state = DaemonState.STOPPED

    # -- components -------------------------------------------------------------------------

    def _ensure_token(self, home: Path) -> None:
        """The local admin token, readable by the owner only, for the CLI on this machine."""
        from sleepd.auth import create_token, read_token

        if read_token(home):
            return
        token = create_token(self.ledger, "admin", admin=True)
        path = home / "token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")

    def _serve_api(self) -> None:
        import uvicorn

        from sleepd.api import create_app

        app = create_app(self.service, health=self.health)
        config = uvicorn.Config(app, host=self.settings.api_host, port=self.settings.api_port,
                                log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._spawn("api", self._server.run)
        deadline = time.time() + 15
        while not self._server.started:
            if time.time() > deadline or not self._threads[-1].is_alive():
                raise ConfigError(f"Config 'api_port' has value {self.settings.api_port}: "
                                  f"cannot listen on {self.settings.api_host}:{self.settings.api_port} (in use?)")
            time.sleep(0.05)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"sleepd-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _first_scan(self) -> None:
        try:
            self.watchers.start()  # first, so edits made during the scan are not missed
            self.watchers.scan_all()
        except Exception:
            log.exception("initial scan failed")
        self._spawn("first-pass", self._announce_first_pass)
        self.watchers.run_rescans(self.stop_event)

    def _announce_first_pass(self) -> None:
        """Log the first pass's progress every ``PROGRESS_LOG_SECONDS`` while it moves (lines, not
        a live bar: the worker's log lines would cut through one), and say once, when the first
        scan's work is all published and indexed and the index searches at full speed
        (:meth:`~sleepd.index.VectorIndex.warm`), how much it made: from then on ``status``
        reports the memory ready (``first_pass_s``)."""
        from sleepd.progress import first_pass_line, first_pass_progress

        told_at, told_done = time.monotonic(), -1
        while not self.stop_event.wait(1.0):
            try:
                report = self.ledger.status()
            except Exception:  # the ledger may be down for a while: ask again
                continue
            if time.monotonic() - told_at >= defaults.PROGRESS_LOG_SECONDS:
                progress = first_pass_progress(report, self.started_at, self.done_at_start, None)
                if progress["done"] != told_done and progress["done"] < progress["total"]:
                    log.info("%s", first_pass_line(progress))
                    told_done = progress["done"]
                told_at = time.monotonic()
            items = sum(n for src in report["sources"] for state, n in src["items"].items() if state != "deleted")
            pending = sum(src["items"]["pending"] for src in report["sources"])
            # ... and the index's fast search made (started only now: the first pass's writes follow it)
            if pending == 0 and not report["queue"] and report["index_lag"] == 0 and self.service.index.warm():
                took = round(time.time() - self.started_at, 1)
                log.info("first pass done: %d items, %d records in %.0f s", items, report["records"], took)
                self.first_pass_s = took  # after the line: whoever sees it ready finds it logged
                return

    def _supervise_worker(self) -> None:
        while not self.stop_event.is_set():
            if self._worker is None or self._worker.poll() is not None:
                if self._worker is not None:
                    uptime = time.monotonic() - self._worker_started
                    self.worker_restart_delay = restart_delay(self.worker_restart_delay, uptime)
                    log.warning("worker exited with %s after %.1fs; restarting in %.0fs", self._worker.returncode,
                                uptime, self.worker_restart_delay)
                    if self.stop_event.wait(self.worker_restart_delay):
                        return
                    self.worker_restarts += 1
                env = {**os.environ, **self.settings.child_env(), "SLEEPD_PARENT_PID": str(os.getpid())}
                # its stdout carries only Celery's start-up banner: kept out of the daemon's terminal
                self._worker = subprocess.Popen(self._worker_argv(), env=env, stdout=subprocess.DEVNULL)
                self._worker_started = time.monotonic()
            self.stop_event.wait(0.5)

    def _worker_argv(self) -> list[str]:
        if self.settings.worker_command:
            return shlex.split(self.settings.worker_command)
        return [sys.executable, "-m", "sleepd", "worker", "--nice", str(defaults.WORKER_NICE)]

    def _stop_worker(self) -> None:
        worker = self._worker
        if worker is None or worker.poll() is not None:
            return
        worker.terminate()  # Celery's warm shutdown: finishes the task in hand
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker is not None and self._worker.poll() is None else None

    # -- health and status ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        components: dict[str, str] = {}
        try:
            self.ledger.last_query_at()
            components["ledger"] = "ok"
        except Exception as exc:
            components["ledger"] = f"error: {exc}"
        alive = {t.name.removeprefix("sleepd-"): t.is_alive() for t in self._threads}
        for name in ("indexer", "scheduler", "api"):
            components[name] = "ok" if alive.get(name) else "stopped"
        if self.service.indexer.last_error:
            components["indexer"] = f"error: {self.service.indexer.last_error}"
        if self.settings.embedded_worker:
            components["worker"] = "ok" if self.worker_pid else "stopped"
        components["model"] = "ok" if self.service.model_state == "ready" else self.service.model_state
        ok = self.state == DaemonState.RUNNING and all(v == "ok" for v in components.values())
        return {"status": "ok" if ok else "degraded", "state": self.state.value, "components": components}

    def _extra_status(self, report: dict[str, Any]) -> dict[str, Any]:
        from sleepd.progress import first_pass_progress

        return {
            "first_pass": first_pass_progress(report, self.started_at, self.done_at_start, self.first_pass_s),
            "daemon": {"state": self.state.value, "pid": os.getpid(),
                       "uptime_s": round(time.time() - self.started_at, 1), "api": self.settings.base_url,
                       "worker_pid": self.worker_pid, "worker_restarts": self.worker_restarts,
                       "worker_restart_delay_s": self.worker_restart_delay,
                       # the memory is ready once the first scan's work is all published and indexed
                       "ready": self.first_pass_s is not None, "first_pass_s": self.first_pass_s,
                       "model": self.service.model_state},
            "scheduler": self.scheduler.describe(),
            "health": self.health(),
        }
