"""PyTorch backends: ``torch`` (fp32, cuda when present) and ``torch-int8`` (dynamic int8 Linear, CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sentiment_workers.model.encoding import EncodedBatch, TextEncoder
from sentiment_workers.model.runtime import BatchedClassifier


def load_torch_model(path: str, *, model_name: str) -> Any:
    """The sequence-classification model in fp32, eval mode (weights may be stored in fp16)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from sentiment_workers.model.errors import ModelLoadError

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=torch.float32, local_files_only=True
        )
    except Exception as exc:  # safetensors, torch and transformers each raise their own types
        raise ModelLoadError(model_name, f"weights: {type(exc).__name__}: {exc}") from exc
    return model.eval()


def quantize_dynamic_int8(model: Any) -> Any:
    """Replace every ``nn.Linear`` with a dynamically quantized int8 version (per-channel weights)."""
    import warnings

    # torch.ao.quantization is deprecated in favour of torchao but still ships (and works) in torch 2.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # Per-channel weight scales: measured 95.7% label agreement with fp32 vs 91.8% per tensor.
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class TorchClassifier(BatchedClassifier):
    """Runs a transformers model under ``torch.inference_mode``."""

    def __init__(self, *, model: Any, encoder: TextEncoder, **kwargs: Any) -> None:
        super().__init__(encoder=encoder, **kwargs)
        self.model = model.to(self.device)
        self._uses_token_types = "token_type_ids" in _forward_args(model)

    def _logits(self, batch: EncodedBatch) -> np.ndarray:
        inputs = {
            "input_ids": torch.from_numpy(batch.input_ids).to(self.device),
            "attention_mask": torch.from_numpy(batch.attention_mask).to(self.device),
        }
        if self._uses_token_types:
            inputs["token_type_ids"] = torch.from_numpy(batch.token_type_ids).to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        return logits.float().cpu().numpy()


def _forward_args(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)
