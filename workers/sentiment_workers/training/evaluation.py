"""Scores on the held-out split: accuracy, macro-F1, per-label F1, confusion; VADER baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sentiment_workers.training.dataset import LABELS

VADER_THRESHOLD = 0.05
"""VADER's documented cut-off: compound >= 0.05 positive, <= -0.05 negative, else neutral."""


def classification_metrics(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix (rows = truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(LABELS)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    return {
        "n": len(truth),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro")), 4),
        "per_label": {
            label: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": labels,
            "rows_truth_cols_predicted": confusion_matrix(truth, predicted, labels=labels).tolist(),
        },
    }


def vader_predictions(texts: Sequence[str]) -> list[str]:
    """Lexicon baseline: VADER compound score mapped to negative / neutral / positive."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    labels = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        if compound >= VADER_THRESHOLD:
            labels.append("positive")
        elif compound <= -VADER_THRESHOLD:
            labels.append("negative")
        else:
            labels.append("neutral")
    return labels
