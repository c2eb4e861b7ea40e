"""Reading the backlog gauge from the workers' Prometheus expositions (pure parts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sentiment_operator.backlog import backlog_from_exposition, combine, endpoint_targets

METRIC = "sentiment_inference_backlog_messages"


def _exposition(**gauges: float) -> str:
    registry = CollectorRegistry()
    Counter("sentiment_consumer_messages", "consumed", registry=registry).inc(5)
    for name, value in gauges.items():
        Gauge(name, "a gauge", registry=registry).set(value)
    return generate_latest(registry).decode()


def test_the_gauge_is_read_from_a_real_exposition():
    assert backlog_from_exposition(_exposition(**{METRIC: 1234}), METRIC) == 1234


def test_a_pod_without_the_gauge_reports_nothing():
    assert backlog_from_exposition(_exposition(), METRIC) is None


def test_pods_are_combined_by_their_largest_report_and_silence_is_unknown():
    assert combine([None, 10.0, 40.0]) == 40.0
    assert combine([None, None]) is None
    assert combine([]) is None


def test_ready_endpoint_addresses_with_the_metrics_port_are_targets():
    endpoints = {
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.5"}, {"ip": "fd00::7"}],
                "notReadyAddresses": [{"ip": "10.0.0.9"}],
                "ports": [{"name": "metrics", "port": 9000}],
            },
            {"addresses": [{"ip": "10.0.0.6"}], "ports": [{"name": "other", "port": 80}]},
        ]
    }
    assert endpoint_targets(endpoints) == ["10.0.0.5:9000", "[fd00::7]:9000"]
    assert endpoint_targets(None) == []
