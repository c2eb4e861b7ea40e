"""Sentiment pipeline workers: Kafka consumer, inference worker, sinks and the model runtime.

Importing this package must stay cheap: the operator imports :mod:`sentiment_workers.config`
(the shared configuration contract) and nothing else from here.
"""

__version__ = "0.1.0"
