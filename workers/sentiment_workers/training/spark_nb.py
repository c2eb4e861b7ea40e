"""The Naive Bayes baseline on Spark, for data sets that outgrow one machine (the ``spark`` extra).

Local mode here (``local[2]``); a cluster in production: set ``SPARK_MASTER`` (``spark://host:7077``,
``yarn``, ``k8s://https://...``) or submit with ``spark-submit``, which sets the master itself. Spark
reads the data (any URL its Hadoop connectors read: ``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``), splits
it by a hash of the text (deterministic, about ``validation_fraction`` of every label), fits
tokenize -> word 1..N-grams -> hashed TF -> IDF -> multinomial Naive Bayes, and computes every metric as a
distributed aggregate: only the confusion counts reach the driver.

The fitted ``PipelineModel`` is saved under ``<output>/spark-model`` (load it with
``pyspark.ml.PipelineModel.load``); it is logged to MLflow with the run when ``MLFLOW_TRACKING_URI`` is set,
not registered: the workers serve the scikit-learn baseline, which this one mirrors (same features, same
smoothing), so the two are compared on the same task.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import structlog

from sentiment_workers.training.tasks import PLOT_FILE, TaskSettings

log = structlog.get_logger("sentiment_workers.training")

SPARK_MODEL_DIR = "spark-model"
DEFAULT_NUM_FEATURES = 1 << 18


def spark_session(app_name: str) -> Any:
    """A session on ``SPARK_MASTER`` (default ``local[2]``), UI off, few shuffle partitions (small jobs)."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", os.environ.get("SPARK_SHUFFLE_PARTITIONS", "2"))
    )
    if "SPARK_MASTER" in os.environ or not os.environ.get("SPARK_HOME"):
        builder = builder.master(os.environ.get("SPARK_MASTER", "local[2]"))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "ERROR"))
    return session


def _read(spark: Any, settings: TaskSettings) -> Any:
    from pyspark.sql import functions as F

    from sentiment_workers.training.labelled import DataError, data_format

    fmt = data_format(settings.data)
    location = settings.data
    if fmt == "parquet":
        frame = spark.read.parquet(location)
    elif fmt == "jsonl":
        frame = spark.read.json(location)
    else:
        frame = (
            spark.read.option("header", True)
            .option("multiLine", True)
            .option("escape", '"')
            .option("sep", "," if fmt == "csv" else "\t")
            .csv(location)
        )
    for column in (settings.text_column, settings.label_column):
        if column not in frame.columns:
            raise DataError(f"{location}: no column {column!r} (columns: {', '.join(frame.columns)})")
    text = F.trim(F.regexp_replace(F.col(settings.text_column).cast("string"), r"\s+", " "))
    label = F.trim(F.col(settings.label_column).cast("string"))
    return (
        frame.select(text.alias("text"), label.alias("label"))
        .where((F.length("text") > 0) & (F.length("label") > 0))
        .dropDuplicates(["text"])
    )


def build_pipeline(settings: TaskSettings, labels: list[str]) -> Any:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import NaiveBayes
    from pyspark.ml.feature import IDF, HashingTF, NGram, RegexTokenizer, SQLTransformer, StringIndexer

    stages: list[Any] = [
        StringIndexer(inputCol="label", outputCol="label_id", stringOrderType="alphabetAsc"),
        RegexTokenizer(inputCol="text", outputCol="w1", pattern=r"\W+", toLowercase=True),
    ]
    grams = ["w1"]
    for n in range(2, settings.baseline.ngram_max + 1):
        stages.append(NGram(n=n, inputCol="w1", outputCol=f"w{n}"))
        grams.append(f"w{n}")
    stages += [
        SQLTransformer(statement=f"SELECT *, concat({', '.join(grams)}) AS terms FROM __THIS__"),
        # Hashed term frequencies: --max-features buckets (the scikit-learn baseline keeps that many terms).
        HashingTF(
            inputCol="terms",
            outputCol="tf",
            numFeatures=settings.baseline.max_features or DEFAULT_NUM_FEATURES,
        ),
        IDF(inputCol="tf", outputCol="features"),
        NaiveBayes(
            featuresCol="features",
            labelCol="label_id",
            modelType="multinomial",
            smoothing=settings.baseline.alpha,
        ),
    ]
    return Pipeline(stages=stages)


def run_spark_task(settings: TaskSettings, output_dir: Path) -> dict[str, Any]:
    """Train and evaluate the Naive Bayes baseline on Spark; write ``spark-model/``, ``metrics.json``,
    ``training_args.json`` and the confusion matrix plot; log the run to MLflow when tracking is on."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from sentiment_workers.training.evaluation import classification_metrics, plot_confusion_matrix
    from sentiment_workers.training.labelled import DataError
    from sentiment_workers.training.pipeline import package_versions
    from sentiment_workers.training.tracking import check_tracking_available, log_and_register

    check_tracking_available()
    spark = spark_session(f"sentiment-pipeline-train-{settings.task}")
    started = time.perf_counter()
    data = _read(spark, settings).cache()
    counts = {row["label"]: int(row["count"]) for row in data.groupBy("label").count().collect()}
    labels = sorted(counts)
    if len(labels) < 2:
        raise DataError(f"a classifier needs at least two labels, the data has {labels}")
    positive = None
    if len(labels) == 2:
        positive = settings.positive_label or min(labels, key=lambda label: (counts[label], label))
    bucket = F.pmod(F.xxhash64(F.col("text"), F.lit(settings.seed)), F.lit(10_000))
    marked = data.withColumn("is_validation", bucket < F.lit(int(settings.validation_fraction * 10_000)))
    train = marked.where(~F.col("is_validation"))
    validation = marked.where(F.col("is_validation"))

    model = build_pipeline(settings, labels).fit(train)
    fitted_labels = list(model.stages[0].labels)
    if fitted_labels != labels:
        raise DataError(f"labels {labels} are not all in the training part ({fitted_labels})")
    predicted = model.transform(validation)
    pairs = predicted.groupBy("label_id", "prediction").count().collect()
    matrix = [[0] * len(labels) for _ in labels]
    for row in pairs:
        matrix[int(row["label_id"])][int(row["prediction"])] += int(row["count"])
    truth = [labels[i] for i in range(len(labels)) for j in range(len(labels)) for _ in range(matrix[i][j])]
    guess = [labels[j] for i in range(len(labels)) for j in range(len(labels)) for _ in range(matrix[i][j])]
    model_metrics: dict[str, Any] = {"backend": "spark", **classification_metrics(truth, guess, labels)}
    if positive is not None:
        index = labels.index(positive)
        scored = predicted.select(
            (F.col("label_id") == F.lit(float(index))).cast("double").alias("is_positive"),
            vector_to_array(F.col("probability"))[index].alias("score"),
        )
        auc = BinaryClassificationEvaluator(
            rawPredictionCol="score", labelCol="is_positive", metricName="areaUnderROC"
        ).evaluate(scored)
        model_metrics["positive_label"] = positive
        model_metrics["roc_auc"] = round(float(auc), 4)
    train_seconds = round(time.perf_counter() - started, 1)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.write().overwrite().save(str(output_dir / SPARK_MODEL_DIR))
    data.unpersist()
    log.info(
        "spark_eval",
        task=settings.task,
        master=spark.sparkContext.master,
        macro_f1=model_metrics["macro_f1"],
        roc_auc=model_metrics.get("roc_auc"),
        seconds=train_seconds,
    )
    plot = plot_confusion_matrix(
        model_metrics, output_dir / PLOT_FILE, f"{settings.task} (Naive Bayes on Spark), n={len(truth)}"
    )
    metrics: dict[str, Any] = {
        "task": settings.task,
        "kind": "baseline-spark",
        "model_id": f"{settings.task}/spark-naive-bayes",
        "validation": {
            "description": f"hash split, ~{settings.validation_fraction:.0%} held out, seed {settings.seed}",
            "size": len(truth),
            "label_counts": {label: sum(matrix[i]) for i, label in enumerate(labels)},
        },
        "model": model_metrics,
        "training": {"spark_master": spark.sparkContext.master, "train_seconds": train_seconds},
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    training_args = {
        "settings": settings.model_dump(),
        "engine": "spark",
        "data": {"location": settings.data, "examples": sum(counts.values()), "labels": labels},
        "versions": {**package_versions(), "pyspark": spark.version},
    }
    (output_dir / "training_args.json").write_text(json.dumps(training_args, indent=2) + "\n")
    tracked = log_and_register(
        task=settings.task,
        run_name=f"{settings.task}-baseline-spark",
        params={
            **{k: v for k, v in settings.model_dump().items() if k not in ("baseline", "finetune")},
            **{f"baseline.{k}": v for k, v in settings.baseline.model_dump().items()},
            "engine": "spark",
        },
        metrics={"model": {k: v for k, v in model_metrics.items() if k != "confusion_matrix"}},
        model_dir=output_dir,
        plot=plot,
        alias=settings.alias,
        tags={"task": settings.task, "kind": "baseline-spark"},
        register=False,
    )
    return {**metrics, "tracking": tracked} if tracked is not None else metrics
