"""The command line: parse, build settings, call the library (or the running daemon), print.

One module per command group: ``daemon`` (run, worker, check), ``status``, ``memory`` (query,
refresh, purge, reindex), ``admin`` (token, history, show, diff, audit), ``sources``, ``bench``,
``llm``, ``mcp``; what they share is in ``common``.

While a daemon owns the home (its lock is held) the CLI never opens the index itself: it talks to
the daemon's API, waiting for it while the daemon starts. Exit codes: 0 done, 1 `sleepd check`
found the daemon unhealthy, 2 an error (bad input or configuration, nothing reachable), 3 the
daemon is starting and its API did not answer in time (try again). An error is one line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from sleepd.cli.admin import audit, diff, history, show, token
from sleepd.cli.bench import bench
from sleepd.cli.common import EXIT_DAEMON_STARTING, err
from sleepd.cli.daemon import check, run, worker
from sleepd.cli.llm import llm
from sleepd.cli.mcp import mcp
from sleepd.cli.memory import purge, query, refresh, reindex
from sleepd.cli.sources import sources, sql_triggers
from sleepd.cli.status import status
from sleepd.errors import SleepdError
from sleepd.logs import FORMATS, setup_logging

__all__ = ["cli", "main"]

#: the exit code of a usage error (click's, and argparse's)
EXIT_USAGE = 2


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
@click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
              envvar="SLEEPD_LOG_FORMAT", show_envvar=True,
              help="Log lines for people, or one JSON object per line for a log collector.")
def cli(verbose: bool, log_format: str) -> None:
    """sleepd: enrich your context while idle, answer within a token budget."""
    setup_logging(verbose, log_format)


for _command in (run, worker, check, status, query, refresh, purge, reindex, token, history, show, diff,
                 audit, sources, sql_triggers, bench, llm, mcp):
    cli.add_command(_command)


def main(args: Sequence[str] | None = None) -> None:
    """The ``sleepd`` program: run the command, turn every error into one line and an exit code."""
    from sleepd.client import DaemonStarting

    try:
        cli.main(args=list(args) if args is not None else None, prog_name="sleepd", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except DaemonStarting as exc:
        err.print(f"[yellow]daemon starting[/yellow]: {exc.message}", highlight=False)
        sys.exit(EXIT_DAEMON_STARTING)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # `sleepd` alone: the help is the message
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # one line, not click's usage block: scripts and logs read it whole
        message = " ".join(exc.format_message().split())
        click.echo(f"sleepd: error: {message}", err=True)
        sys.exit(exc.exit_code)
    except SleepdError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}", highlight=False)
        sys.exit(EXIT_USAGE)
