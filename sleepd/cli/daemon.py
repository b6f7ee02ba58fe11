"""The daemon's life cycle from the command line: ``run`` it, run a ``worker`` for it, ``check``
its health (exit 0 or 1, for probes)."""

from __future__ import annotations

import os
import sys
import threading

import click

from sleepd import defaults
from sleepd.cli.common import daemon_starting, env_option, load_settings
from sleepd.settings import source_from_path

__all__ = ["check", "run", "worker"]


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option("--profile", type=click.Choice(defaults.FILE_PROFILES), default="auto", show_default=True)
@click.option("--access", multiple=True, help="Principals or groups that may read these paths (default: any token).")
@env_option("--port", type=int, envvar="SLEEPD_API_PORT", help=f"API port (default {defaults.API_PORT}).")
def run(paths: tuple[str, ...], profile: str, access: tuple[str, ...], port: int | None) -> None:
    """Run the daemon: watch PATHS (and configured sources), enrich while idle, serve the API."""
    from dataclasses import replace

    from sleepd.daemon import Daemon, take_daemon_lock

    settings = load_settings()
    # the very first thing: from now on a CLI command waits for this daemon's API instead of
    # opening the index itself (loading the model and the index take seconds)
    lock = take_daemon_lock(settings.home)
    if port is not None:
        settings = replace(settings, api_port=port)
    missing = [p for p in paths if not os.path.isdir(p)]
    if missing:
        lock.release()
        raise click.BadParameter(f"not a folder: {', '.join(missing)}", param_hint="PATHS")
    sources = tuple(source_from_path(p, profile=profile, access=access or ("*",)) for p in paths)
    # no live progress bar: the worker's log lines would cut through it; the daemon logs the first
    # pass's progress as lines instead, and `sleepd status` shows it
    Daemon(settings, extra_sources=sources, lock=lock, extra_access=bool(access)).run_forever()


@click.command()
def check() -> None:
    """Exit 0 when the daemon is healthy, 1 otherwise (for health probes)."""
    from sleepd.client import Client

    settings = load_settings()
    client = Client.discover(settings)
    if client is None:
        state = "starting" if daemon_starting(settings) else "not running"
        click.echo(f"unhealthy: daemon {state} (home {settings.home})", err=True)
        sys.exit(1)
    try:
        code, report = client.health()
    finally:
        client.close()
    if code != 200:
        bad = {k: v for k, v in report.get("components", {}).items() if v != "ok"}
        click.echo(f"unhealthy: {bad or report}", err=True)
        sys.exit(1)
    click.echo("ok")


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Lower the worker's CPU priority by this much, so queries on the same machine come first.")
def worker(loglevel: str, nice: int) -> None:
    """Run a Celery worker for S(c) (started by the daemon, or alone for a team)."""
    from workers.app import configure

    if nice:
        os.nice(nice)
    app = configure(load_settings())
    embedded = _exit_with_parent()
    if embedded:
        # the daemon's terminal is the user's: Celery's banner and its warning about running as root
        # (meant for a shared broker taking pickle from strangers; this one takes JSON from its
        # own daemon, run by the same user) stay out of it
        import warnings

        from celery.exceptions import SecurityWarning

        warnings.filterwarnings("ignore", category=SecurityWarning)
    app.worker_main([*(["--quiet"] if embedded else []), "worker", "--pool=solo", "-Q", defaults.QUEUE,
                     f"--loglevel={loglevel}", "--without-gossip", "--without-mingle",
                     "-n", f"sleepd-{os.getpid()}@%h"])


def _exit_with_parent() -> bool:
    """The embedded worker must not outlive its daemon. True for the embedded worker (its daemon
    named itself in ``SLEEPD_PARENT_PID``)."""
    parent = os.environ.get("SLEEPD_PARENT_PID")
    if not parent:
        return False

    def watch() -> None:
        while True:
            if os.getppid() != int(parent):
                os._exit(0)
            threading.Event().wait(1.0)

    threading.Thread(target=watch, daemon=True).start()
    return True
