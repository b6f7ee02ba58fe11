"""Test helpers: waiting, ports, required services, a small code repository, and the real pipeline
driven in-process."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import click
import pytest

from sleepd.bench.datasets import load_tau2_retail, tau2_retail_source
from sleepd.bench.drain import enrich_pending
from sleepd.embed import Embedder
from sleepd.service import Service
from sleepd.settings import FileSource, load_settings
from sleepd.sql.rows import account_document, read_item
from sleepd.watchers import Watchers

__all__ = ["CLICK_SRC", "click_repo", "enrich_once", "enrich_pending", "free_port", "unavailable", "wait_for"]

REQUIRE = os.environ.get("SLEEPD_REQUIRE_SERVICES") == "1"
#: the installed click package: real Python source for the tests that enrich code
CLICK_SRC = Path(click.__file__).parent


def unavailable(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"{what} is required (SLEEPD_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} not reachable")


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition", fail: bool = True) -> object:
    """Poll until ``condition()`` is truthy and return its value; after ``timeout`` seconds fail the
    test naming ``what``, or with ``fail=False`` return the last (falsy) value, for a caller that
    reports a timeout itself."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            if not fail:
                return value
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def click_repo(root: Path, modules: Iterable[str], docs: Mapping[str, str] | None = None) -> Path:
    """``root`` made a small repository: these modules of the installed click package, and ``docs``
    (relative path -> text) written beside them."""
    root.mkdir(parents=True, exist_ok=True)
    for name in modules:
        shutil.copy(CLICK_SRC / name, root / name)
    for name, text in (docs or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def retail_account(tmp_path: Path, user: str) -> str:
    """The account document of tau2 retail's ``user``, read from a SQLite copy of that customer's rows."""
    url = f"sqlite:///{tmp_path / 'retail.db'}"
    load_tau2_retail(url, users=[user])
    source = tau2_retail_source(url)
    found = read_item(source, user)
    assert found is not None
    return account_document(source, user, found[0])


def enrich(svc: Service, sources: list[FileSource], embedder: Embedder) -> None:
    """``sources`` saved in ``svc``'s ledger, scanned and enriched with ``embedder``, in process."""
    svc._embedder = embedder
    for source in sources:
        svc.ledger.save_source(source)
    Watchers(sources, svc.ledger, svc.settings).scan_all()
    enrich_pending(svc, embedder)


def enrich_once(root: Path, sources: list[FileSource], embedder: Embedder) -> Path:
    """A home at ``root/home`` with ``sources`` scanned and enriched, closed again: the memory a
    module's tests copy (each test its own copy)."""
    svc = Service.open(load_settings({"SLEEPD_HOME": str(root / "home")}))
    enrich(svc, sources, embedder)
    svc.close()
    svc.ledger.close()
    return root
