"""Shared fixtures: real services, the real model, real files. Tests that need Redis or
PostgreSQL fail (not skip) when SLEEPD_REQUIRE_SERVICES=1, as CI sets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sleepd.embed import Embedder, get_embedder
from sleepd.ledger import Ledger
from sleepd.settings import Settings, load_settings
from tests.helpers import free_port, unavailable

REDIS_URL = os.environ.get("SLEEPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_URL = os.environ.get("SLEEPD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        base = load_settings({"SLEEPD_HOME": str(tmp_path / "home")})
        # no load rule: a test is not about the machine's load, and its own work must not hold it back
        # (tests/test_scheduler.py sets the rule where it is the subject)
        defaults: dict[str, object] = {"idle_seconds": 0.0, "debounce_seconds": 0.2, "api_port": free_port(),
                                       "busy_load_per_core": 1e9}
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
