"""`sentiment-pipeline reconcile`: what entered and what left each stage; exit 1 when it does not add up."""

from __future__ import annotations

from typing import Annotated

import typer

from sentiment_workers.cli._errors import run_or_exit


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("reconcile")(reconcile)


def reconcile(
    expect_drained: Annotated[
        bool,
        typer.Option(
            "--expect-drained", help="Also fail unless nothing is in flight (no lag, nothing pending)."
        ),
    ] = False,
) -> None:
    """Kafka end and committed offsets per partition, staged messages by status, dead letters by stage and
    reason, warehouse rows, and the checks between them (see docs/data-plane.md). Config: SENTIMENT_*."""
    from sentiment_workers.adapters.mongo import StagingStore
    from sentiment_workers.adapters.mysql import Warehouse
    from sentiment_workers.reconcile import Reconciliation
    from sentiment_workers.reconcile import reconcile as count
    from sentiment_workers.runner import load_config

    config = load_config()

    async def run() -> Reconciliation:
        store = StagingStore.from_config(config)
        warehouse = await Warehouse.connect(config, maxsize=1)
        try:
            return await count(config, store, warehouse)
        finally:
            store.close()
            await warehouse.close()

    result = run_or_exit(run)
    for line in result.lines():
        typer.echo(line)
    if not result.adds_up:
        typer.echo("error: the counts do not add up (see FAIL above)", err=True)
        raise typer.Exit(1)
    if expect_drained and not result.drained:
        typer.echo("error: not drained: records or messages are still in flight", err=True)
        raise typer.Exit(1)
