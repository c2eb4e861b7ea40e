"""Contracts between the workers and the operator, which share only ``sentiment_workers.config``."""

from prometheus_client import CollectorRegistry, generate_latest
from sentiment_operator.backlog import backlog_from_exposition
from sentiment_operator.settings import OperatorSettings
from sentiment_workers.metrics import PipelineMetrics


def test_the_operator_reads_the_backlog_gauge_that_inference_workers_export() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.pending_backlog.set(1234)
    exposition = generate_latest(metrics.registry).decode()

    metric = OperatorSettings().backlog_metric
    assert backlog_from_exposition(exposition, metric) == 1234
