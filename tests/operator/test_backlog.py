"""Reading the backlog gauge from the workers' Prometheus expositions (pure parts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sentiment_operator.backlog import (
    Scrape,
    Target,
    WorkerReport,
    backlog_from_exposition,
    combine,
    endpoint_pods,
    endpoint_targets,
    stores_from_exposition,
)

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


def test_store_reachability_is_read_from_a_real_exposition():
    registry = CollectorRegistry()
    gauge = Gauge("sentiment_store_up", "reachable", ["store"], registry=registry)
    gauge.labels("kafka").set(1)
    gauge.labels("mongo").set(0)
    text = generate_latest(registry).decode()
    assert stores_from_exposition(text, "sentiment_store_up") == {"kafka": True, "mongo": False}
    assert stores_from_exposition(_exposition(), "sentiment_store_up") == {}


def test_not_ready_pods_are_scraped_for_reachability_but_not_for_the_backlog():
    """A worker that cannot reach a store fails /readyz: it is among the notReadyAddresses."""
    endpoints = {
        "subsets": [
            {
                "addresses": [{"ip": "10.0.0.5", "targetRef": {"kind": "Pod", "name": "p-inference-a"}}],
                "notReadyAddresses": [
                    {"ip": "10.0.0.9", "targetRef": {"kind": "Pod", "name": "p-inference-b"}}
                ],
                "ports": [{"name": "metrics", "port": 9000}],
            }
        ]
    }
    ready, unready = endpoint_pods(endpoints)
    assert ready == Target("10.0.0.5:9000", "p-inference-a", True)
    assert unready == Target("10.0.0.9:9000", "p-inference-b", False)
    scrape = Scrape(
        [
            WorkerReport(ready, True, backlog=10.0, stores={"mysql": True}),
            WorkerReport(unready, True, backlog=99.0, stores={"mysql": False, "mongo": True}),
            WorkerReport(Target("10.0.0.7:9000", "p-consumer-c", False), False),
        ]
    )
    assert scrape.backlog() == 10.0
    assert scrape.unreachable() == {"mysql": ["p-inference-b"]}


def test_a_down_store_is_refused_rejected_or_unreachable_by_the_kind_the_pod_exports():
    """The HTTP poller adds kind "rejected" (the API answered 4xx) to the contract's "auth" and "unreachable":
    each down store of each pod lands in exactly one of the three lists."""
    from sentiment_operator.backlog import faults_from_exposition, refused_from_exposition

    registry = CollectorRegistry()
    error = Gauge("sentiment_store_error", "why", ["store", "kind"], registry=registry)
    error.labels("http", "rejected").set(1)
    error.labels("http", "auth").set(0)
    error.labels("mongo", "auth").set(1)
    text = generate_latest(registry).decode()
    assert faults_from_exposition(text, "sentiment_store_error", "rejected") == {"http"}
    assert refused_from_exposition(text, "sentiment_store_error") == {"mongo"}

    poller = Target("10.0.0.3:9000", "p-poller-a", False)
    consumer = Target("10.0.0.4:9000", "p-consumer-b", False)
    scrape = Scrape(
        [
            WorkerReport(poller, True, stores={"http": False, "kafka": False}, rejected={"http"}),
            WorkerReport(consumer, True, stores={"mongo": False, "kafka": True}, refused={"mongo"}),
        ]
    )
    assert scrape.rejected() == {"http": ["p-poller-a"]}
    assert scrape.refused() == {"mongo": ["p-consumer-b"]}
    assert scrape.unreachable() == {"kafka": ["p-poller-a"]}
