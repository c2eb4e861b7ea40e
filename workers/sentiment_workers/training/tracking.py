"""Optional MLflow logging: only when ``MLFLOW_TRACKING_URI`` is set; mlflow is imported lazily."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def check_tracking_available() -> None:
    """Fail before training, not after, when MLflow logging is asked for but mlflow is missing."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise RuntimeError("MLFLOW_TRACKING_URI is set but mlflow is not installed (pip install mlflow)")


def log_run(params: dict[str, Any], metrics: dict[str, Any], artifacts_dir: Path) -> str | None:
    """Log params, numeric metrics and metadata files to MLflow; the run id, or None when disabled."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    try:
        import mlflow
    except ImportError as exc:
        raise RuntimeError(
            "MLFLOW_TRACKING_URI is set but mlflow is not installed (pip install mlflow)"
        ) from exc
    flat: dict[str, float] = {}
    _flatten("", metrics, flat)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "sentiment-pipeline"))
    with mlflow.start_run() as run:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics({k.replace("@", "_"): v for k, v in flat.items()})
        for name in ("metrics.json", "training_args.json", "MODEL_CARD.md", "config.json"):
            if (artifacts_dir / name).is_file():
                mlflow.log_artifact(str(artifacts_dir / name))
        return str(run.info.run_id)


def log_and_register(
    *,
    task: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    model_dir: Path,
    plot: Path,
    alias: str,
    tags: dict[str, str],
    register: bool = True,
) -> dict[str, Any] | None:
    """With ``MLFLOW_TRACKING_URI`` set: one run with ``params``, the numeric ``metrics`` (flattened:
    ``model.macro_f1``...), the plot and the model directory (artifact path ``model``); the model registered
    as a new version of ``task`` and given ``alias`` (``models:/<task>@<alias>`` then serves it) unless
    ``register`` is false. None when tracking is off.

    The registered version's source is the run's ``model`` artifact folder: the same files the runtime loads
    from a path (``config.json`` names the kind of model), downloaded through the tracking server.
    """
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    flat: dict[str, float] = {}
    _flatten("", metrics, flat)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "sentiment-pipeline"))
    client = MlflowClient()
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics(flat)
        mlflow.log_artifact(str(plot))
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
        source = mlflow.get_artifact_uri("model")
        run_id = str(run.info.run_id)
    if not register:
        return {"run_id": run_id, "artifacts": source}
    try:
        client.create_registered_model(task, tags={"task": task})
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(task, source=source, run_id=run_id, tags=tags)
    client.set_registered_model_alias(task, alias, version.version)
    return {
        "run_id": run_id,
        "registered_model": task,
        "version": int(version.version),
        "alias": alias,
        "model_uri": f"models:/{task}@{alias}",
    }
