"""Model-area fixtures: tiny random BERT classifiers on disk, an isolated ONNX cache, the shipped model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sentiment_workers.model.source import default_model_dir
from sentiment_workers.model.testing import build_tiny_model

SAMPLE_TEXTS = [
    "I love my new car, best purchase ever!",
    "This is the worst traffic I have ever seen. I hate it.",
    "The meeting is at 3pm.",
    "",
    "ok",
    "Self-driving cars will change how we commute; not sure if that's good or bad.",
    "Google's driverless car passed another test today #autonomous",
    "ugh.",
    "I really really really don't want to ride in a robot car, they scare me " * 5,
    "Ünïcödé and emoji 🚗 are fine too",
]


@pytest.fixture(scope="session", autouse=True)
def isolated_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every ONNX export in this session goes to a fresh cache: the export path itself is exercised."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SENTIMENT_ONNX_CACHE_DIR", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def tiny_model_without_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny5") / "tiny-bert-5", labels=None, seed=1)


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The default model committed under models/sentiment-e5 (must exist in every clone)."""
    path = default_model_dir()
    assert (path / "model.safetensors").is_file(), f"the shipped model is missing at {path}"
    return path
