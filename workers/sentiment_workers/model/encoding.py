"""Tokenize once, then pad each length-sorted batch only to its own longest text (dynamic padding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EncodedBatch:
    """int64 arrays shaped (batch, longest-in-batch)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class TextEncoder:
    """Truncates to ``max_length`` and pads per batch.

    Wraps either a ``transformers`` tokenizer or a bare ``tokenizers.Tokenizer`` (loaded from
    ``tokenizer.json``; the ONNX backend uses it to stay free of torch and transformers).
    """

    def __init__(self, tokenizer: Any, max_length: int, pad_id: int | None = None) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._standalone = hasattr(tokenizer, "encode_batch")
        if self._standalone:
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length)
        if pad_id is None:
            pad_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad_id or 0)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (special tokens included, truncated), unpadded."""
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text #{position} is {type(text).__name__}, expected str")
        if self._standalone:
            return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def pad(self, rows: Sequence[list[int]]) -> EncodedBatch:
        """Stack rows into arrays padded to the longest row."""
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        return EncodedBatch(input_ids, attention_mask, np.zeros_like(input_ids))
