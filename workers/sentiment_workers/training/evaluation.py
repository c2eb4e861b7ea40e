"""Scores on the held-out split: accuracy, macro-F1, per-label F1, confusion, ROC AUC (binary tasks), a
confusion matrix plot; VADER baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentiment_workers.training.dataset import LABELS

VADER_THRESHOLD = 0.05
"""VADER's documented cut-off: compound >= 0.05 positive, <= -0.05 negative, else neutral."""


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = LABELS
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix (rows = truth)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(labels)
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


def binary_roc_auc(truth: Sequence[str], positive_scores: Sequence[float], positive_label: str) -> float:
    """ROC AUC of ``positive_label`` against the rest, from the model's probability of that label."""
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score([t == positive_label for t in truth], list(positive_scores))), 4)


def plot_confusion_matrix(metrics: dict[str, Any], path: Path, title: str) -> Path:
    """The confusion matrix of ``classification_metrics`` as a PNG (counts, and row-normalised shading)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = metrics["confusion_matrix"]["labels"]
    counts = np.array(metrics["confusion_matrix"]["rows_truth_cols_predicted"])
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(
        f"{title}\naccuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}", fontsize=9
    )
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
