"""``onnx-int8``: the model exported to ONNX with its feed-forward outputs smoothed (``smoothing.py``), its
MatMuls dynamically quantized (int8, per channel) and its word table stored in fp16, run by ONNX Runtime.

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
_FORMAT_VERSION = 4  # bump when export or quantization settings change


def onnx_cache_root() -> Path:
    """``$SENTIMENT_ONNX_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/sentiment-pipeline/onnx``."""
    override = os.environ.get(ONNX_CACHE_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentiment-pipeline" / "onnx"


def cache_key(source: ModelSource, version: int = _FORMAT_VERSION) -> str:
    return f"{source.weights_hash[:16]}-v{version}"


def cached_int8_path(source: ModelSource) -> Path:
    """Where the quantized model for these weights lives: prebuilt inside the model folder if it is there
    (this format, else an earlier one: a model registered with an older release still loads without torch),
    else the cache of this format."""
    for version in range(_FORMAT_VERSION, 0, -1):
        prebuilt = source.path / "onnx" / cache_key(source, version) / INT8_FILE
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

    from sentiment_workers.model.smoothing import smooth_feed_forward_outputs
    from sentiment_workers.model.torch_backend import load_torch_model

    model = load_torch_model(str(model_dir), model_name=model_name)
    smooth_feed_forward_outputs(model, calibration_batches(model_dir, model_name, model.config.to_dict()))

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


def calibration_batches(
    model_dir: Path, model_name: str, config: dict[str, Any], size: int = 16, max_length: int = 128
) -> list[Any]:
    """:data:`calibration.CALIBRATION_TEXTS` tokenized as the runtime does (``tokenizer.json`` when the folder
    has one; truncated to ``max_length`` and to the positions the model has), in padded torch batches for
    :func:`smoothing.smooth_feed_forward_outputs`."""
    import torch

    from sentiment_workers.model.calibration import CALIBRATION_TEXTS
    from sentiment_workers.model.loading import load_tokenizer, usable_positions

    length = min(max_length, usable_positions(config) or max_length)
    tokenizer = load_tokenizer(model_dir, model_name, standalone=True)
    encoder = TextEncoder(tokenizer, length, pad_id=config.get("pad_token_id"))
    batches = []
    for start in range(0, len(CALIBRATION_TEXTS), size):
        batch = encoder.pad(encoder.token_ids(list(CALIBRATION_TEXTS[start : start + size])))
        batches.append(
            {
                "input_ids": torch.from_numpy(batch.input_ids),
                "attention_mask": torch.from_numpy(batch.attention_mask),
            }
        )
    return batches


def quantize_int8(fp32: Path, output: Path) -> None:
    """Dynamic quantization of the MatMuls (int8 per-channel weights, activations quantized at run time); the
    word table is stored in fp16 rather than int8.

    An int8 word table cost the multilingual default 0.7 points of mean dev macro-F1 (and 3.6 on Portuguese);
    fp16 gives the same labels as fp32 on every dev text at a third of the fp32 table's bytes. The
    feed-forward outputs were smoothed before the export (:func:`export_onnx`): unsmoothed, their int8
    MatMuls moved 4.8% of the default's evaluation labels (docs/model-next.md, "Export formats 3 and 4").
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32), str(output), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
    )
    store_word_table_fp16(output, output)


def store_word_table_fp16(source: Path, target: Path) -> None:
    """``source`` with its word table (the Gather that looks up the graph's ``input_ids``) stored as fp16 and
    cast back to fp32 after the lookup: each looked-up row keeps 11 significant bits. A graph without one, or
    whose table another op also reads (tied weights), is written unchanged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    initializers = {i.name: i for i in model.graph.initializer}
    for index, node in enumerate(model.graph.node):
        if node.op_type != "Gather" or node.input[1] != "input_ids" or node.input[0] not in initializers:
            continue
        table = initializers[node.input[0]]
        if sum(table.name in other.input for other in model.graph.node) > 1:
            break
        half = numpy_helper.from_array(numpy_helper.to_array(table).astype(np.float16), f"{table.name}_fp16")
        model.graph.initializer.remove(table)
        model.graph.initializer.append(half)
        looked_up = node.output[0]
        node.input[0] = half.name
        node.output[0] = f"{looked_up}_fp16"
        cast = helper.make_node("Cast", [node.output[0]], [looked_up], to=TensorProto.FLOAT)
        model.graph.node.insert(index + 1, cast)
        break
    onnx.save(model, str(target))


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
