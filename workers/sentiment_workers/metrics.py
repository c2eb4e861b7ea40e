"""Prometheus metrics of the consumer and the inference worker (prometheus-client).

One :class:`PipelineMetrics` per process, registered on the default registry unless a test passes its own.
Names follow Prometheus conventions: ``sentiment_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY

from sentiment_workers.config import BACKLOG_METRIC, STORE_UP_METRIC

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class PipelineMetrics:
    """Every metric the workers export. Each worker touches only its own stage's metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.messages_consumed = Counter(
            "sentiment_messages_consumed_total",
            "Kafka records read by the consumer (valid and invalid).",
            ["topic"],
            registry=r,
        )
        self.messages_staged = Counter(
            "sentiment_messages_staged_total",
            "Valid messages newly written to the staging collection (replays not counted).",
            registry=r,
        )
        self.messages_dead_lettered = Counter(
            "sentiment_messages_dead_lettered_total",
            "Messages set aside in the dead-letter collection, by stage and reason.",
            ["stage", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "sentiment_batch_size_messages",
            "Messages per batch, by stage (consume: per Kafka fetch; infer: per claim).",
            ["stage"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "sentiment_inference_duration_seconds",
            "Wall time of one model call on a claimed batch.",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.texts_classified = Counter(
            "sentiment_texts_classified_total",
            "Texts classified and committed to the warehouse, by predicted label.",
            ["label"],
            registry=r,
        )
        self.pending_backlog = Gauge(
            BACKLOG_METRIC,
            "Staged messages not yet classified (pending or leased).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sentiment_consumer_lag_messages",
            "Kafka high watermark minus the consumer position, per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            "sentiment_end_to_end_latency_seconds",
            "From ingest (stored in staging) to commit in the warehouse.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_retries = Counter(
            "sentiment_store_retries_total",
            "Retried writes or reads after a store was unreachable, by store (mongo, mysql).",
            ["store"],
            registry=r,
        )
        self.store_up = Gauge(
            STORE_UP_METRIC,
            "1 while the worker reaches the store (its last call or probe succeeded), 0 while it cannot.",
            ["store"],
            registry=r,
        )
        self.offsets_committed = Counter(
            "sentiment_kafka_offset_commits_total",
            "Offset commits after a batch was durable in staging.",
            registry=r,
        )
