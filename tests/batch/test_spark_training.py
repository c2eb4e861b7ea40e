"""The Naive Bayes baseline on Spark (pyspark in local mode; the same code runs on a cluster with
SPARK_MASTER set): it learns the synthetic spam/ham task as the scikit-learn baseline does, with every
metric computed by Spark, and saves a PipelineModel that Spark loads back and applies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sentiment_workers.training import spam_fixture
from sentiment_workers.training.baseline import BaselineSettings
from sentiment_workers.training.spark_nb import SPARK_MODEL_DIR, run_spark_task
from sentiment_workers.training.tasks import PLOT_FILE, TaskSettings

SPAMMY = "URGENT! You have won a £1000 cash prize. Call 09061234567 to claim now"
HAMMY = "see you at the pub at 7 x"


@pytest.fixture(scope="module")
def spark_stopped_afterwards() -> Iterator[None]:
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.mark.slow
def test_naive_bayes_on_spark_learns_spam_and_saves_a_model_spark_serves(
    spark_stopped_afterwards: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    data = spam_fixture.write_csv(tmp_path / "sms.csv", size=600)
    output = tmp_path / "spam-spark"

    small = BaselineSettings(max_features=1 << 14)  # hashed features: small vectors for a small set
    metrics = run_spark_task(TaskSettings(data=str(data), task="spam", baseline=small), output)

    model = metrics["model"]
    assert metrics["kind"] == "baseline-spark" and model["backend"] == "spark"
    assert model["positive_label"] == "spam"
    assert model["macro_f1"] > 0.9 and model["roc_auc"] > 0.9
    assert model["confusion_matrix"]["labels"] == ["ham", "spam"]
    assert 0.1 < metrics["validation"]["size"] / 600 < 0.3  # the hash split holds out about 20%
    assert json.loads((output / "metrics.json").read_text()) == metrics
    assert (output / PLOT_FILE).is_file()

    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    served = PipelineModel.load(str(output / SPARK_MODEL_DIR))
    frame = spark.createDataFrame([(SPAMMY, "spam"), (HAMMY, "ham")], ["text", "label"])
    predicted = {row["text"]: int(row["prediction"]) for row in served.transform(frame).collect()}
    labels = served.stages[0].labels
    assert (labels[predicted[SPAMMY]], labels[predicted[HAMMY]]) == ("spam", "ham")
