"""The sentiment model runtime: load a classifier, label texts. Knows nothing of Kafka, Mongo or MySQL.

Heavy libraries (torch, transformers, onnxruntime) load on the first ``load_classifier`` call.
"""

from sentiment_workers.config import ModelBackend
from sentiment_workers.model.contract import Prediction, SentimentClassifier
from sentiment_workers.model.errors import ModelLoadError
from sentiment_workers.model.loading import load_classifier
from sentiment_workers.model.source import MODEL_DIR_ENV, default_model_dir

__all__ = [
    "MODEL_DIR_ENV",
    "ModelBackend",
    "ModelLoadError",
    "Prediction",
    "SentimentClassifier",
    "default_model_dir",
    "load_classifier",
]
