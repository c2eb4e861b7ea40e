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
