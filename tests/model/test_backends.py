"""Every backend honours the same contract, and on the shipped model they agree with fp32 torch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sentiment_workers.config import ModelBackend
from sentiment_workers.model import load_classifier
from sentiment_workers.model.onnx_backend import INT8_FILE
from sentiment_workers.model.runtime import BatchedClassifier
from sentiment_workers.training.dataset import load_examples, stratified_split

from .conftest import SAMPLE_TEXTS

BACKENDS = [b.value for b in ModelBackend]


@pytest.fixture(scope="module")
def validation_sample() -> list[str]:
    """A fixed sample of held-out tweets (same split and seed as the shipped model's training)."""
    split = stratified_split(load_examples(), validation_fraction=0.1, seed=42)
    return [example.text for example in split.validation[:240]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_returns_valid_probabilities_over_the_config_labels(
    tiny_model: Path, backend: str
) -> None:
    classifier = load_classifier(str(tiny_model), backend, batch_size=4)
    assert classifier.labels == ["negative", "neutral", "positive"]
    assert classifier.model_id.endswith("/" + backend)
    for probs, prediction in zip(
        classifier.predict_proba(SAMPLE_TEXTS), classifier.predict(SAMPLE_TEXTS), strict=True
    ):
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert prediction.label in classifier.labels
        assert prediction.score == pytest.approx(max(probs))


def test_onnx_export_is_cached_by_weights_hash(tiny_model: Path, isolated_onnx_cache: Path) -> None:
    first = load_classifier(str(tiny_model), "onnx-int8")
    exported = list(isolated_onnx_cache.glob(f"*/{INT8_FILE}"))
    assert exported, "the int8 export should be written to the cache"
    mtimes = {path: path.stat().st_mtime_ns for path in exported}
    second = load_classifier(str(tiny_model), "onnx-int8")
    assert {path: path.stat().st_mtime_ns for path in exported} == mtimes  # reused, not rebuilt
    assert first.model_id == second.model_id
    for a, b in zip(first.predict_proba(SAMPLE_TEXTS), second.predict_proba(SAMPLE_TEXTS), strict=True):
        assert a == pytest.approx(b)


@pytest.mark.parametrize(("backend", "min_agreement"), [("torch-int8", 0.93), ("onnx-int8", 0.97)])
def test_quantized_backends_agree_with_fp32_on_held_out_tweets(
    shipped_model: Path, validation_sample: list[str], backend: str, min_agreement: float
) -> None:
    reference = load_classifier("default", "torch", batch_size=32, max_length=128)
    quantized = load_classifier("default", backend, batch_size=32, max_length=128)
    want = reference.predict(validation_sample)
    got = quantized.predict(validation_sample)
    agreement = sum(a.label == b.label for a, b in zip(want, got, strict=True)) / len(want)
    assert agreement >= min_agreement, f"{backend} agrees with fp32 on only {agreement:.1%}"
    assert quantized.labels == reference.labels == ["negative", "neutral", "positive"]
    assert all(0.0 < p.score <= 1.0 for p in got)


def test_onnx_backend_tokenizes_exactly_like_the_transformers_tokenizer(tiny_model: Path) -> None:
    onnx = load_classifier(str(tiny_model), "onnx-int8", max_length=24)
    reference = load_classifier(str(tiny_model), "torch", max_length=24)
    texts = [*SAMPLE_TEXTS, "word " * 100]
    assert isinstance(onnx, BatchedClassifier) and isinstance(reference, BatchedClassifier)
    assert onnx.encoder.token_ids(texts) == reference.encoder.token_ids(texts)


def test_cached_onnx_backend_runs_without_importing_torch(
    tiny_model: Path, isolated_onnx_cache: Path
) -> None:
    """An onnx-int8 worker needs only onnxruntime + tokenizers once the export exists (smaller RSS)."""
    load_classifier(str(tiny_model), "onnx-int8")  # make sure the export is cached
    script = (
        "import sys, json\n"
        "from sentiment_workers.model import load_classifier\n"
        f"c = load_classifier({str(tiny_model)!r}, 'onnx-int8')\n"
        "p = c.predict(['good day', 'bad day'])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules,"
        " 'n': len(p)}))\n"
    )
    env = {**os.environ, "SENTIMENT_ONNX_CACHE_DIR": str(isolated_onnx_cache)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"torch": False, "transformers": False, "n": 2}
