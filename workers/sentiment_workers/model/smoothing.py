"""Smoothing of each transformer layer's feed-forward output before the int8 export (export format 4).

The MatMul after the GELU sees the widest activations: a few of its input channels are tens of times larger
than the rest, so ONNX Runtime's dynamic quantization, which scales a whole activation tensor at once,
rounds the others away. Quantizing it moved 4.8% of the default model's evaluation labels; keeping it in
fp32 (format 3) cost 25-44% of the int8 speed. SmoothQuant (Xiao et al., 2023) moves the range from the
activations into the weights instead: with per-channel scales ``s``, ``x W = (x / s) (s W)`` exactly, and

    s_j = max|x_j| ** alpha / max|W_j| ** (1 - alpha)

balances both (``max|x_j|`` measured on :data:`calibration.CALIBRATION_TEXTS`, ``alpha`` :data:`ALPHA`).
The fp32 model computes the same function before and after; only what int8 rounds changes. Applied to the
torch model before ``torch.onnx.export``, so the graph gets a ``Mul`` by ``1 / s`` before each such MatMul
and every MatMul can be int8.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

FEED_FORWARD_OUTPUT_MODULE = re.compile(r"(^|\.)layer\.\d+\.output\.dense$|(^|\.)ffn\.lin2$")
"""Module names of the ``nn.Linear`` after each layer's GELU in Hugging Face's BERT, RoBERTa and XLM-R
(``layer.N.output.dense``; the attention's is ``attention.output.dense``) and DistilBERT (``ffn.lin2``)."""
ALPHA = 0.75
"""Chosen on the dev splits of ``data/eval`` with the default model: label agreement with fp32 97.4% at
0.75, against 96.4% at 0.85 and 97.0% at 0.95 (0.5: 96.0% on all texts; docs/model-next.md)."""


class SmoothedLinear(torch.nn.Module):
    """``linear`` with its input divided by ``scale`` per channel and its weight columns multiplied by it."""

    inverse_scale: torch.Tensor

    def __init__(self, linear: torch.nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("inverse_scale", (1.0 / scale).to(linear.weight.dtype))
        with torch.no_grad():
            linear.weight.mul_(scale.to(linear.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.linear(x * self.inverse_scale)
        return output


def feed_forward_outputs(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The model's feed-forward output layers by module name (none for an architecture named otherwise)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and FEED_FORWARD_OUTPUT_MODULE.search(name)
    }


def input_maxima(
    model: torch.nn.Module, layers: dict[str, torch.nn.Linear], batches: Sequence[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """``max|x_j|`` of each layer's input per channel over the real (unpadded) tokens of ``batches``."""
    maxima: dict[str, torch.Tensor] = {}
    mask: list[torch.Tensor] = []

    def hook(name: str) -> Any:
        def record(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            real = inputs[0][mask[0].bool()] if inputs[0].dim() == 3 else inputs[0]
            seen = real.abs().amax(dim=0)
            maxima[name] = torch.maximum(maxima[name], seen) if name in maxima else seen

        return record

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    try:
        with torch.inference_mode():
            for batch in batches:
                mask[:] = [batch["attention_mask"]]
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def smooth_feed_forward_outputs(
    model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]], alpha: float = ALPHA
) -> list[str]:
    """Replace each feed-forward output layer of ``model`` by its :class:`SmoothedLinear` (scales from
    ``batches``); returns the names replaced. The model's outputs do not change beyond fp32 rounding."""
    layers = feed_forward_outputs(model)
    if not layers:
        return []
    maxima = input_maxima(model, layers, batches)
    for name, layer in layers.items():
        activation = maxima[name].float().clamp(min=1e-5)
        weight = layer.weight.detach().abs().amax(dim=0).float().clamp(min=1e-5)
        scale = (activation**alpha / weight ** (1 - alpha)).clamp(min=1e-5)
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, SmoothedLinear(layer, scale))
    return list(layers)
