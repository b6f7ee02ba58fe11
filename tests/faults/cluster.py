"""The processes of a team deployment, as its operator runs them: one `sleepd run` with a Redis
broker and a PostgreSQL ledger, and `sleepd worker` processes that the suite restarts the moment
one dies (it plays systemd)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import wait_for

__all__ = ["Api", "Daemon", "WorkerPool"]

#: CPU seconds a worker must burn in one sampling window to count as running a task (an idle
#: solo worker blocks on the broker and burns next to nothing)
BUSY_CPU_SECONDS = 0.03
#: the line Celery prints once the worker's app is loaded and it is about to consume
READY_MARK = b"[tasks]"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


class Api:
    """The daemon's HTTP API with the admin token it wrote."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


class Daemon:
    """`sleepd run` in its own process; ``api`` once it is healthy."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log_path = env, log
        self._log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sleepd", "run"], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        home = Path(env["SLEEPD_HOME"])

        def ready() -> bool:
            return (home / "token").exists() and (home / "daemon.json").exists()

        wait_for(lambda: self.proc.poll() is not None or ready(), timeout=120, interval=0.2, fail=False)
        if self.proc.poll() is not None or not ready():
            raise RuntimeError(f"sleepd run did not start: {log.read_text()[-3000:]}")
        url = json.loads((home / "daemon.json").read_text())["url"]
        self.api = Api(url, (home / "token").read_text().strip())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        self._log.close()
        return code


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    cpu: float = 0.0
    busy: bool = False


@dataclass
class WorkerPool:
    """``size`` `sleepd worker` processes; :meth:`kill` is kill -9 followed by an immediate restart."""

    env: dict[str, str]
    logs: Path
    size: int = 3
    workers: list[Worker] = field(default_factory=list)
    kills: int = 0
    started: int = 0

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.workers = [self._spawn() for _ in range(self.size)]

    def _spawn(self) -> Worker:
        self.started += 1
        log = self.logs / f"worker-{self.started:03d}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "sleepd", "worker"], env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)
        return Worker(proc, log, time.monotonic(), cpu_seconds(proc.pid))

    def sample(self, window: float = 0.25) -> list[int]:
        """Slots whose worker is loaded and burned CPU during the last ``window`` seconds: mid-task."""
        before = [cpu_seconds(w.proc.pid) for w in self.workers]
        time.sleep(window)
        busy = []
        for slot, (worker, cpu) in enumerate(zip(self.workers, before, strict=True)):
            ready = READY_MARK in worker.log.read_bytes()
            burned = cpu_seconds(worker.proc.pid) - cpu
            worker.busy = ready and worker.proc.poll() is None and burned >= BUSY_CPU_SECONDS
            if worker.busy:
                busy.append(slot)
        return busy

    def kill_busy(self, rng: random.Random) -> bool:
        """kill -9 one worker that is running a task, chosen at random, and start its successor."""
        busy = self.sample()
        if not busy:
            return False
        slot = rng.choice(busy)
        victim = self.workers[slot]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        self.kills += 1
        self.workers[slot] = self._spawn()
        return True

    def revive(self) -> int:
        """Restart workers that exited on their own (not by our kill); returns how many did."""
        exited = [slot for slot, w in enumerate(self.workers) if w.proc.poll() is not None]
        for slot in exited:
            self.workers[slot] = self._spawn()
        return len(exited)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.terminate()
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
