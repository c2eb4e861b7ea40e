"""The runtime contract on a tiny real-architecture model: probabilities, order, labels, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from sentiment_workers.model import ModelLoadError, Prediction, load_classifier
from sentiment_workers.model.source import DEFAULT_MODEL_NAME
from sentiment_workers.model.testing import build_tiny_model

from .conftest import SAMPLE_TEXTS


def test_predictions_are_valid_probabilities_of_a_known_label(tiny_model: Path) -> None:
    classifier = load_classifier(str(tiny_model), "torch", batch_size=4)
    probabilities = classifier.predict_proba(SAMPLE_TEXTS)
    predictions = classifier.predict(SAMPLE_TEXTS)

    assert len(predictions) == len(probabilities) == len(SAMPLE_TEXTS)
    for probs, prediction in zip(probabilities, predictions, strict=True):
        assert isinstance(prediction, Prediction)
        assert len(probs) == len(classifier.labels)
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-6)
        assert prediction.label == classifier.labels[probs.index(max(probs))]
        assert prediction.score == pytest.approx(max(probs))
        assert 1 / len(classifier.labels) <= prediction.score <= 1.0


def test_output_order_matches_input_whatever_the_batching(tiny_model: Path) -> None:
    """Length-sorted batches and dynamic padding must not change any text's result."""
    one_by_one = load_classifier(str(tiny_model), "torch", batch_size=1)
    batched = load_classifier(str(tiny_model), "torch", batch_size=3)
    expected = [one_by_one.predict_proba([text])[0] for text in SAMPLE_TEXTS]
    got = batched.predict_proba(SAMPLE_TEXTS)
    for want, have in zip(expected, got, strict=True):
        assert have == pytest.approx(want, abs=1e-5)
    reversed_order = batched.predict_proba(SAMPLE_TEXTS[::-1])
    for want, have in zip(expected[::-1], reversed_order, strict=True):
        assert have == pytest.approx(want, abs=1e-5)


def test_empty_input_gives_empty_output(tiny_model: Path) -> None:
    assert load_classifier(str(tiny_model)).predict([]) == []


def test_a_single_string_is_rejected_rather_than_split_into_characters(tiny_model: Path) -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        load_classifier(str(tiny_model)).predict("hello")


def test_non_text_items_get_a_clear_error(tiny_model: Path) -> None:
    mixed: list[Any] = ["fine", 3]
    with pytest.raises(TypeError, match=r"text #1 is int"):
        load_classifier(str(tiny_model)).predict(mixed)


def test_texts_longer_than_max_length_are_truncated_not_rejected(tiny_model: Path) -> None:
    classifier = load_classifier(str(tiny_model), max_length=16)
    long_text = "good " * 2000
    assert classifier.max_length == 16
    (prediction,) = classifier.predict([long_text])
    assert prediction.label in classifier.labels


def test_max_length_is_capped_by_the_models_position_embeddings(tiny_model: Path) -> None:
    classifier = load_classifier(str(tiny_model), max_length=4096)
    assert classifier.max_length == 128  # the tiny model has 128 positions
    assert classifier.predict(["word " * 1000])[0].label in classifier.labels


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_roberta_family_positions_start_after_the_padding_index(tmp_path: Path, backend: str) -> None:
    """XLM-R numbers positions from pad_token_id + 1: 18 position rows with pad 1 take 16 tokens. Capping
    max_length at 18 made a long text index past the table (IndexError on torch, Gather out of bounds on
    onnx-int8)."""
    path = build_tiny_model(tmp_path / "xlmr", architecture="xlm-roberta", max_position_embeddings=18)
    classifier = load_classifier(str(path), backend, max_length=64)
    assert classifier.max_length == 16
    assert classifier.predict(["good " * 200])[0].label in classifier.labels


def test_labels_come_from_the_config_id2label_in_id_order(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "custom", labels=("bad", "meh", "good", "great"))
    classifier = load_classifier(str(path))
    assert classifier.labels == ["bad", "meh", "good", "great"]
    assert {p.label for p in classifier.predict(["a", "b c", "good day"])} <= set(classifier.labels)


def test_five_class_fallback_when_the_config_names_no_labels(tiny_model_without_labels: Path) -> None:
    classifier = load_classifier(str(tiny_model_without_labels))
    assert classifier.labels == ["very negative", "negative", "neutral", "positive", "very positive"]


def test_other_head_sizes_without_names_keep_generic_labels(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path / "four", labels=None, num_labels=4)
    assert load_classifier(str(path)).labels == ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]


def test_model_id_names_the_model_its_weights_and_the_backend(tiny_model: Path) -> None:
    classifier = load_classifier(str(tiny_model), "torch")
    assert re.fullmatch(r"tiny-bert@[0-9a-f]{8}/torch", classifier.model_id)


def test_changed_weights_change_the_model_id(tmp_path: Path) -> None:
    first = load_classifier(str(build_tiny_model(tmp_path / "m", seed=1))).model_id
    second = load_classifier(str(build_tiny_model(tmp_path / "m", seed=2))).model_id
    assert first.split("@")[0] == second.split("@")[0]
    assert first != second


def test_default_model_dir_can_be_overridden_by_env(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", str(tiny_model))
    classifier = load_classifier("default")
    assert classifier.model_id.startswith(f"{DEFAULT_MODEL_NAME}@")
    assert classifier.labels == ["negative", "neutral", "positive"]


def test_missing_directory_raises_model_load_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError) as info:
        load_classifier(str(missing))
    assert info.value.model == str(missing)
    assert "not a model directory" in str(info.value)


def test_directory_without_weights_is_invalid(tmp_path: Path, tiny_model: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="none of the weight files"):
        load_classifier(str(broken))


def test_corrupt_weights_raise_model_load_error(tmp_path: Path, tiny_model: Path) -> None:
    broken = tmp_path / "corrupt"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_model / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=r"weights: .*Error") as info:
        load_classifier(str(broken))
    assert info.value.model == str(broken)


def test_default_model_missing_points_at_the_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTIMENT_MODEL_DIR", str(tmp_path / "absent"))
    with pytest.raises(ModelLoadError, match="SENTIMENT_MODEL_DIR"):
        load_classifier("default")


def test_hub_names_never_reach_the_network_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_classifier("sentiment-pipeline-tests/not-cached-anywhere")
    assert info.value.model == "sentiment-pipeline-tests/not-cached-anywhere"
    assert "HF_HUB_OFFLINE" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "unknown model backend 'tensorrt'"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"max_length": 2}, "max_length must be >= 8"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"backend": "onnx-int8", "device": "cuda"}, "runs on cpu only"),
    ],
)
def test_bad_settings_are_rejected_with_the_reason(tiny_model: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_classifier(str(tiny_model), **kwargs)
