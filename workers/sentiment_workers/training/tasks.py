"""A training run for any labelled text-classification task: load, split, train (TF-IDF + NB baseline or
the transformer fine-tune), evaluate what ships through the model runtime, plot, write metadata, track."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field

from sentiment_workers.training.baseline import BaselineSettings
from sentiment_workers.training.dataset import Example
from sentiment_workers.training.settings import TrainingSettings

log = structlog.get_logger("sentiment_workers.training")

TASK_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
"""A task name is also the registered model's name: letters, digits, ``_ . -``."""
PLOT_FILE = "confusion_matrix.png"


class TaskSettings(BaseModel):
    """Everything of one task run, recorded in ``training_args.json`` and logged as MLflow parameters."""

    data: str = Field(
        description="CSV, TSV, JSONL or Parquet: a path or a URL (file://, s3://, https://...)."
    )
    text_column: str = "text"
    label_column: str = "label"
    task: str = Field(pattern=TASK_NAME)
    kind: Literal["baseline", "finetune"] = "baseline"
    seed: int = 42
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    positive_label: str | None = Field(
        None, description="Binary tasks: the label ROC AUC scores (default: rarest)."
    )
    baseline: BaselineSettings = BaselineSettings()
    finetune: TrainingSettings = TrainingSettings(per_class=100_000)
    alias: str = Field("champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


def pick_positive_label(examples: list[Example], labels: list[str], asked: str | None) -> str | None:
    """The label of interest of a binary task: the one asked for, else the rarest (spam, fraud...)."""
    if len(labels) != 2:
        return None
    if asked is not None:
        if asked not in labels:
            from sentiment_workers.training.labelled import DataError

            raise DataError(f"positive label {asked!r} is not one of the data's labels {labels}")
        return asked
    counts = Counter(e.label for e in examples)
    return min(labels, key=lambda label: (counts[label], label))


def capped_per_label(examples: list[Example], cap: int, seed: int) -> list[Example]:
    """At most ``cap`` examples of each label (all of a smaller one), shuffled with ``seed``."""
    import random

    rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not security
    chosen: list[Example] = []
    for label in sorted({e.label for e in examples}):
        group = [e for e in examples if e.label == label]
        rng.shuffle(group)
        chosen.extend(group[:cap])
    rng.shuffle(chosen)
    return chosen


def bake_onnx_int8(model_dir: Path) -> Path:
    """Export and quantize a fine-tuned model for the onnx-int8 backend into ``<model_dir>/onnx/`` (as
    ``python -m sentiment_workers.model.prepare --into-model-dir`` does for the shipped model): the runtime
    finds it there before any cache, so the slim worker image, which has no torch to export with, serves the
    model (also as a registered version, whose files are these)."""
    from sentiment_workers.model.onnx_backend import ensure_onnx_int8
    from sentiment_workers.model.source import resolve_model

    return ensure_onnx_int8(resolve_model(str(model_dir)), cache_root=model_dir / "onnx")


def run_task(settings: TaskSettings, output_dir: Path) -> dict[str, Any]:
    """Train and evaluate; write the model, ``metrics.json``, ``training_args.json`` and the confusion matrix
    plot to ``output_dir``; with ``MLFLOW_TRACKING_URI`` log the run and register the model under the task's
    name with ``settings.alias``. Returns the metrics (and ``tracking`` when logged)."""
    from sentiment_workers.model import load_classifier
    from sentiment_workers.training.evaluation import (
        binary_roc_auc,
        classification_metrics,
        plot_confusion_matrix,
    )
    from sentiment_workers.training.labelled import label_names, load_labelled, split_by_label
    from sentiment_workers.training.pipeline import package_versions
    from sentiment_workers.training.tracking import check_tracking_available, log_and_register

    check_tracking_available()
    examples = load_labelled(settings.data, settings.text_column, settings.label_column)
    labels = label_names(examples)
    positive = pick_positive_label(examples, labels, settings.positive_label)
    split = split_by_label(examples, settings.validation_fraction, settings.seed)
    log.info(
        "task_dataset",
        task=settings.task,
        examples=len(examples),
        labels=labels,
        train=dict(Counter(e.label for e in split.train)),
        validation=dict(Counter(e.label for e in split.validation)),
    )

    started = time.perf_counter()
    if settings.kind == "baseline":
        from sentiment_workers.training.baseline import save_baseline, train_baseline

        pipeline = train_baseline(
            [e.text for e in split.train], [e.label for e in split.train], settings.baseline
        )
        save_baseline(pipeline, output_dir, task=settings.task)
        summary: dict[str, Any] = {"train_examples": len(split.train)}
        backend, max_length, batch = "sklearn", 4096, 256
    else:
        from sentiment_workers.training.finetune import fine_tune

        train = capped_per_label(split.train, settings.finetune.per_class, settings.seed)
        summary = fine_tune(train, settings.finetune, output_dir, log=log.info, labels=labels)
        summary["onnx_int8"] = str(bake_onnx_int8(output_dir).relative_to(output_dir))
        backend, max_length = "torch", settings.finetune.max_length
        batch = settings.finetune.eval_batch_size
    summary["train_seconds"] = round(time.perf_counter() - started, 1)

    # Evaluate exactly what ships: the saved files, loaded by the model runtime that serves them.
    classifier = load_classifier(
        str(output_dir), backend, batch_size=batch, max_length=max_length, threads=settings.finetune.threads
    )
    if classifier.labels != labels:
        raise RuntimeError(f"the saved model's labels {classifier.labels} are not the data's {labels}")
    texts = [e.text for e in split.validation]
    truth = [e.label for e in split.validation]
    probabilities = classifier.predict_proba(texts)
    predicted = [labels[max(range(len(p)), key=p.__getitem__)] for p in probabilities]
    model_metrics: dict[str, Any] = {"backend": backend, **classification_metrics(truth, predicted, labels)}
    if positive is not None:
        column = labels.index(positive)
        model_metrics["positive_label"] = positive
        model_metrics["roc_auc"] = binary_roc_auc(truth, [p[column] for p in probabilities], positive)
    log.info(
        "task_eval",
        task=settings.task,
        kind=settings.kind,
        macro_f1=model_metrics["macro_f1"],
        accuracy=model_metrics["accuracy"],
        roc_auc=model_metrics.get("roc_auc"),
    )
    plot = plot_confusion_matrix(
        model_metrics, output_dir / PLOT_FILE, f"{settings.task} ({settings.kind}), validation n={len(truth)}"
    )
    metrics: dict[str, Any] = {
        "task": settings.task,
        "kind": settings.kind,
        "model_id": classifier.model_id,
        "validation": {
            "description": f"stratified {settings.validation_fraction:.0%} hold-out, seed {settings.seed}",
            "size": len(truth),
            "label_counts": dict(Counter(truth)),
        },
        "model": model_metrics,
        "training": summary,
    }
    training_args = {
        "settings": settings.model_dump(),
        "data": {"location": settings.data, "examples": len(examples), "labels": labels},
        "versions": package_versions(),
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (output_dir / "training_args.json").write_text(json.dumps(training_args, indent=2) + "\n")
    tracked = log_and_register(
        task=settings.task,
        run_name=f"{settings.task}-{settings.kind}",
        params=_params(settings),
        metrics={"model": {k: v for k, v in model_metrics.items() if k != "confusion_matrix"}},
        model_dir=output_dir,
        plot=plot,
        alias=settings.alias,
        tags={"task": settings.task, "kind": settings.kind, "model_id": classifier.model_id},
    )
    if tracked is not None:
        log.info("mlflow_registered", **tracked)
        return {**metrics, "tracking": tracked}
    return metrics


def _params(settings: TaskSettings) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.model_dump().items():
        if isinstance(value, dict):
            if (key == "baseline") != (settings.kind == "baseline"):
                continue  # only the settings of the model that was trained
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat
