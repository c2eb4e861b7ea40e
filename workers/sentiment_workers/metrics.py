"""Prometheus metrics of the consumer and the inference worker (prometheus-client).

One :class:`PipelineMetrics` per process, registered on the default registry unless a test passes its own.
Names follow Prometheus conventions: ``sentiment_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY

from sentiment_workers.config import (
    AUTH,
    BACKLOG_METRIC,
    STORE_ERROR_METRIC,
    STORE_FAULT_KINDS,
    STORE_UP_METRIC,
)

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
            "Messages left to classify, the same for every inference pod of a pipeline. Lease mode: staged "
            "messages not classified yet (pending or leased, and those of open fused batches). Fused mode: "
            "the consumer group's Kafka lag over all partitions plus staged messages pending for the lease "
            "path.",
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
        self.store_error = Gauge(
            STORE_ERROR_METRIC,
            "1 for the kind of the last failure to use the store (unreachable; auth: credentials or rights "
            "refused; rejected: requests refused) while sentiment_store_up is 0, else 0.",
            ["store", "kind"],
            registry=r,
        )
        self.store_faults: dict[str, str] = {}
        """``{store: what went wrong}`` while a store cannot be used, for ``/readyz`` (one line each)."""
        self.refused_calls: set[str] = set()
        """Stores that refused the credentials or rights on a real call (not only on a probe)."""
        self.offsets_committed = Counter(
            "sentiment_kafka_offset_commits_total",
            "Offset commits after a batch was durable in staging.",
            registry=r,
        )

    def store_reached(self, store: str, *, probe: bool = False) -> None:
        """The worker used ``store``: up, no fault. A probe that succeeds does not clear refused rights seen
        on a real call (``SELECT 1`` may work for a user who may not write): that call's retry clears it."""
        if probe and store in self.refused_calls:
            return
        self.refused_calls.discard(store)
        self.store_up.labels(store).set(1)
        for kind in STORE_FAULT_KINDS:
            self.store_error.labels(store, kind).set(0)
        self.store_faults.pop(store, None)

    def store_failed(self, store: str, kind: str, message: str, *, probe: bool = False) -> None:
        """The worker could not use ``store``, because of ``kind`` (one of :data:`STORE_FAULT_KINDS`)."""
        if kind not in STORE_FAULT_KINDS:
            raise ValueError(f"unknown store fault kind {kind!r} (known: {', '.join(STORE_FAULT_KINDS)})")
        if probe and store in self.refused_calls:
            return  # the call's refusal stays the reason until a call succeeds
        if not probe:
            (self.refused_calls.add if kind == AUTH else self.refused_calls.discard)(store)
        self.store_up.labels(store).set(0)
        for each in STORE_FAULT_KINDS:
            self.store_error.labels(store, each).set(1 if each == kind else 0)
        self.store_faults[store] = message

    def store_fault(self, store: str) -> str | None:
        """The kind of the current fault of ``store`` (None while it is up or was never tried)."""
        for kind in STORE_FAULT_KINDS:
            if self.registry.get_sample_value(STORE_ERROR_METRIC, {"store": store, "kind": kind}) == 1:
                return kind
        return None
