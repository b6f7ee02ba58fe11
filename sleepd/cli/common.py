"""What every command group shares: the consoles, the settings, the way to the daemon (or to the
library in this process when none runs) and the options declared once (``--json``, an option with
an environment variable that says so in ``--help``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console

from sleepd import defaults
from sleepd.auth import Principal
from sleepd.settings import Settings, load_settings

__all__ = ["EXIT_DAEMON_STARTING", "LOCAL_ADMIN", "call", "daemon_starting", "env_option", "err", "json_option",
           "load_settings", "out", "print_json", "reach"]

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay on one line for scripts and grep
F = TypeVar("F", bound=Callable[..., Any])
#: who the CLI acts as in this process (whoever can read the ledger is admin)
LOCAL_ADMIN = Principal("local-admin", admin=True)
#: the exit code when the daemon is starting and its API did not answer in time
EXIT_DAEMON_STARTING = 3

#: ``--json``: print one JSON object instead of tables (for scripts)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def env_option(*decls: str, envvar: str, **attrs: Any) -> Callable[[F], F]:
    """An option with an environment fallback, which ``--help`` names."""
    return click.option(*decls, envvar=envvar, show_envvar=True, **attrs)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def daemon_starting(settings: Settings) -> bool:
    """A daemon holds the home but its API does not answer (yet)."""
    from sleepd.daemon import DAEMON_LOCK, HomeLock

    return HomeLock.held(settings.home / DAEMON_LOCK)


def _reach(settings: Settings, wait: float = defaults.DAEMON_START_WAIT_SECONDS) -> tuple[Any, Any]:
    """The running daemon's client, or else the home's index lock for working in this process:
    ``(client, None)`` or ``(None, lock)``. A daemon that holds the home but does not answer yet
    is waited for (never opened from under: it would then fail to open its own index)."""
    from sleepd.client import Client, DaemonStarting
    from sleepd.daemon import INDEX_LOCK, HomeLock
    from sleepd.errors import Unavailable

    deadline = time.monotonic() + wait
    told = False
    while True:
        client = Client.discover(settings)
        if client is not None:
            return client, None
        starting = daemon_starting(settings)
        if not starting:
            lock = HomeLock.try_take(settings.home / INDEX_LOCK)
            if lock is not None:
                return None, lock
        if time.monotonic() >= deadline:
            if starting:
                raise DaemonStarting(f"the sleepd daemon of home {settings.home} is starting: its API "
                                     f"({settings.base_url}) did not answer within {wait:g} s; try again")
            raise Unavailable(f"the index in home {settings.home} is in use by another sleepd command")
        if starting and not told:
            err.print(f"daemon is starting... (home {settings.home}; waiting up to {wait:g} s for its API)",
                      highlight=False)
            told = True
        time.sleep(0.5)


@contextmanager
def _service(settings: Settings, lock: Any) -> Iterator[Any]:
    """The library in this process, for when no daemon runs; ``lock`` is the home's index lock,
    held until the command is done."""
    from sleepd.errors import Unavailable
    from sleepd.service import Service

    try:
        try:
            service = Service.open(settings)
        except Exception as exc:
            raise Unavailable(f"no daemon answers for home {settings.home} and its memory cannot be opened "
                              f"here: {type(exc).__name__}: {exc}") from None
        try:
            yield service
        finally:
            service.close()
            service.ledger.close()
    finally:
        lock.release()


def _through(client: Any, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """The daemon's answer; while it loads the embedding model (503 model_loading), wait for it."""
    from sleepd.errors import ModelLoading, SleepdError

    deadline = time.monotonic() + defaults.MODEL_WAIT_SECONDS
    told = False
    while True:
        try:
            return client.get(path) if method == "GET" else client.post(path, body)  # type: ignore[no-any-return]
        except SleepdError as exc:
            if exc.code != ModelLoading.code or time.monotonic() >= deadline:
                raise
            if not told:
                err.print(f"the daemon is loading the embedding model... (waiting up to "
                          f"{defaults.MODEL_WAIT_SECONDS:g} s)", highlight=False)
                told = True
            time.sleep(0.5)


@contextmanager
def reach(settings: Settings) -> Iterator[tuple[Any, Any]]:
    """``(client, None)`` for the running daemon's API, or ``(None, service)``: the library in
    this process when no daemon owns the home. Closed (and the home's index lock let go) after."""
    client, lock = _reach(settings)
    if client is not None:
        try:
            yield client, None
        finally:
            client.close()
        return
    with _service(settings, lock) as service:
        yield None, service


def call(settings: Settings, method: str, path: str, body: dict[str, Any] | None,
         local: Callable[[Any], Any]) -> dict[str, Any]:
    """Through the daemon's API when one answers, else in this process."""
    with reach(settings) as (client, service):
        if client is not None:
            return _through(client, method, path, body)
        result = local(service)
        return result if isinstance(result, dict) else result.as_dict()  # type: ignore[no-any-return]
