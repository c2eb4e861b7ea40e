"""Tracked, servable training runs against a real ``mlflow server`` (SQLite backend, artifacts proxied by the
server) started by scripts/services.sh: the run's parameters, metrics, plot and model are logged, the model
is registered under the task's name with an alias, and ``models:/NAME@ALIAS`` serves it, in ``classify``
and in the inference worker (MongoDB staging -> model -> MySQL), with the labels the model carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.config import WorkerConfig
from sentiment_workers.messages import SourceRecord, StagedMessage
from sentiment_workers.model import ModelLoadError, load_classifier
from sentiment_workers.training import spam_fixture
from sentiment_workers.training.baseline import BaselineSettings
from sentiment_workers.training.tasks import TaskSettings, run_task

from tests.dataplane.conftest import Services

ROOT = Path(__file__).resolve().parents[2]
SPAMMY = "URGENT! You have won a £1000 cash prize. Call 09061234567 to claim now"
HAMMY = "see you at the pub at 7 x"


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from sentiment_workers.cli import main; main()", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def spam_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spam_fixture.write_csv(tmp_path_factory.mktemp("spam") / "sms.csv")


@pytest.fixture
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("SENTIMENT_MODEL_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def spam_model(
    mlflow_server: str, spam_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One tracked baseline run of ``sentiment-pipeline train`` (its JSON summary), shared by the tests that
    only read what it logged and registered."""
    done = cli(
        "train",
        "--data",
        str(spam_csv),
        "--text-column",
        "text",
        "--label-column",
        "label",
        "--task",
        "spam",
        "--output",
        str(tmp_path_factory.mktemp("trained") / "spam"),
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow_server,
            "MLFLOW_EXPERIMENT_NAME": "tracked-training",
            "SENTIMENT_LOG_LEVEL": "WARNING",
        },
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_tracked_baseline_run_is_logged_registered_aliased_and_served(
    tracking: str, spam_model: dict[str, Any], model_cache: Path
) -> None:
    summary, task = spam_model, "spam"
    assert summary["model"]["macro_f1"] > 0.9 and summary["model"]["roc_auc"] > 0.9
    assert summary["tracking"]["model_uri"] == "models:/spam@champion"
    assert summary["tracking"]["version"] == 1

    client = MlflowClient(tracking)
    run = client.get_run(summary["tracking"]["run_id"])
    assert run.data.params["task"] == task and run.data.params["kind"] == "baseline"
    assert run.data.params["baseline.alpha"] == "0.1"
    assert run.data.metrics["model.macro_f1"] == summary["model"]["macro_f1"]
    assert run.data.metrics["model.roc_auc"] == summary["model"]["roc_auc"]
    assert "model.per_label.spam.f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "model"} <= artifacts
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.skops", "model/config.json", "model/metrics.json"} <= model_files
    version = client.get_model_version_by_alias(task, "champion")
    assert version.version == "1" and version.run_id == run.info.run_id
    assert version.tags["kind"] == "baseline"

    # Served from the registry: downloaded once through the tracking server, labels from the model.
    classifier = load_classifier(f"models:/{task}@champion")
    assert classifier.labels == ["ham", "spam"] and classifier.backend == "sklearn"
    assert classifier.model_id.startswith(f"{task}-v1@")
    assert [p.label for p in classifier.predict([SPAMMY, HAMMY])] == ["spam", "ham"]
    assert (model_cache / task / "1" / "model.skops").is_file()
    by_version = load_classifier(f"models:/{task}/1")
    assert by_version.model_id == classifier.model_id

    # classify serves it too, from the command line.
    classified = cli(
        "classify",
        "--model",
        f"models:/{task}@champion",
        stdin=f"{SPAMMY}\n{HAMMY}\n",
        env={**os.environ, "SENTIMENT_MODEL_CACHE_DIR": str(model_cache)},
    )
    assert classified.returncode == 0, classified.stderr
    assert [json.loads(line)["label"] for line in classified.stdout.splitlines()] == ["spam", "ham"]


def test_retraining_registers_a_new_version_and_moves_the_alias(
    tracking: str, spam_csv: Path, tmp_path: Path, model_cache: Path
) -> None:
    task = "spam-retrained"
    first = run_task(TaskSettings(data=str(spam_csv), task=task), tmp_path / "a")
    second = run_task(
        TaskSettings(data=str(spam_csv), task=task, baseline=BaselineSettings(alpha=0.5)), tmp_path / "b"
    )

    assert (first["tracking"]["version"], second["tracking"]["version"]) == (1, 2)
    assert MlflowClient(tracking).get_model_version_by_alias(task, "champion").version == "2"
    assert load_classifier(f"models:/{task}@champion").model_id.startswith(f"{task}-v2@")
    assert load_classifier(f"models:/{task}/1").model_id.startswith(f"{task}-v1@")


def test_an_unknown_alias_or_model_is_one_clear_load_error(tracking: str, model_cache: Path) -> None:
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_classifier("models:/no-such-model@champion")
    done = cli(
        "classify",
        "--model",
        "models:/no-such-model@x",
        stdin="hello\n",
        env={**os.environ, "SENTIMENT_MODEL_CACHE_DIR": str(model_cache)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("Error: cannot load sentiment model 'models:/no-such-model@x'")
    assert "Traceback" not in done.stderr


async def test_the_inference_worker_serves_a_registered_model_end_to_end(
    tracking: str, spam_model: dict[str, Any], model_cache: Path, data_servers: Services
) -> None:
    task = "spam"
    config: WorkerConfig = data_servers.config("spamworker", model_name=f"models:/{task}@champion")
    store = StagingStore.from_config(config)
    await store.ensure_indexes()
    texts = {
        "m-spam-1": SPAMMY,
        "m-ham-1": HAMMY,
        "m-spam-2": "FREE entry to win a brand new iPhone! Text WIN to 80082",
        "m-ham-2": "Running late, be there in 10 mins. Sorry!!",
    }
    now = datetime.now(UTC).replace(tzinfo=None)
    staged = [
        StagedMessage(
            id=mid,
            comment=text,
            user_id=None,
            created_at=None,
            payload={"id": mid, "text": text},
            source=SourceRecord(topic=config.kafka_topic, partition=0, offset=i, key=None, value=None),
        )
        for i, (mid, text) in enumerate(texts.items())
    ]
    await store.stage(staged, [], now)
    warehouse = await Warehouse.connect(config)
    try:
        env = data_servers.worker_env(config) | {
            "MLFLOW_TRACKING_URI": tracking,
            "SENTIMENT_MODEL_CACHE_DIR": str(model_cache),
            "SENTIMENT_LOG_LEVEL": "WARNING",
        }
        inferred = cli("infer", "--exit-when-idle", "1", env=env)
        assert inferred.returncode == 0, inferred.stderr
        rows = await warehouse._execute(
            f"SELECT id, sentiment_label, model FROM `{config.mysql_table}` ORDER BY id"
        )
        assert {r[0]: r[1] for r in rows} == {
            "m-ham-1": "ham",
            "m-ham-2": "ham",
            "m-spam-1": "spam",
            "m-spam-2": "spam",
        }
        assert {r[2] for r in rows} == {load_classifier(f"models:/{task}@champion").model_id}
        assert rows[0][2].startswith(f"{task}-v1@") and rows[0][2].endswith("/sklearn")
    finally:
        await warehouse._execute(f"DROP TABLE IF EXISTS `{config.mysql_table}`")
        await warehouse.close()
        await store.client.drop_database(config.mongo_database)
        store.close()


def test_a_tracked_fine_tune_is_registered_and_served_on_a_transformer_backend(
    tracking: str, spam_csv: Path, tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTIMENT_ONNX_CACHE_DIR", str(tmp_path / "onnx-cache"))
    from sentiment_workers.model.testing import build_tiny_model
    from sentiment_workers.training.settings import TrainingSettings

    base = build_tiny_model(tmp_path / "tiny-base")  # a tiny BERT stands in for MiniLM: seconds, not minutes
    settings = TaskSettings(
        data=str(spam_csv),
        task="spam-finetuned",
        kind="finetune",
        finetune=TrainingSettings(base_model=str(base), per_class=16, batch_size=8, max_length=32, threads=1),
    )
    metrics = run_task(settings, tmp_path / "ft")

    assert metrics["tracking"]["version"] == 1
    run = MlflowClient(tracking).get_run(metrics["tracking"]["run_id"])
    assert run.data.params["kind"] == "finetune" and run.data.params["finetune.per_class"] == "16"
    assert "model.roc_auc" in run.data.metrics
    classifier = load_classifier("models:/spam-finetuned@champion", "onnx-int8", max_length=32)
    assert classifier.labels == ["ham", "spam"] and classifier.backend == "onnx-int8"
    assert classifier.model_id.startswith("spam-finetuned-v1@")
    assert {p.label for p in classifier.predict([SPAMMY, HAMMY])} <= {"ham", "spam"}
    # The onnx-int8 export was made at training time and registered with the model: loading it exported
    # nothing into the cache.
    assert metrics["training"]["onnx_int8"].startswith("onnx/")
    assert not list((tmp_path / "onnx-cache").rglob("*.onnx"))


def test_a_registered_fine_tune_is_served_by_the_slim_image_runtime(
    tracking: str, spam_csv: Path, tmp_path: Path
) -> None:
    """The slim worker image has no torch and no transformers, so it cannot export a model to ONNX: a
    registered fine-tune serves there only because training baked its onnx-int8 export into the model."""
    from sentiment_workers.model.testing import build_tiny_model
    from sentiment_workers.training.settings import TrainingSettings

    base = build_tiny_model(tmp_path / "tiny-base")
    settings = TaskSettings(
        data=str(spam_csv),
        task="spam-finetuned-slim",
        kind="finetune",
        finetune=TrainingSettings(base_model=str(base), per_class=16, batch_size=8, max_length=32, threads=1),
    )
    run_task(settings, tmp_path / "ft")

    # As the slim image runs: torch and transformers unimportable.
    slim = (
        "import sys\nsys.modules.update(torch=None, transformers=None)\n"
        "from sentiment_workers.cli import main\nmain()\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            slim,
            "classify",
            "--model",
            "models:/spam-finetuned-slim@champion",
            "--backend",
            "onnx-int8",
            "--max-length",
            "32",
        ],
        input=f"{SPAMMY}\n{HAMMY}\n",
        env={
            **os.environ,
            "SENTIMENT_MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
            "SENTIMENT_ONNX_CACHE_DIR": str(tmp_path / "onnx-cache"),
            "SENTIMENT_LOG_LEVEL": "WARNING",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["text"] for line in lines] == [SPAMMY, HAMMY]
    assert {line["label"] for line in lines} <= {"ham", "spam"}
    assert not list((tmp_path / "onnx-cache").rglob("*.onnx"))
