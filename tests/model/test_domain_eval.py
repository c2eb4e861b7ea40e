"""The hand-labelled evaluation sets (data/eval) and the evaluator that scores models on them.

The sets are checked for what makes a yardstick trustworthy: the format, three labels, roughly balanced
classes, enough sentences per domain, no text twice, none of the default model's training tweets, and a split
that is a pure function of the text. The evaluator's macro-F1 is checked against scikit-learn and by hand.
No test here asserts a model's scores: they are measured and reported (docs/evaluation.md), not pinned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sentiment_workers.training import domain_eval
from sentiment_workers.training.dataset import LABELS, load_examples
from sklearn.metrics import confusion_matrix, f1_score, recall_score

SETS_DIR = Path(__file__).resolve().parents[2] / "data" / "eval"
MIN_PER_SET = 240
REQUIRED_SETS = {"en-products", "en-movies", "en-news", "en-social", "es-reviews", "es-news-social"}
CLI = [sys.executable, "-c", "from sentiment_workers.cli import main; main()"]


@pytest.fixture(scope="module")
def all_sets() -> dict[str, list[domain_eval.EvalItem]]:
    return domain_eval.load_sets(SETS_DIR, split=None)


def test_every_required_domain_has_a_set_of_at_least_240_sentences(
    all_sets: dict[str, list[domain_eval.EvalItem]],
) -> None:
    assert set(all_sets) >= REQUIRED_SETS
    for name, items in all_sets.items():
        assert len(items) >= MIN_PER_SET, name


def test_each_record_names_the_language_and_domain_of_its_file(
    all_sets: dict[str, list[domain_eval.EvalItem]],
) -> None:
    for name, items in all_sets.items():
        lang, domain = name.split("-", 1)
        assert {(item.lang, item.domain) for item in items} == {(lang, domain)}, name


def test_classes_are_roughly_balanced_in_each_set_and_split(
    all_sets: dict[str, list[domain_eval.EvalItem]],
) -> None:
    for name, items in all_sets.items():
        for split in domain_eval.SPLITS:
            counts = Counter(item.label for item in items if item.split == split)
            total = sum(counts.values())
            assert set(counts) == set(LABELS), (name, split)
            assert all(0.2 <= counts[label] / total <= 0.45 for label in LABELS), (name, split, counts)


def test_the_split_is_a_stable_hash_of_the_text_and_about_one_third_dev(
    all_sets: dict[str, list[domain_eval.EvalItem]],
) -> None:
    items = [item for items in all_sets.values() for item in items]
    assert all(item.split == domain_eval.split_for(item.text) for item in items)
    assert domain_eval.split_for("The meeting is at 3pm.") == domain_eval.split_for("The meeting is at 3pm.")
    dev_share = sum(item.split == "dev" for item in items) / len(items)
    assert 0.28 <= dev_share <= 0.38


def test_no_text_appears_twice_across_all_sets(all_sets: dict[str, list[domain_eval.EvalItem]]) -> None:
    texts = Counter(domain_eval.normalised(item.text) for items in all_sets.values() for item in items)
    assert [text for text, n in texts.items() if n > 1] == []


def test_no_text_is_one_of_the_default_models_training_tweets(
    all_sets: dict[str, list[domain_eval.EvalItem]],
) -> None:
    tweets = {domain_eval.normalised(example.text) for example in load_examples()}
    ours = {domain_eval.normalised(item.text) for items in all_sets.values() for item in items}
    assert len(tweets) > 30_000
    assert ours & tweets == set()


def test_loading_one_split_keeps_only_that_split(all_sets: dict[str, list[domain_eval.EvalItem]]) -> None:
    test_sets = domain_eval.load_sets(SETS_DIR, split="test")
    assert set(test_sets) == set(all_sets)
    for name, items in test_sets.items():
        assert items == [item for item in all_sets[name] if item.split == "test"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"text": "ok", "label": "positive"}', "expected exactly the fields"),
        ('{"text": "ok", "label": "happy", "domain": "d", "lang": "en", "split": "test"}', "label 'happy'"),
        ('{"text": "ok", "label": "neutral", "domain": "d", "lang": "en", "split": "dev2"}', "split 'dev2'"),
        ('{"text": " ", "label": "neutral", "domain": "d", "lang": "en", "split": "dev"}', "non-empty"),
    ],
)
def test_a_malformed_record_is_refused_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "en-x.jsonl"
    good = {"text": "fine", "label": "neutral", "domain": "x", "lang": "en", "split": "test"}
    path.write_text(json.dumps(good) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(domain_eval.EvalSetError, match=message) as caught:
        domain_eval.load_set(path)
    assert str(caught.value).startswith("en-x.jsonl:2: ")


def test_macro_f1_accuracy_and_recall_on_a_hand_checked_case() -> None:
    truth = ["negative", "negative", "negative", "neutral", "neutral", "positive", "positive", "positive"]
    predicted = ["negative", "neutral", "negative", "neutral", "positive", "positive", "positive", "neutral"]
    scores = domain_eval.score(truth, predicted)
    # By hand: negative tp2 fp0 fn1 -> F1 4/5; neutral tp1 fp2 fn1 -> 2/5; positive tp2 fp1 fn1 -> 2/3.
    assert scores.macro_f1 == pytest.approx((4 / 5 + 2 / 5 + 2 / 3) / 3)
    assert scores.macro_f1 == pytest.approx(f1_score(truth, predicted, labels=list(LABELS), average="macro"))
    assert scores.accuracy == pytest.approx(5 / 8)
    assert scores.recall == pytest.approx({"negative": 2 / 3, "neutral": 1 / 2, "positive": 2 / 3})
    assert scores.n == 8
    assert scores.confusion == {
        "negative": {"negative": 2, "neutral": 1, "positive": 0},
        "neutral": {"negative": 0, "neutral": 1, "positive": 1},
        "positive": {"negative": 0, "neutral": 1, "positive": 2},
    }
    matrix = confusion_matrix(truth, predicted, labels=list(LABELS)).tolist()
    assert [[scores.confusion[t][p] for p in LABELS] for t in LABELS] == matrix


def test_a_label_never_true_nor_predicted_counts_zero_as_sklearn_does() -> None:
    truth = ["positive", "positive", "neutral", "neutral"]
    predicted = ["positive", "neutral", "neutral", "neutral"]
    scores = domain_eval.score(truth, predicted)
    labels = list(LABELS)
    assert scores.macro_f1 == pytest.approx(
        f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)
    )
    expected_recall = recall_score(truth, predicted, labels=labels, average=None, zero_division=0)
    assert [scores.recall[label] for label in labels] == pytest.approx(list(expected_recall))


def test_scoring_refuses_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        domain_eval.score(["neutral", "neutral"], ["neutral"])
    with pytest.raises(ValueError, match="no examples"):
        domain_eval.score([], [])


def test_every_predictor_is_scored_on_every_set_and_tabulated() -> None:
    item = domain_eval.EvalItem
    sets = {
        "en-a": [item("good", "positive", "a", "en", "test"), item("bad", "negative", "a", "en", "test")],
        "es-b": [item("bueno", "positive", "b", "es", "test")],
    }
    predictors: dict[str, domain_eval.Predictor] = {
        "always positive": lambda texts: ["positive"] * len(texts),
        "echo": lambda texts: ["negative" if text == "bad" else "positive" for text in texts],
    }
    rows = domain_eval.evaluate(sets, predictors)
    assert [(row.set_name, row.predictor, row.scores.accuracy) for row in rows] == [
        ("en-a", "always positive", 0.5),
        ("en-a", "echo", 1.0),
        ("es-b", "always positive", 1.0),
        ("es-b", "echo", 1.0),
    ]
    table = domain_eval.markdown_table(rows).splitlines()
    assert table[0].startswith("| set | predictor | n | macro-F1 | accuracy | recall negative")
    assert table[3] == "| en-a | echo | 2 | 0.667 | 1.000 | 1.000 | 0.000 | 1.000 |"
    assert len(table) == 2 + len(rows)


def run_evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([*CLI, "evaluate", *args], capture_output=True, text=True, env=env, timeout=240)


def test_the_command_scores_a_model_and_vader_on_every_set(tiny_model: Path, tmp_path: Path) -> None:
    sets = tmp_path / "sets"
    sets.mkdir()
    for name in ("en-news", "es-reviews"):  # a slice of two real sets keeps the run short
        lines = (SETS_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        (sets / f"{name}.jsonl").write_text("".join(lines[::15]), encoding="utf-8")
    report = tmp_path / "scores.json"
    result = run_evaluate(
        "--model", str(tiny_model), "--backend", "torch", "--split", "all", "--sets", str(sets),
        "--json", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = domain_eval.load_sets(sets, split=None)
    rows = json.loads(report.read_text(encoding="utf-8"))["rows"]
    assert [(row["set"], row["predictor"]) for row in rows] == [
        (name, predictor)
        for name in ("en-news", "es-reviews")
        for predictor in (f"{tiny_model.name} (torch)", "VADER")
    ]
    assert [row["n"] for row in rows[::2]] == [len(items) for items in expected.values()]
    assert all(0.0 <= row["macro_f1"] <= 1.0 and set(row["recall"]) == set(LABELS) for row in rows)
    for row in rows:  # every text counted once in the confusion counts
        confusion = row["confusion_rows_truth_cols_predicted"]
        assert sum(count for predicted in confusion.values() for count in predicted.values()) == row["n"]
    assert len(result.stdout.splitlines()) == 2 + len(rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sets", "/nonexistent/eval"], "error: /nonexistent/eval: no such folder of evaluation sets"),
        (["--split", "train"], "error: split 'train' is not one of dev, test, all"),
    ],
)
def test_bad_sets_or_split_is_one_error_line(args: list[str], message: str) -> None:
    result = run_evaluate(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == message
