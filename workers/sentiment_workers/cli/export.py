"""`sentiment-pipeline export`: the curated fact table as a Delta Lake table (incremental, merged on id)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
    app.command("export")(export)


def parse_storage_options(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs -> a dict; a pair without ``=`` is a usage error."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="'--storage-option'")
        options[key] = value
    return options


def export(
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Delta table location: a local path, file://, s3://, az://, gs:// (delta-rs URLs)."
        ),
    ],
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            help="KEY=VALUE for the object store (repeatable; credentials are better left in the "
            "environment: AWS_*, AZURE_*, GOOGLE_*).",
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-read every row, not only those since the watermark.")
    ] = False,
    overlap_seconds: Annotated[
        float, typer.Option(min=0, help="Re-read this far before the watermark (late commits).")
    ] = 600.0,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows read and merged per Delta commit.")] = 20_000,
) -> None:
    """Write rows new or changed since the last export to a Delta table partitioned by day, merged on id.

    Reads MySQL with the SENTIMENT_MYSQL_* settings (a read-only user is enough). Prints a JSON summary.
    """
    import json
    from datetime import timedelta

    from sentiment_workers.cli._errors import run_or_exit
    from sentiment_workers.export.run import export_table
    from sentiment_workers.runner import load_config

    options = parse_storage_options(storage_option or [])
    config = load_config()
    summary = run_or_exit(
        lambda: export_table(
            config,
            to,
            storage_options=options,
            overlap=timedelta(seconds=overlap_seconds),
            batch_rows=batch_rows,
            full=full,
        )
    )
    payload = {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in summary.__dict__.items()
    }
    typer.echo(json.dumps(payload))
