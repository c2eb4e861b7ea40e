"""``onnx-int8``: the model exported to ONNX, dynamically quantized (int8, per channel), run by ONNX Runtime.

The export is built from the model's weights on first use (or ahead of time, e.g. in an image build, with
``ensure_onnx_int8``) and cached under a key derived from the weights hash, so a change of weights never
reuses a stale file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_workers.model.encoding import EncodedBatch, TextEncoder
from sentiment_workers.model.errors import ModelLoadError
from sentiment_workers.model.runtime import BatchedClassifier
from sentiment_workers.model.source import ModelSource

ONNX_CACHE_ENV = "SENTIMENT_ONNX_CACHE_DIR"
ONNX_OPSET = 17
INT8_FILE = "model.int8.onnx"
_FORMAT_VERSION = "1"  # bump when export or quantization settings change


def onnx_cache_root() -> Path:
    """``$SENTIMENT_ONNX_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/sentiment-pipeline/onnx``."""
    override = os.environ.get(ONNX_CACHE_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentiment-pipeline" / "onnx"


def cache_key(source: ModelSource) -> str:
    return f"{source.weights_hash[:16]}-v{_FORMAT_VERSION}"


def cached_int8_path(source: ModelSource) -> Path:
    """Where the quantized model for these weights lives (inside the model folder if prebuilt there)."""
    prebuilt = source.path / "onnx" / cache_key(source) / INT8_FILE
    if prebuilt.is_file():
        return prebuilt
    return onnx_cache_root() / cache_key(source) / INT8_FILE


def ensure_onnx_int8(source: ModelSource, cache_root: Path | None = None) -> Path:
    """The int8 ONNX file for ``source``: from the cache, or exported and quantized now (atomically)."""
    target = (cache_root / cache_key(source) / INT8_FILE) if cache_root else cached_int8_path(source)
    if target.is_file():
        return target
    try:
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".export-") as tmp:
            work = Path(tmp)
            fp32 = work / "model.fp32.onnx"
            with _quiet():
                export_onnx(source.path, fp32, model_name=source.name)
                quantize_int8(fp32, work / INT8_FILE)
            (work / "model.fp32.onnx").unlink()
            final_dir = work / "final"
            final_dir.mkdir()
            (work / INT8_FILE).rename(final_dir / INT8_FILE)
            try:
                final_dir.rename(target.parent)
            except OSError:  # another process won the race: keep its file
                if not target.is_file():
                    raise
    except ModelLoadError:
        raise
    except OSError as exc:
        raise ModelLoadError(
            source.name, f"cannot write the ONNX cache at {target.parent} ({exc}); set {ONNX_CACHE_ENV}"
        ) from exc
    return target


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the tracer's and the quantizer's advisory warnings (they go to the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_onnx(model_dir: Path, output: Path, *, model_name: str) -> None:
    """Export the fp32 model to ONNX with dynamic batch and sequence axes; outputs ``logits``."""
    import torch

    from sentiment_workers.model.torch_backend import load_torch_model

    model = load_torch_model(str(model_dir), model_name=model_name)

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits

    dummy = torch.ones((2, 8), dtype=torch.long)
    dynamic = {0: "batch", 1: "sequence"}
    with torch.inference_mode():
        torch.onnx.export(
            LogitsOnly(model).eval(),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(output),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "token_type_ids": dynamic,
                "logits": {0: "batch"},
            },
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def quantize_int8(fp32: Path, output: Path) -> None:
    """Dynamic quantization: int8 per-channel weights, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(output), per_channel=True, weight_type=QuantType.QInt8)


class OnnxClassifier(BatchedClassifier):
    """Runs the quantized graph with ONNX Runtime on CPU."""

    def __init__(self, *, onnx_path: Path, encoder: TextEncoder, **kwargs: Any) -> None:
        import onnxruntime as ort

        super().__init__(encoder=encoder, **kwargs)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(str(onnx_path), f"onnxruntime: {exc}") from exc
        self.onnx_path = onnx_path
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _logits(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        (logits,) = self.session.run(["logits"], {k: v for k, v in feeds.items() if k in self._inputs})
        return np.asarray(logits, dtype=np.float32)


def clear_cache(source: ModelSource) -> None:
    """Remove the cached export of ``source`` (tests, or a forced rebuild)."""
    shutil.rmtree(onnx_cache_root() / cache_key(source), ignore_errors=True)
