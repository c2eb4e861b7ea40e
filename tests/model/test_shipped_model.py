"""The default model ships with the project and classifies offline out of the box."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sentiment_workers.model import load_classifier


def test_shipped_model_has_labels_weights_card_and_metrics(shipped_model: Path) -> None:
    config = json.loads((shipped_model / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    for name in ("tokenizer.json", "tokenizer_config.json", "MODEL_CARD.md", "training_args.json"):
        assert (shipped_model / name).is_file(), name
    size_mb = (shipped_model / "model.safetensors").stat().st_size / 1e6
    assert 35 < size_mb < 60, f"expected fp16 MiniLM weights (~45 MB), found {size_mb:.0f} MB"


def test_recorded_metrics_beat_the_lexicon_baseline_clearly(shipped_model: Path) -> None:
    metrics = json.loads((shipped_model / "metrics.json").read_text())
    model, vader = metrics["model"], metrics["vader_baseline"]
    assert model["n"] == vader["n"] == metrics["validation"]["size"]
    assert model["macro_f1"] >= vader["macro_f1"] + 0.15
    args = json.loads((shipped_model / "training_args.json").read_text())
    assert isinstance(args["settings"]["seed"], int)


def test_default_model_labels_unambiguous_texts(shipped_model: Path) -> None:
    classifier = load_classifier()  # "default", torch
    assert re.fullmatch(r"sentiment-minilm@[0-9a-f]{8}/torch", classifier.model_id)
    texts = {
        "I absolutely love this, what a wonderful day!": "positive",
        "This is terrible, I hate it so much.": "negative",
    }
    predictions = classifier.predict(list(texts))
    assert [p.label for p in predictions] == list(texts.values())
    assert all(p.score > 0.5 for p in predictions)
