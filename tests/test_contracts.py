"""Contracts between the workers and the operator, which share only ``sentiment_workers.config``."""

from prometheus_client import CollectorRegistry, generate_latest
from sentiment_operator.backlog import (
    backlog_from_exposition,
    refused_from_exposition,
    stores_from_exposition,
)
from sentiment_operator.settings import OperatorConfig
from sentiment_workers.metrics import PipelineMetrics


def test_the_operator_reads_the_backlog_gauge_that_inference_workers_export() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.pending_backlog.set(1234)
    exposition = generate_latest(metrics.registry).decode()

    metric = OperatorConfig().backlog_metric
    assert backlog_from_exposition(exposition, metric) == 1234


def test_the_operator_reads_the_store_reachability_the_workers_export() -> None:
    """The gauge behind the workers' /readyz is the one the operator's status reads (StoreUnreachable)."""
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.store_up.labels("mongo").set(1)
    metrics.store_up.labels("mysql").set(0)
    exposition = generate_latest(metrics.registry).decode()

    metric = OperatorConfig().store_metric
    assert stores_from_exposition(exposition, metric) == {"mongo": True, "mysql": False}


def test_the_operator_reads_which_stores_refuse_the_workers_credentials() -> None:
    """The gauge that tells refused credentials from an outage (StoreAuthFailed vs StoreUnreachable)."""
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.store_failed("mysql", "auth", "MySQL refused the credentials (...)")
    metrics.store_failed("mongo", "unreachable", "MongoDB unreachable (...)")
    metrics.store_reached("kafka")
    exposition = generate_latest(metrics.registry).decode()

    settings = OperatorConfig()
    assert stores_from_exposition(exposition, settings.store_metric) == {
        "kafka": True,
        "mongo": False,
        "mysql": False,
    }
    assert refused_from_exposition(exposition, settings.store_error_metric) == {"mysql"}
