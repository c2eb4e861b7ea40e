"""The labels-and-scores contract every backend honours."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Prediction:
    """One classified text: the predicted label and its softmax probability (0..1)."""

    label: str
    score: float


class SentimentClassifier(ABC):
    """A loaded model that labels texts. ``predict`` is synchronous and CPU-bound; order is preserved."""

    model_id: str
    """Identifies model, weights and backend, e.g. ``sentiment-e5@1a2b3c4d/onnx-int8``."""
    labels: list[str]
    """Label names in class-id order (from the model config's ``id2label``)."""
    backend: str
    batch_size: int
    max_length: int

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> list[list[float]]:
        """Class probabilities per text, in ``labels`` order; input order preserved."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The most probable label per text with its probability; input order preserved."""
        predictions = []
        for probs in self.predict_proba(texts):
            best = max(range(len(probs)), key=probs.__getitem__)
            predictions.append(Prediction(label=self.labels[best], score=float(probs[best])))
        return predictions
