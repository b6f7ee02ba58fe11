"""Shared fixtures: real services, the real model, real files. Tests that need Redis or
PostgreSQL fail (not skip) when SLEEPD_REQUIRE_SERVICES=1, as CI sets."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sleepd.embed import Embedder, get_embedder
from sleepd.ledger import Ledger
from sleepd.settings import Settings, load_settings

REDIS_URL = os.environ.get("SLEEPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_URL = os.environ.get("SLEEPD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
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


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        base = load_settings({"SLEEPD_HOME": str(tmp_path / "home")})
        defaults: dict[str, object] = {"idle_seconds": 0.0, "debounce_seconds": 0.2, "api_port": free_port()}
        return replace(base, **{**defaults, **overrides})  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    led = Ledger(settings.database_url)
    yield led
    led.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        unavailable(f"Redis at {REDIS_URL}")
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError
    from sqlmodel import SQLModel

    import sleepd.schema  # noqa: F401  (registers the tables)

    engine = create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text("select 1"))
    except OperationalError:
        engine.dispose()
        unavailable(f"PostgreSQL at {PG_URL}")
    SQLModel.metadata.drop_all(engine)
    yield PG_URL
    SQLModel.metadata.drop_all(engine)
    engine.dispose()
