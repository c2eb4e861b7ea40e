"""`sentiment-pipeline report`: the three dashboard numbers from the warehouse (optionally a PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("report")(report)


def report(
    png: Annotated[
        Path | None, typer.Option("--png", dir_okay=False, help="Also draw the report here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Total messages, count by sentiment, messages per day. Reads MySQL with SENTIMENT_MYSQL_* settings
    (a read-only user is enough)."""
    import json

    from sentiment_workers.adapters.mysql import Report, Warehouse
    from sentiment_workers.reporting import draw_report, format_report
    from sentiment_workers.runner import load_config

    from ._errors import run_or_exit

    config = load_config()

    async def fetch() -> Report:
        warehouse = await Warehouse.connect(config, maxsize=1)
        try:
            return await warehouse.report()
        finally:
            await warehouse.close()

    result = run_or_exit(fetch)
    if as_json:
        payload = {
            "total": result.total,
            "by_label": result.by_label,
            "per_day": {day.isoformat(): n for day, n in result.per_day},
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(format_report(result))
    if png is not None:
        draw_report(result, png)
        typer.echo(f"wrote {png}", err=as_json)
