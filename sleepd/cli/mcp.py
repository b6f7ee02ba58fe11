"""``sleepd mcp``: serve MCP on stdio for an assistant, forwarding to the running daemon."""

from __future__ import annotations

import logging

import click

from sleepd.cli.common import load_settings

__all__ = ["mcp"]


@click.command()
def mcp() -> None:
    """Serve MCP on stdio for an assistant (forwards to the running daemon)."""
    from sleepd.mcp_server import build_server

    logging.getLogger().setLevel(logging.WARNING)  # stdout is the protocol; logs go to stderr only
    build_server(load_settings()).run("stdio")
