"""The ``sentiment-pipeline`` command line.

Each subcommand lives in its own module exposing ``register(app)``; heavy imports (torch, aiokafka, ...)
happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="sentiment-pipeline",
    help="Near-real-time sentiment analysis of text streams: local runs, datasets and test traffic.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_SUBCOMMAND_MODULES = (
    "produce",
    "consume",
    "infer",
    "classify",
    "report",
    "train",
    "metabase",
    "dead_letters",
    "reconcile",
)

for _name in _SUBCOMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()
