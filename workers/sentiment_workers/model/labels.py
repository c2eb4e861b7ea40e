"""Label names from a model config's ``id2label``, with fallbacks when the config has none."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SENTIMENT_3 = ("negative", "neutral", "positive")
SENTIMENT_5 = ("very negative", "negative", "neutral", "positive", "very positive")

_GENERIC = re.compile(r"^LABEL_\d+$")


def has_real_labels(id2label: Mapping[int, str] | None) -> bool:
    """Whether the config names its classes (transformers fills in ``LABEL_<i>`` when it does not)."""
    return bool(id2label) and not all(_GENERIC.match(str(name)) for name in id2label.values())  # type: ignore[union-attr]


def resolve_labels(id2label: Mapping[int, str] | None, num_labels: int) -> list[str]:
    """Label names in class-id order.

    The config's ``id2label`` wins. Only when it holds no real names (absent, or transformers'
    ``LABEL_<i>`` placeholders) does a fallback apply: a 5-class head is read as the usual
    very-negative..very-positive scale (e.g. review-star models); any other size keeps ``LABEL_<i>``.
    """
    if id2label and has_real_labels(id2label):
        ids = sorted(int(i) for i in id2label)
        if ids != list(range(num_labels)):
            raise ValueError(f"id2label ids {ids} do not cover the {num_labels} classes of the model head")
        return [str(id2label[i]) for i in ids]
    if num_labels == len(SENTIMENT_5):
        return list(SENTIMENT_5)
    return [f"LABEL_{i}" for i in range(num_labels)]


def labels_from_config(config: Mapping[str, Any]) -> list[str]:
    """Label names from a parsed ``config.json`` (``id2label`` keys are strings there)."""
    raw = config.get("id2label") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("config.json id2label is not a mapping")
    try:
        id2label = {int(key): str(name) for key, name in raw.items()}
    except ValueError as exc:
        raise ValueError(f"config.json id2label has a non-integer id ({exc})") from None
    num_labels = len(id2label) or int(config.get("num_labels", 2))
    return resolve_labels(id2label, num_labels)
