"""``sleepd llm``: the optional LLM layer; ``estimate`` what a full pass would cost before paying."""

from __future__ import annotations

import click
from rich.table import Table

from sleepd.cli.common import json_option, load_settings, out, print_json

__all__ = ["llm"]


@click.group()
def llm() -> None:
    """The optional LLM layer (llm_base_url and llm_model in [sleepd])."""


@llm.command("estimate")
@click.option("--source", help="Only this source.")
@json_option
def llm_estimate(source: str | None, as_json: bool) -> None:
    """What a full LLM pass over the current items would cost (no model is called)."""
    from sleepd.ledger import Ledger
    from workers.llm import estimate_pass

    settings = load_settings()
    ledger = Ledger(settings.database_url)
    try:
        report = estimate_pass(ledger, settings, source)
    finally:
        ledger.close()
    if as_json:
        print_json(report)
        return
    table = Table(title=f"LLM pass estimate ({settings.llm_model or 'no llm_model configured'})")
    for column in ("source", "items", "input tokens", "output tokens (est.)"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, part in report["by_source"].items():
        table.add_row(name, str(part["items"]), f"{part['input_tokens']:,}", f"{part['output_tokens_estimate']:,}")
    out.print(table)
    out.print(f"items: {report['items']}   input tokens: {report['input_tokens']:,}   output tokens (est.): "
              f"{report['output_tokens_estimate']:,}   cost: {report['cost']:.4f} "
              f"(at {settings.llm_price_per_1k_input}/{settings.llm_price_per_1k_output} per 1k in/out)   "
              f"days at the daily budget: {report['days_at_daily_budget']}")
