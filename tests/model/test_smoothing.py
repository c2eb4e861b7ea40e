"""Smoothing the feed-forward outputs before the int8 export (``model/smoothing.py``, export format 4).

On tiny real-architecture models (BERT and XLM-R): the smoothed fp32 model computes what it computed before,
only the feed-forward output layers are replaced, and the scales balance activation and weight ranges as
SmoothQuant's formula says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sentiment_workers.model.onnx_backend import calibration_batches
from sentiment_workers.model.smoothing import (
    SmoothedLinear,
    feed_forward_outputs,
    input_maxima,
    smooth_feed_forward_outputs,
)
from sentiment_workers.model.testing import build_tiny_model
from sentiment_workers.model.torch_backend import load_torch_model


def loaded(path: Path) -> tuple[Any, list[dict[str, torch.Tensor]]]:
    model = load_torch_model(str(path), model_name="tiny")
    return model, calibration_batches(path, "tiny", model.config.to_dict())


@pytest.mark.parametrize("architecture", ["bert", "xlm-roberta"])
def test_the_smoothed_model_computes_the_same_logits(tmp_path: Path, architecture: str) -> None:
    model, batches = loaded(build_tiny_model(tmp_path / architecture, architecture=architecture, seed=3))
    with torch.inference_mode():
        before = [model(**batch).logits for batch in batches]
    smoothed = smooth_feed_forward_outputs(model, batches, alpha=0.75)
    assert len(smoothed) == model.config.num_hidden_layers
    with torch.inference_mode():
        after = [model(**batch).logits for batch in batches]
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_only_each_layer_s_feed_forward_output_is_replaced(tiny_model: Path) -> None:
    model, batches = loaded(tiny_model)
    names = smooth_feed_forward_outputs(model, batches)
    layers = model.config.num_hidden_layers
    assert names == [f"bert.encoder.layer.{i}.output.dense" for i in range(layers)]
    replaced = [name for name, module in model.named_modules() if isinstance(module, SmoothedLinear)]
    assert replaced == names
    attention = model.get_submodule("bert.encoder.layer.0.attention.output.dense")
    assert isinstance(attention, torch.nn.Linear)
    assert feed_forward_outputs(model) == {}  # the wrapped linears are named "...dense.linear" now


def test_with_alpha_one_half_activation_and_weight_ranges_come_out_equal(tiny_model: Path) -> None:
    """s = a ** 0.5 / w ** 0.5, so a / s and w * s are both sqrt(a * w): per channel, the range the int8
    activations must cover equals the range of the weights they meet."""
    model, batches = loaded(tiny_model)
    smooth_feed_forward_outputs(model, batches, alpha=0.5)
    inner = {
        name: module.linear for name, module in model.named_modules() if isinstance(module, SmoothedLinear)
    }
    activations = input_maxima(model, inner, batches)
    for name, linear in inner.items():
        weights = linear.weight.detach().abs().amax(dim=0)
        torch.testing.assert_close(activations[name], weights, rtol=1e-4, atol=1e-6)


def test_calibration_stops_at_the_positions_a_small_model_has(tmp_path: Path) -> None:
    """A model with 18 position rows (XLM-R: 16 usable) gets calibration batches of at most 16 tokens."""
    path = build_tiny_model(tmp_path / "short", architecture="xlm-roberta", max_position_embeddings=18)
    model, batches = loaded(path)
    assert max(batch["input_ids"].shape[1] for batch in batches) == 16
    assert len(smooth_feed_forward_outputs(model, batches)) == model.config.num_hidden_layers


def test_a_model_without_feed_forward_layers_of_known_names_is_left_alone() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert smooth_feed_forward_outputs(model, []) == []
    assert isinstance(model[0], torch.nn.Linear)
