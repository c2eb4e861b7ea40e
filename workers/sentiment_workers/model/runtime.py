"""The shared inference loop: tokenize, sort by length, run each batch, scatter results back in order."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from sentiment_workers.model.batching import length_sorted_batches
from sentiment_workers.model.contract import SentimentClassifier
from sentiment_workers.model.encoding import EncodedBatch, TextEncoder


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for fp16/int8 logits too)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class BatchedClassifier(SentimentClassifier):
    """A classifier whose backend only has to turn one padded batch into logits."""

    def __init__(
        self,
        *,
        model_id: str,
        labels: list[str],
        backend: str,
        encoder: TextEncoder,
        batch_size: int,
        device: str,
        threads: int,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = model_id
        self.labels = labels
        self.backend = backend
        self.encoder = encoder
        self.batch_size = batch_size
        self.max_length = encoder.max_length
        self.device = device
        self.threads = threads

    @abstractmethod
    def _logits(self, batch: EncodedBatch) -> np.ndarray:
        """Logits shaped (batch, len(labels))."""

    def predict_proba(self, texts: Sequence[str]) -> list[list[float]]:
        if isinstance(texts, str):
            raise TypeError("predict() takes a sequence of texts, not a single string")
        if not texts:
            return []
        token_ids = self.encoder.token_ids(texts)
        probabilities = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        for indices in length_sorted_batches([len(ids) for ids in token_ids], self.batch_size):
            batch = self.encoder.pad([token_ids[i] for i in indices])
            probabilities[indices] = softmax(self._logits(batch))
        return probabilities.tolist()
