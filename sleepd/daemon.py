"""The embedded daemon: watchers, scheduler, indexer, HTTP API and one child Celery worker,
all under one home folder. SIGTERM or SIGINT stop it gracefully."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from enum import Enum
from pathlib import Path
from typing import IO, Any

import uvicorn

from sleepd import defaults
from sleepd.api import create_app
from sleepd.auth import create_token, read_token
from sleepd.errors import ConfigError, Unavailable
from sleepd.ledger import Ledger
from sleepd.scheduler import Scheduler
from sleepd.service import Service
from sleepd.settings import FileSource, Settings
from sleepd.watchers import Watchers

__all__ = ["Daemon", "DaemonState"]

log = logging.getLogger("sleepd.daemon")

#: a child worker that dies is restarted after this long (doubling up to a minute)
WORKER_RESTART_SECONDS = 1.0


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
    def __init__(self, settings: Settings, extra_sources: tuple[FileSource, ...] = ()) -> None:
        self.settings = settings
        self.extra_sources = extra_sources
        self.state = DaemonState.STOPPED
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_file: IO[str] | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._server: uvicorn.Server | None = None
        self.started_at = 0.0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.state = DaemonState.STARTING
        self.started_at = time.time()
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        self._take_lock(home / "daemon.lock")
        self.ledger = Ledger(self.settings.database_url)
        for source in (*self.settings.sources, *self.extra_sources):
            self.ledger.save_source(source)
        self._ensure_token(home)
        self.service = Service.open(self.settings, self.ledger)
        self.service.extra_status = self._extra_status
        from workers.app import configure
        from workers.tasks import TASK_NAME, pipeline_version

        celery = configure(self.settings)

        def send(items: list[tuple[int, bool]]) -> None:
            celery.send_task(TASK_NAME, args=[items], queue=defaults.QUEUE, retry=False)

        self.scheduler = Scheduler(self.ledger, self.settings, send, pipeline_version(self.settings))
        self.service.on_refresh = self.scheduler.wake.set
        self.watchers = Watchers(self.ledger.sources(), self.ledger, self.settings, on_change=self.scheduler.wake.set)
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
        if self._lock_file is not None:
            self._lock_file.close()
        self.state = DaemonState.STOPPED

    # -- components -------------------------------------------------------------------------

    def _take_lock(self, path: Path) -> None:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise Unavailable(f"another sleepd daemon already runs with home {path.parent}") from None
        self._lock_file = handle

    def _ensure_token(self, home: Path) -> None:
        """The local admin token, readable by the owner only, for the CLI on this machine."""
        if read_token(home):
            return
        token = create_token(self.ledger, "admin", admin=True)
        path = home / "token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")

    def _serve_api(self) -> None:
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
        self.watchers.run_rescans(self.stop_event)

    def _supervise_worker(self) -> None:
        delay = WORKER_RESTART_SECONDS
        while not self.stop_event.is_set():
            if self._worker is None or self._worker.poll() is not None:
                if self._worker is not None:
                    log.warning("worker exited with %s; restarting in %.0fs", self._worker.returncode, delay)
                    if self.stop_event.wait(delay):
                        return
                    delay = min(delay * 2, 60.0)
                env = {**os.environ, **self.settings.child_env(), "SLEEPD_PARENT_PID": str(os.getpid())}
                self._worker = subprocess.Popen([sys.executable, "-m", "sleepd", "worker", "--nice",
                                                 str(defaults.WORKER_NICE)], env=env)
            elif time.time() - self.started_at > 60:
                delay = WORKER_RESTART_SECONDS
            self.stop_event.wait(0.5)

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
        ok = self.state == DaemonState.RUNNING and all(v == "ok" for v in components.values())
        return {"status": "ok" if ok else "degraded", "state": self.state.value, "components": components}

    def _extra_status(self) -> dict[str, Any]:
        return {
            "daemon": {"state": self.state.value, "pid": os.getpid(),
                       "uptime_s": round(time.time() - self.started_at, 1), "api": self.settings.base_url,
                       "worker_pid": self.worker_pid},
            "scheduler": {"state": self.scheduler.state.value, "idle": self.scheduler.idle(),
                          "dispatched": self.scheduler.dispatched, "error": self.scheduler.last_error},
            "health": self.health(),
        }
