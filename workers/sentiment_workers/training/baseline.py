"""The fast baseline: TF-IDF features and multinomial Naive Bayes (the seed project's model family).

Saved as a model directory the runtime serves (backend ``sklearn``): ``model.skops`` (the fitted scikit-learn
pipeline in skops format, loadable without unpickling arbitrary code) and ``config.json`` (kind, labels).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

SKOPS_FILE = "model.skops"
MODEL_TYPE = "sklearn-tfidf-nb"


class BaselineSettings(BaseModel):
    """TF-IDF + multinomial NB hyper-parameters."""

    ngram_max: int = Field(2, ge=1, le=3, description="Word n-grams from 1 to this.")
    min_df: int = Field(1, ge=1)
    max_features: int | None = Field(100_000, ge=1)
    sublinear_tf: bool = True
    alpha: float = Field(0.1, gt=0, description="Additive (Laplace/Lidstone) smoothing.")


def build_pipeline(settings: BaselineSettings) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    lowercase=True,
                    ngram_range=(1, settings.ngram_max),
                    min_df=settings.min_df,
                    max_features=settings.max_features,
                    sublinear_tf=settings.sublinear_tf,
                ),
            ),
            ("nb", MultinomialNB(alpha=settings.alpha)),
        ]
    )


def train_baseline(texts: Sequence[str], labels: Sequence[str], settings: BaselineSettings) -> Any:
    """The fitted pipeline; its ``classes_`` (sorted label names) are the class ids."""
    return build_pipeline(settings).fit(list(texts), list(labels))


def save_baseline(pipeline: Any, output_dir: Path, *, task: str) -> Path:
    """Write ``model.skops`` and ``config.json`` (``model_type``, ``id2label`` from the model's classes)."""
    import skops.io

    output_dir.mkdir(parents=True, exist_ok=True)
    skops.io.dump(pipeline, output_dir / SKOPS_FILE)
    classes = [str(c) for c in pipeline.classes_]
    config = {
        "model_type": MODEL_TYPE,
        "task": task,
        "format": "skops",
        "file": SKOPS_FILE,
        "id2label": dict(enumerate(classes)),
        "label2id": {c: i for i, c in enumerate(classes)},
    }
    (output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return output_dir
