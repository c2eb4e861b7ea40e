"""``load_classifier``: resolve a model, pick a backend, size threads, return a ready classifier.

A scikit-learn model (``config.json`` ``model_type: sklearn-*``, e.g. the TF-IDF + Naive Bayes baseline) runs
on the ``sklearn`` backend whatever transformer backend is configured: its files say what it is, and a
transformer backend could not run it. Asking for ``sklearn`` with a transformer model is an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentiment_workers.config import DEFAULT_MODEL, ModelBackend
from sentiment_workers.model.contract import SentimentClassifier
from sentiment_workers.model.errors import ModelLoadError
from sentiment_workers.model.labels import labels_from_config
from sentiment_workers.model.sklearn_backend import BACKEND as SKLEARN
from sentiment_workers.model.sklearn_backend import SklearnClassifier, is_sklearn_model, load_pipeline
from sentiment_workers.model.source import resolve_model
from sentiment_workers.model.threads import default_threads


def load_classifier(
    model: str = DEFAULT_MODEL,
    backend: ModelBackend | str = ModelBackend.TORCH,
    *,
    batch_size: int = 32,
    max_length: int = 128,
    device: str | None = None,
    threads: int | None = None,
) -> SentimentClassifier:
    """Load ``model`` ('default', a directory, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` from the
    MLflow registry at ``MLFLOW_TRACKING_URI``, or a cached hub name) on the chosen backend.

    ``threads`` defaults to the cgroup CPU quota (capped by the affinity mask); ``device`` to cuda when
    available for the ``torch`` backend, else cpu. Raises ``ModelLoadError`` for a missing/invalid model and
    ``ValueError`` for a bad setting.
    """
    backend_name = backend.value if isinstance(backend, ModelBackend) else str(backend)
    choices = list(dict.fromkeys([*(b.value for b in ModelBackend), SKLEARN]))
    if backend_name not in choices:
        raise ValueError(f"unknown model backend {backend!r}; choose one of {', '.join(choices)}") from None
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length < 8:
        raise ValueError(f"max_length must be >= 8, got {max_length}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")

    if backend_name != ModelBackend.TORCH.value and device not in (None, "cpu"):
        raise ValueError(f"the {backend_name} backend runs on cpu only, not {device!r}")

    source = resolve_model(model)
    config = _read_config(source.path, model)
    if is_sklearn_model(config):
        if device not in (None, "cpu"):
            raise ValueError(f"a scikit-learn model runs on cpu only, not {device!r}")
        pipeline = load_pipeline(source.path, config, model)
        return SklearnClassifier(
            pipeline=pipeline,
            model_id=f"{source.name}@{source.short_hash}/{SKLEARN}",
            batch_size=batch_size,
            max_length=max_length,
        )
    if backend_name == SKLEARN:
        raise ModelLoadError(
            model, "the sklearn backend runs scikit-learn models; this is a transformer model"
        )
    backend = ModelBackend(backend_name)

    from sentiment_workers.model.encoding import TextEncoder

    threads = threads or default_threads()
    if backend is ModelBackend.ONNX_INT8:
        device = "cpu"  # torch is not even imported once the export is cached
    else:
        import torch

        torch.set_num_threads(threads)
        if device is None:
            device = "cuda" if backend is ModelBackend.TORCH and torch.cuda.is_available() else "cpu"

    try:
        labels = labels_from_config(config)
    except ValueError as exc:
        raise ModelLoadError(model, str(exc)) from exc
    max_length = min(max_length, usable_positions(config) or max_length)
    # onnx-int8 needs only the `tokenizers` library (no transformers, no torch) when tokenizer.json exists.
    tokenizer = load_tokenizer(source.path, model, standalone=backend is ModelBackend.ONNX_INT8)
    encoder = TextEncoder(tokenizer, max_length, pad_id=config.get("pad_token_id"))
    common: dict[str, Any] = {
        "model_id": f"{source.name}@{source.short_hash}/{backend.value}",
        "labels": labels,
        "backend": backend.value,
        "batch_size": batch_size,
        "device": device,
        "threads": threads,
    }

    if backend is ModelBackend.ONNX_INT8:
        from sentiment_workers.model.onnx_backend import OnnxClassifier, ensure_onnx_int8

        onnx_path = ensure_onnx_int8(source)
        return OnnxClassifier(onnx_path=onnx_path, encoder=encoder, **common)

    from sentiment_workers.model.torch_backend import TorchClassifier, load_torch_model, quantize_dynamic_int8

    torch_model = load_torch_model(str(source.path), model_name=model)
    if backend is ModelBackend.TORCH_INT8:
        torch_model = quantize_dynamic_int8(torch_model)
    return TorchClassifier(model=torch_model, encoder=encoder, **common)


def _read_config(path: Path, model: str) -> dict[str, Any]:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(model, f"config.json: {type(exc).__name__}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(model, "config.json is not a JSON object")
    return config


def load_tokenizer(path: Path, model: str, *, standalone: bool) -> Any:
    """The model folder's tokenizer: a bare ``tokenizers.Tokenizer`` from ``tokenizer.json`` when
    ``standalone`` (no transformers needed), else ``AutoTokenizer``; :class:`ModelLoadError` if unreadable."""
    try:
        if standalone and (path / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(path / "tokenizer.json"))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # tokenizers and transformers raise many types for a bad folder
        raise ModelLoadError(model, f"tokenizer: {type(exc).__name__}: {exc}") from exc


PADDING_OFFSET_POSITIONS = frozenset(
    {
        "roberta",
        "xlm-roberta",
        "xlm-roberta-xl",
        "camembert",
        "data2vec-text",
        "roberta-prelayernorm",
        "mpnet",
        "ibert",
        "longformer",
        "xmod",
        "luke",
    }
)
"""Text encoders of transformers that number positions from ``pad_token_id + 1``, not from 0."""


def usable_positions(config: dict[str, Any]) -> int | None:
    """How many tokens the model can take (the tokenizer's cap on ``max_length``); None when unknown.

    ``max_position_embeddings`` rows, less ``pad_token_id + 1`` for the RoBERTa family (XLM-R: 514 rows, 512
    usable): a longer input indexes past the position table (IndexError on torch, a Gather out of bounds on
    onnx-int8)."""
    rows = config.get("max_position_embeddings")
    if not isinstance(rows, int) or rows <= 0:
        return None
    pad = config.get("pad_token_id")
    if config.get("model_type") in PADDING_OFFSET_POSITIONS and isinstance(pad, int):
        rows -= pad + 1
    return rows if rows > 0 else None
