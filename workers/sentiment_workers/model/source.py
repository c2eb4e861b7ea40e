"""Where a model's files are: the shipped default, a local directory, a version in an MLflow model registry
(``models:/NAME@ALIAS``, ``models:/NAME/VERSION``), or a Hugging Face cache entry."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sentiment_workers.config import DEFAULT_MODEL
from sentiment_workers.model.errors import ModelLoadError

MODEL_DIR_ENV = "SENTIMENT_MODEL_DIR"
"""Overrides where the default model lives (container images place it outside the source tree)."""
DEFAULT_MODEL_NAME = "sentiment-e5"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.skops")
REGISTRY_PREFIX = "models:/"
REGISTRY_CACHE_ENV = "SENTIMENT_MODEL_CACHE_DIR"
"""Where registry models are downloaded; default ``${XDG_CACHE_HOME:-~/.cache}/sentiment-pipeline/models``."""
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ModelSource:
    """A model resolved to a local directory, with a short name and a hash of its weights."""

    name: str
    path: Path
    weights_hash: str

    @property
    def short_hash(self) -> str:
        return self.weights_hash[:8]


def default_model_dir() -> Path:
    """The shipped model: ``$SENTIMENT_MODEL_DIR`` if set, else ``models/sentiment-e5`` in the repo."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        return Path(override)
    # workers/sentiment_workers/model/source.py -> repository root is four levels up.
    return Path(__file__).resolve().parents[3] / "models" / DEFAULT_MODEL_NAME


def weights_hash(path: Path) -> str:
    """sha256 of the weight file (and config), identifying exactly what runs."""
    digest = hashlib.sha256()
    for name in (*WEIGHT_FILES, "config.json"):
        file = path / name
        if file.is_file():
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def resolve_model(model: str) -> ModelSource:
    """Turn ``default``, a directory path, a registry URI or a hub model name into local files.

    Hub names are looked up with ``huggingface_hub``; with ``HF_HUB_OFFLINE=1`` only the local cache is
    consulted, so nothing reaches the network. Registry URIs are resolved by the MLflow tracking server at
    ``MLFLOW_TRACKING_URI`` (the user's own server, not the internet).
    """
    if model.startswith(REGISTRY_PREFIX):
        return _registry_source(model)
    if model == DEFAULT_MODEL:
        path = default_model_dir()
        if not path.is_dir():
            raise ModelLoadError(
                model,
                f"the default model directory {path} does not exist (set {MODEL_DIR_ENV} to its location)",
            )
        return _local_source(model, path, name=DEFAULT_MODEL_NAME)
    candidate = Path(model).expanduser()
    if candidate.exists() or model.startswith((".", "/", "~")) or os.sep * 2 in model:
        if not candidate.is_dir():
            raise ModelLoadError(model, f"{candidate} is not a model directory")
        return _local_source(model, candidate, name=candidate.resolve().name)
    return _hub_source(model)


def _local_source(model: str, path: Path, *, name: str) -> ModelSource:
    if not (path / "config.json").is_file():
        raise ModelLoadError(model, f"{path} has no config.json")
    if not any((path / weights).is_file() for weights in WEIGHT_FILES):
        raise ModelLoadError(model, f"{path} has none of the weight files {', '.join(WEIGHT_FILES)}")
    return ModelSource(name=name, path=path, weights_hash=weights_hash(path))


def _hub_source(model: str) -> ModelSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        local = snapshot_download(
            model,
            allow_patterns=["*.json", "*.txt", "*.model", *WEIGHT_FILES],
        )
    except HFValidationError as exc:
        raise ModelLoadError(model, f"not a directory and not a valid model name ({exc})") from exc
    except Exception as exc:  # network, offline mode, missing repo: all mean "cannot load"
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set and the model is not in the local cache)" if offline else ""
        raise ModelLoadError(model, f"{type(exc).__name__}: {exc}{hint}") from exc
    return _local_source(model, Path(local), name=model)


def registry_cache_dir() -> Path:
    override = os.environ.get(REGISTRY_CACHE_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentiment-pipeline" / "models"


def _registry_source(model: str) -> ModelSource:
    """Resolve the alias (or version) with the tracking server, then download that version once.

    Downloads go to ``<cache>/<name>/<version>``, complete or not at all (a temporary folder renamed into
    place), so a restart or a second worker on the same volume reuses them. An alias is resolved at every
    load: moving ``@champion`` to a new version takes effect when the workers restart.
    """
    match = _REGISTRY_URI.match(model)
    if match is None:
        raise ModelLoadError(model, "a registry model is models:/NAME@ALIAS or models:/NAME/VERSION")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise ModelLoadError(
            model, "models:/ URIs are resolved by an MLflow tracking server: set MLFLOW_TRACKING_URI"
        )
    try:
        from mlflow.artifacts import download_artifacts
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ModelLoadError(
            model,
            "models:/ URIs need the MLflow client installed (the 'registry' extra: mlflow-skinny)",
        ) from exc
    name = match["name"]
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # logs, not progress bars
    try:
        client = MlflowClient()
        found = (
            client.get_model_version_by_alias(name, match["alias"])
            if match["alias"]
            else client.get_model_version(name, match["version"])
        )
        version = str(found.version)
        target = registry_cache_dir() / _safe(name) / version
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
            try:
                download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
                try:
                    staging.rename(target)
                except OSError:  # another process finished first: theirs is complete too
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except ModelLoadError:
        raise
    except Exception as exc:  # MlflowException (no such model/alias), connection errors, I/O
        detail = " ".join(str(exc).split())[:300]
        raise ModelLoadError(
            model, f"{type(exc).__name__}: {detail} (tracking server {os.environ['MLFLOW_TRACKING_URI']})"
        ) from exc
    return _local_source(model, target, name=f"{name}-v{version}")


def _safe(name: str) -> str:
    """A registered model name as one path component (names may hold any character)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "model"
    return cleaned if cleaned == name else f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
