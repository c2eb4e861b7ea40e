"""Label names from a model config's ``id2label``, with fallbacks when the config has none."""

from __future__ import annotations

import re
from collections.abc import Mapping

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
