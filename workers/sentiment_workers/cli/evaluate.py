"""`sentiment-pipeline evaluate`: a model and VADER scored on the hand-labelled sets of data/eval."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from sentiment_workers.config import DEFAULT_MODEL, ModelBackend

DEFAULT_SETS = Path("data/eval")
VADER = "VADER"


def evaluate(
    model: Annotated[
        str, typer.Option(help="'default' (the shipped model), a model directory, or a cached hub name.")
    ] = DEFAULT_MODEL,
    backend: Annotated[ModelBackend, typer.Option(help="Runtime backend.")] = ModelBackend.ONNX_INT8,
    split: Annotated[str, typer.Option(help="dev, test, or all.")] = "test",
    sets: Annotated[Path, typer.Option(help="Folder of <lang>-<domain>.jsonl sets.")] = DEFAULT_SETS,
    vader: Annotated[bool, typer.Option(help="Score the VADER lexicon baseline too.")] = True,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Texts per forward pass.")] = 32,
    max_length: Annotated[int, typer.Option(min=8, max=4096, help="Tokens kept per text.")] = 128,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: cgroup quota).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", dir_okay=False, help="Also write the scores as JSON here.")
    ] = None,
) -> None:
    """Macro-F1, accuracy and per-label recall of the model and of VADER on every set; a markdown table."""
    from sentiment_workers.training import domain_eval

    if split not in (*domain_eval.SPLITS, "all"):
        typer.echo(f"error: split {split!r} is not one of {', '.join(domain_eval.SPLITS)}, all", err=True)
        raise typer.Exit(2)
    try:
        loaded = domain_eval.load_sets(sets, None if split == "all" else split)
    except (domain_eval.EvalSetError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    from sentiment_workers.model import ModelLoadError, load_classifier

    try:
        classifier = load_classifier(
            model, backend, batch_size=batch_size, max_length=max_length, device=device, threads=threads
        )
    except (ModelLoadError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    def predict(texts: Sequence[str]) -> list[str]:
        return [prediction.label for prediction in classifier.predict(texts)]

    name = f"{Path(model).name if model != DEFAULT_MODEL else 'default'} ({backend.value})"
    predictors: dict[str, domain_eval.Predictor] = {name: predict}
    if vader:
        predictors[VADER] = domain_eval.vader_predictor()
    rows = domain_eval.evaluate(loaded, predictors)
    typer.echo(domain_eval.markdown_table(rows))
    if json_out is not None:
        rows_json = domain_eval.rows_as_json(rows)
        report = {"model": model, "backend": backend.value, "split": split, "rows": rows_json}
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the CLI."""
    app.command("evaluate")(evaluate)
