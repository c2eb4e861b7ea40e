"""Prometheus metrics of the HTTP poller, and how it records the API's health for the operator.

The API is the store ``http`` of ``sentiment_store_up``/``sentiment_store_error`` (see
:data:`sentiment_workers.http_source.settings.HTTP_STORE`), with the kinds of
:data:`sentiment_workers.config.STORE_FAULT_KINDS`: ``auth`` (401/403), ``rejected`` (another 4xx, or a 2xx
page the configuration cannot read), ``unreachable`` (connections, timeouts, 5xx after retries).
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter

from sentiment_workers.http_source.client import SourceError
from sentiment_workers.http_source.settings import HTTP_STORE
from sentiment_workers.metrics import PipelineMetrics


class PollerMetrics:
    """The poller's own counters, on the registry of the process's :class:`PipelineMetrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pages = Counter(
            "sentiment_http_pages_total",
            "Pages the API served, by outcome: landed (new), duplicate (already landed), unreadable.",
            ["outcome"],
            registry=registry,
        )
        self.pages_republished = Counter(
            "sentiment_http_pages_republished_total",
            "Landed pages whose records were published from the landing store after a restart.",
            registry=registry,
        )
        self.records_published = Counter(
            "sentiment_http_records_published_total",
            "Records acknowledged by Kafka (a republished page counts again).",
            registry=registry,
        )


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, PollerMetrics] = weakref.WeakKeyDictionary()


def poller_metrics(metrics: PipelineMetrics) -> PollerMetrics:
    """The poller's counters on ``metrics.registry`` (created once per registry)."""
    found = _BY_REGISTRY.get(metrics.registry)
    if found is None:
        found = _BY_REGISTRY[metrics.registry] = PollerMetrics(metrics.registry)
    return found


def api_reached(metrics: PipelineMetrics) -> None:
    """The API served a page."""
    metrics.store_reached(HTTP_STORE)


def api_failed(metrics: PipelineMetrics, error: SourceError) -> None:
    """The API could not give a page, because of ``error.kind``."""
    metrics.store_failed(HTTP_STORE, error.kind, str(error))


def api_fault(metrics: PipelineMetrics) -> str | None:
    """The kind of the API's current fault (None while it serves pages or was never asked)."""
    return metrics.store_fault(HTTP_STORE)
