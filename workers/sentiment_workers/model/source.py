"""Where a model's files are: the shipped default, a local directory, or a Hugging Face cache entry."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sentiment_workers.config import DEFAULT_MODEL
from sentiment_workers.model.errors import ModelLoadError

MODEL_DIR_ENV = "SENTIMENT_MODEL_DIR"
"""Overrides where the default model lives (container images place it outside the source tree)."""
DEFAULT_MODEL_NAME = "sentiment-minilm"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


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
    """The shipped model: ``$SENTIMENT_MODEL_DIR`` if set, else ``models/sentiment-minilm`` in the repo."""
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
    """Turn ``default``, a directory path, or a hub model name into local files.

    Hub names are looked up with ``huggingface_hub``; with ``HF_HUB_OFFLINE=1`` only the local cache is
    consulted, so nothing reaches the network.
    """
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
