"""Test helpers: waiting, ports, required services, and the real pipeline driven in-process."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

from sleepd.embed import Embedder
from sleepd.service import Service
from workers.tasks import Outcome, run_enrichment

REQUIRE = os.environ.get("SLEEPD_REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"{what} is required (SLEEPD_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} not reachable")


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition") -> object:
    """Poll until ``condition()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def enrich_pending(service: Service, embedder: Embedder) -> list[Outcome]:
    """Run S(c) for every open change now, as a worker would, then apply the index events."""
    outcomes = []
    while True:
        due = service.ledger.due_changes(100, lease_seconds=3600)
        if not due:
            break
        service.ledger.mark_enqueued([c.id for c in due if c.id is not None])
        for change in due:
            outcomes.append(run_enrichment(service.ledger, embedder, service.settings, change.item_id,
                                           change.force))
    service.indexer.sync()
    return outcomes
