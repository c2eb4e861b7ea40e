"""``load_classifier``: resolve a model, pick a backend, size threads, return a ready classifier."""

from __future__ import annotations

from typing import Any

from sentiment_workers.config import DEFAULT_MODEL, ModelBackend
from sentiment_workers.model.contract import SentimentClassifier
from sentiment_workers.model.errors import ModelLoadError
from sentiment_workers.model.labels import resolve_labels
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
    """Load ``model`` ('default', a directory, or a cached hub name) on the chosen backend.

    ``threads`` defaults to the cgroup CPU quota (capped by the affinity mask); ``device`` to cuda when
    available for the ``torch`` backend, else cpu. Raises ``ModelLoadError`` for a missing/invalid model and
    ``ValueError`` for a bad setting.
    """
    try:
        backend = ModelBackend(backend)
    except ValueError:
        choices = ", ".join(b.value for b in ModelBackend)
        raise ValueError(f"unknown model backend {backend!r}; choose one of {choices}") from None
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length < 8:
        raise ValueError(f"max_length must be >= 8, got {max_length}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")

    import torch

    from sentiment_workers.model.encoding import TextEncoder

    source = resolve_model(model)
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    if device is None:
        device = "cuda" if backend is ModelBackend.TORCH and torch.cuda.is_available() else "cpu"
    elif backend is not ModelBackend.TORCH and device != "cpu":
        raise ValueError(f"the {backend.value} backend runs on cpu only, not {device!r}")

    tokenizer = _load_tokenizer(str(source.path), model)
    config = _load_config(str(source.path), model)
    num_labels = int(config.num_labels)
    try:
        labels = resolve_labels(getattr(config, "id2label", None), num_labels)
    except ValueError as exc:
        raise ModelLoadError(model, str(exc)) from exc
    # The tokenizer cannot take more positions than the model has.
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions:
        max_length = min(max_length, int(max_positions))
    encoder = TextEncoder(tokenizer, max_length)
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


def _load_tokenizer(path: str, model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # tokenizers and transformers raise many types for a bad folder
        raise ModelLoadError(model, f"tokenizer: {type(exc).__name__}: {exc}") from exc


def _load_config(path: str, model: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # bad JSON, unknown model_type, ...
        raise ModelLoadError(model, f"config: {type(exc).__name__}: {exc}") from exc
