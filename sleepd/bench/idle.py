"""Idle awareness: query latency while a first pass runs, with the scheduler's idle rule and
without it, against the latency once the pass is done.

Each mode starts the real daemon (``python -m sleepd run``: API, scheduler, indexer and its child
Celery worker) on a copy of some of a corpus's files, and asks questions over HTTP as an
assistant would, one every :data:`INTERVAL` seconds:

* **idle-aware** (``idle_seconds`` = :data:`IDLE_SECONDS`): the pass starts at once (nobody has
  asked anything yet); the questions keep the system busy, so the scheduler hands out no new
  batch while they come and only the batch already in flight competes with them;
* **always on** (``idle_seconds`` = 0): the scheduler keeps the worker fed whatever the traffic;
* **idle**: the same questions once the idle-aware daemon has finished its first pass.

Reported per mode: query p50/p99 and the items enriched while the questions came.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from sleepd.auth import read_token
from sleepd.bench.latency import _free_port, percentiles

__all__ = ["IDLE_SECONDS", "INTERVAL", "idle_awareness"]

#: idle_seconds of the idle-aware daemon (the default is 10; shorter keeps the bench short)
IDLE_SECONDS = 2.0
#: seconds between two questions while measuring
INTERVAL = 0.25
#: how long a daemon may take to come up, and a first pass to finish
START_TIMEOUT = 120.0
PASS_TIMEOUT = 1800.0


class _Daemon:
    """``sleepd run`` in a child process with its own home, port and idle rule."""

    def __init__(self, home: Path, folder: Path, profile: str, idle_seconds: float) -> None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        self.home = home
        self.port = _free_port()
        env = {**os.environ, "SLEEPD_HOME": str(home), "SLEEPD_IDLE_SECONDS": str(idle_seconds),
               "SLEEPD_CONFIG": "", "SLEEPD_API_PORT": str(self.port)}
        env.pop("SLEEPD_DATABASE_URL", None)
        env.pop("SLEEPD_BROKER_URL", None)
        self.log = (home / "daemon.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "sleepd", "run", str(folder), "--profile", profile],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}; see {home / 'daemon.log'}")
            token = read_token(home)
            try:
                if token and self.client.get("/health").status_code == 200:
                    self.client.headers["Authorization"] = f"Bearer {token}"
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the daemon did not come up in {START_TIMEOUT:.0f} s; see {home / 'daemon.log'}")

    def wait_for_work(self) -> None:
        """Until a batch is handed to the worker (and a few seconds for it to get going)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.client.get("/v1/status").raise_for_status().json()["queue"].get("enqueued"):
                time.sleep(IDLE_SECONDS)
                return
            time.sleep(0.2)
        raise RuntimeError(f"no batch was handed to the worker in {START_TIMEOUT:.0f} s")

    def items(self) -> dict[str, int]:
        sources = self.client.get("/v1/status").raise_for_status().json()["sources"]
        return {state: sum(s["items"].get(state, 0) for s in sources) for state in ("pending", "enriched", "failed")}

    def ask(self, questions: Sequence[str], seconds: float) -> list[float]:
        """Questions in turn, one every INTERVAL seconds for ``seconds``: their latencies in ms."""
        samples: list[float] = []
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            started = time.perf_counter()
            self.client.post("/v1/query", json={"q": questions[i % len(questions)], "budget": 1024}).raise_for_status()
            elapsed = time.perf_counter() - started
            samples.append(elapsed * 1000)
            i += 1
            time.sleep(max(0.0, INTERVAL - elapsed))
        return samples

    def wait_for_pass(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < PASS_TIMEOUT:
            counts = self.items()
            if counts["pending"] == 0 and counts["enriched"] + counts["failed"] > 0:
                return time.monotonic() - started
            time.sleep(1.0)
        raise RuntimeError(f"the first pass did not finish in {PASS_TIMEOUT:.0f} s")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _window(daemon: _Daemon, questions: Sequence[str], seconds: float) -> dict[str, Any]:
    before = daemon.items()
    samples = daemon.ask(questions, seconds)
    after = daemon.items()
    return {**percentiles(samples), "seconds": seconds,
            "items_enriched_meanwhile": after["enriched"] - before["enriched"], "pending_after": after["pending"]}


def idle_awareness(files: Sequence[Path], profile: str, questions: Sequence[str], work: Path,
                   seconds: float = 30.0) -> dict[str, Any]:
    """Copy ``files`` to a folder under ``work`` and measure the three modes (see the module doc)."""
    folder = work / "idle-corpus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in files:
        shutil.copy(path, folder / path.name)
    report: dict[str, Any] = {"files": len(files), "interval_s": INTERVAL, "idle_seconds": IDLE_SECONDS}
    always = _Daemon(work / "idle-home-always", folder, profile, 0.0)
    try:
        always.wait_for_work()
        report["always_on"] = _window(always, questions, seconds)
    finally:
        always.stop()
    aware = _Daemon(work / "idle-home-aware", folder, profile, IDLE_SECONDS)
    try:
        aware.wait_for_work()
        report["idle_aware"] = _window(aware, questions, seconds)
        report["first_pass_s"] = round(aware.wait_for_pass(), 1)
        report["idle"] = _window(aware, questions, seconds)
    finally:
        aware.stop()
    return report
