"""`sentiment-pipeline produce` (placeholder until its owner lands it)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the CLI."""
