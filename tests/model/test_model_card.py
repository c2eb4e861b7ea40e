"""MODEL_CARD.md rendering (``training/model_card.py``): the MiniLM fine-tune's card and the e5 build's, whose
sentences about its weak spots follow the numbers of ``metrics.json``, not text typed in."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sentiment_workers.training.model_card import (
    int8_loss,
    render_e5_model_card,
    render_model_card,
    weakest_domain,
)

MINILM = Path(__file__).resolve().parents[2] / "models" / "sentiment-minilm"


def scores(macro_f1: float) -> dict[str, Any]:
    return {
        "macro_f1": macro_f1,
        "accuracy": macro_f1,
        "recall": {"negative": 0.5, "neutral": 0.5, "positive": 0.5},
    }


def row(lang: str, domain: str, vader: float, torch: float, int8: float) -> dict[str, Any]:
    return {"lang": lang, "domain": domain, "n": 100, "vader": scores(vader), "torch": scores(torch)} | {
        "onnx-int8": scores(int8)
    }


def metrics() -> dict[str, Any]:
    """A final section shaped as the build writes it: en-news below VADER on dev, Portuguese losing most
    under int8 on both splits."""
    return {
        "chosen_epoch": 1,
        "mean_dev_macro_f1": 0.8,
        "epochs": [{"epoch": 1, "train_seconds": 5, "mean_dev_macro_f1": 0.8, "sets": {}}],
        "final": {
            "sets": "data/eval",
            "threads": 1,
            "max_length": 128,
            "predictors": ["vader", "torch", "onnx-int8"],
            "model": {
                "architecture": "XLMRobertaForSequenceClassification",
                "layers": 12,
                "hidden": 384,
                "heads": 12,
                "vocab_size": 56249,
                "parameters": 43_200_000,
                "word_table_parameters": 21_600_000,
                "onnx_int8": "onnx/k-v2/model.int8.onnx",
                "file_bytes": {"model.safetensors": 86_500_000, "tokenizer.json": 2_200_000}
                | {"onnx/k-v2/model.int8.onnx": 66_300_000},
            },
            "splits": {
                "dev": {
                    "en-news": row("en", "news", 0.738, 0.716, 0.696),
                    "en-social": row("en", "social", 0.686, 0.893, 0.900),
                    "pt-comments": row("pt", "comments", 0.240, 0.861, 0.777),
                },
                "test": {
                    "en-news": row("en", "news", 0.653, 0.722, 0.749),
                    "en-social": row("en", "social", 0.686, 0.872, 0.863),
                    "pt-comments": row("pt", "comments", 0.238, 0.793, 0.763),
                },
            },
            "tweets-heldout": {
                "n": 3723,
                "vader": scores(0.55),
                "torch": scores(0.7777),
                "onnx-int8": scores(0.7764),
            },
        },
    }


def training_args() -> dict[str, Any]:
    settings = {"top_layers": 4, "epochs": 2, "per_class": 6000, "max_length": 128, "seed": 42}
    settings |= {"learning_rate": 5e-5, "head_lr_factor": 20.0, "weight_decay": 0.01, "batch_size": 32}
    settings |= {
        "validation_fraction": 0.1,
        "words": 50000,
        "kept_ids": None,
        "sets": "data/eval",
        "threads": 2,
    }
    return {
        "settings": settings,
        "kept_pieces": 56249,
        "train_examples": 18000,
        "train_pool": 33510,
        "threads_used": 2,
        "data": {"corpus_sha256": "9185be9d77af0c6d" + "0" * 48},
        "versions": {"torch": "2", "python": "3.11"},
        "command": "sentiment-pipeline train --kind e5 --threads 2",
    }


def test_the_minilm_card_still_renders_the_shipped_one_from_its_metrics() -> None:
    rendered = render_model_card(
        json.loads((MINILM / "metrics.json").read_text()),
        json.loads((MINILM / "training_args.json").read_text()),
    )
    assert rendered == (MINILM / "MODEL_CARD.md").read_text()


def test_the_weakest_domain_sentence_names_the_set_nearest_vader_and_says_when_it_is_below() -> None:
    final = metrics()["final"]
    assert weakest_domain(final).startswith(
        "Its weakest domain is en-news (English news): macro-F1 (torch fp32) 0.7160 against VADER's 0.7380 "
        "on dev (-0.0220, below VADER), and 0.7220 against VADER's 0.6530 on test (+0.0690, at least 0.05 "
        "above VADER)."
    )
    assert "It is below VADER on en-news on dev (torch fp32 and onnx-int8)." in weakest_domain(final)

    final["splits"]["dev"]["en-news"]["torch"]["macro_f1"] = 0.80  # en-news now clears VADER on dev
    final["splits"]["dev"]["en-news"]["onnx-int8"]["macro_f1"] = 0.80
    final["splits"]["test"]["pt-comments"]["torch"]["macro_f1"] = 0.25  # pt-comments only just above on test
    sentence = weakest_domain(final)
    assert sentence.startswith(
        "Its weakest domain differs between the splits: on dev en-news, 0.8000 against VADER's 0.7380 on dev "
        "(+0.0620, at least 0.05 above VADER); on test pt-comments, 0.2500 against VADER's 0.2380 on test "
        "(+0.0120, above VADER by less than 0.05)."
    )
    assert "It is not below VADER on any set of either split, on either backend." in sentence
    assert "Above VADER by less than 0.05 (torch fp32): pt-comments on test." in sentence


def test_the_int8_sentence_names_the_language_that_loses_most() -> None:
    final = metrics()["final"]
    assert int8_loss(final) == (
        "Portuguese loses most under onnx-int8: pt-comments -0.0840 on dev; pt-comments -0.0300 on test "
        "(macro-F1 against torch fp32). Mean over the sets: -0.0323 on dev, -0.0040 on test; held-out tweets "
        "-0.0013."
    )
    final["splits"]["test"]["pt-comments"]["onnx-int8"]["macro_f1"] = 0.80
    assert int8_loss(final).startswith(
        "Under onnx-int8 pt-comments -0.0840 on dev; en-social -0.0090 on test (macro-F1 against torch fp32)."
    )
    for rows in final["splits"].values():
        for set_row in rows.values():
            set_row["onnx-int8"] = copy.deepcopy(set_row["torch"])
    assert int8_loss(final).startswith("onnx-int8 loses nothing against torch fp32 on any set.")


def test_the_e5_card_renders_its_tables_and_sentences_from_the_metrics() -> None:
    card = render_e5_model_card(metrics(), training_args())
    assert card.startswith("# sentiment-e5: the default offline sentiment model\n")
    assert card.endswith("under Apache-2.0.\n") and "\n\n\n" not in card
    assert max(len(line) for line in card.splitlines() if not line.startswith("|")) <= 110
    assert "| en-news (100) | 0.7380 | 0.7160 | 0.6960 | -0.0220 | -0.0420 |" in card
    assert "| **mean of 3** | 0.5547 | 0.8233 | 0.7910 | +0.2687 | +0.2363 |" in card
    assert "| sets >= VADER + 0.05 | - | 2/3 | 2/3 |  |  |" in card  # dev
    assert "| sets >= VADER + 0.05 | - | 3/3 | 3/3 |  |  |" in card  # test
    assert "| sentiment-e5 (onnx-int8) | 0.7764 | 0.7764 |" in card
    words = " ".join(card.split())  # the card's paragraphs are refilled
    assert " ".join(weakest_domain(metrics()["final"]).split()) in words
    assert " ".join(int8_loss(metrics()["final"]).split()) in words
    assert "56,249" in card and "43,200,000 parameters" in card and "66.3 MB" in card


def test_the_e5_card_names_the_written_sentences_the_case_flips_and_their_measured_effect() -> None:
    args = training_args()
    args["settings"] |= {"written": "data/train", "written_repeats": 2, "case_flips": 0.3}
    args |= {"written_sentences": 1140, "train_examples": 18000 + 2 * 1140}
    args["data"]["written_sha256"] = "abcdef0123456789" + "0" * 48
    measured = metrics()
    measured["final"]["case_flip"] = {
        "onnx-int8": {
            "en": {"n": 1000, "changed": 20},
            "es": {"n": 500, "changed": 15},
            "all": {"n": 1500, "changed": 35},
        }
    }
    words = " ".join(render_e5_model_card(measured, args).split())
    assert "(18,000 tweets)" in words
    assert "Also trained on 1,140 hand-written, hand-labelled sentences of `data/train`" in words
    assert "sha256 `abcdef0123456789…`), each seen 2 times an epoch" in words
    assert "flipped on a seeded 30% of the training texts" in words
    assert (
        "changes the onnx-int8 label of 35 of the 1,500 evaluation texts (2.3%: English 2.0%, Spanish 3.0%)"
        in words
    )
    assert "Hand-written training sentences (`data/train`): written for the project, Apache-2.0." in words
    # a build without them keeps the older wording and says nothing of written sentences
    plain = " ".join(render_e5_model_card(metrics(), training_args()).split())
    assert (
        "Also trained on" not in plain
        and "Hand-written training" not in plain
        and 'opens with "Pésimo"' in plain
    )
