"""The ``sklearn`` backend: a fitted scikit-learn text pipeline (e.g. TF-IDF + Naive Bayes) saved with skops.

skops files are loaded with skops' default trusted types only (scikit-learn estimators, numpy, scipy): a
model file that needs anything else is refused, so loading a model never runs code it carries (unlike
pickle). Labels are the pipeline's ``classes_``, in class-id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentiment_workers.model.contract import SentimentClassifier
from sentiment_workers.model.errors import ModelLoadError

BACKEND = "sklearn"
MODEL_TYPE_PREFIX = "sklearn"
DEFAULT_FILE = "model.skops"


def is_sklearn_model(config: dict[str, Any]) -> bool:
    """Whether a model directory's ``config.json`` says scikit-learn (``model_type: sklearn-*``)."""
    return str(config.get("model_type", "")).startswith(MODEL_TYPE_PREFIX)


def load_pipeline(path: Path, config: dict[str, Any], model: str) -> Any:
    """The fitted pipeline from ``path``, with skops' default trusted types only."""
    try:
        import skops.io
    except ImportError as exc:
        raise ModelLoadError(
            model, "a scikit-learn model needs scikit-learn and skops installed (the 'registry' extra)"
        ) from exc
    if config.get("format", "skops") != "skops":
        raise ModelLoadError(
            model, f"unsupported scikit-learn model format {config.get('format')!r} (skops only)"
        )
    file = path / str(config.get("file", DEFAULT_FILE))
    if file.parent != path or not file.is_file():
        raise ModelLoadError(model, f"{file} is not a model file of {path}")
    try:
        untrusted = skops.io.get_untrusted_types(file=file)
        if untrusted:
            raise ModelLoadError(
                model, f"{file.name} needs types skops does not trust: {', '.join(untrusted)}"
            )
        pipeline = skops.io.load(file)
    except ModelLoadError:
        raise
    except Exception as exc:  # skops, zipfile and sklearn raise many types for a bad file
        raise ModelLoadError(model, f"{file.name}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
        raise ModelLoadError(model, f"{file.name} holds a {type(pipeline).__name__}, not a fitted classifier")
    return pipeline


class SklearnClassifier(SentimentClassifier):
    """Runs ``pipeline.predict_proba`` on raw texts, ``batch_size`` texts at a time (bounded memory)."""

    def __init__(self, *, pipeline: Any, model_id: str, batch_size: int, max_length: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pipeline = pipeline
        self.model_id = model_id
        self.labels = [str(c) for c in pipeline.classes_]
        self.backend = BACKEND
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = "cpu"

    def predict_proba(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            raise TypeError("predict() takes a sequence of texts, not a single string")
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text #{position} is {type(text).__name__}, expected str")
        probabilities: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            probabilities.extend(self.pipeline.predict_proba(batch).tolist())
        return probabilities
