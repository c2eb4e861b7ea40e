"""The operator's own Prometheus metrics (served on ``SENTIMENT_OPERATOR_METRICS_PORT``, path /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "sentiment_operator_reconciles_total",
    "Reconciliations of SentimentPipelines, by trigger and result.",
    ["trigger", "result"],
)
RECONCILE_ERRORS = Counter(
    "sentiment_operator_reconcile_errors_total",
    "Reconciliations that failed with an error, by error type.",
    ["error"],
)
RECONCILE_DURATION = Histogram(
    "sentiment_operator_reconcile_duration_seconds",
    "Wall time of one reconciliation.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHILDREN_APPLIED = Counter(
    "sentiment_operator_children_applied_total",
    "Server-side applies of children, by kind.",
    ["kind"],
)
PIPELINES = Gauge(
    "sentiment_operator_pipelines",
    "SentimentPipelines by phase, as last reconciled.",
    ["phase"],
)
INFERENCE_REPLICAS = Gauge(
    "sentiment_operator_inference_desired_replicas",
    "Inference replicas the operator last asked for, per pipeline.",
    ["namespace", "pipeline"],
)
BACKLOG = Gauge(
    "sentiment_operator_observed_backlog_messages",
    "Backlog last read from the inference workers, per pipeline (NaN when unknown).",
    ["namespace", "pipeline"],
)

_started: set[int] = set()


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from inside the cluster
    """Start the /metrics endpoint once per port (0 disables it)."""
    if port and port not in _started:
        start_http_server(port, addr=addr)
        _started.add(port)
