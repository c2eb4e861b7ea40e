"""The chart's optional monitoring: operator ServiceMonitor, alert rules and Grafana dashboards.

They are off by default (they need the Prometheus Operator CRDs or a Grafana sidecar) and, when on, ship
exactly the files in k8s-manifests/monitoring (tests/test_monitoring.py checks those against the code's
metrics).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import HelmFailed, Render

MONITORING = Path(__file__).resolve().parents[2] / "k8s-manifests" / "monitoring"
ALL_ON = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboards.enabled=true",
)


def test_monitoring_objects_are_off_by_default(render: Render) -> None:
    kinds = {doc["kind"] for doc in render()}
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    assert not [
        d for d in render() if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    ]


def test_prometheus_rule_ships_the_alerts_from_k8s_manifests(render: Render) -> None:
    docs = render(*ALL_ON, "monitoring.prometheusRule.labels.release=kube-prometheus")
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    source = yaml.safe_load((MONITORING / "pipeline-alerts.yaml").read_text())
    assert rule["spec"] == source["spec"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"


def test_grafana_dashboards_are_configmaps_for_the_sidecar(render: Render) -> None:
    docs = render(*ALL_ON)
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    shipped = {name: json.loads(text) for cm in maps for name, text in cm["data"].items()}
    expected = {p.name: json.loads(p.read_text()) for p in MONITORING.glob("grafana-*.json")}
    assert shipped == expected and len(expected) == 2


def test_operator_service_monitor_selects_the_operator_metrics_service(render: Render) -> None:
    docs = render(*ALL_ON, "monitoring.serviceMonitor.interval=15s")
    [monitor] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    [service] = [
        d
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_schema_rejects_a_malformed_scrape_interval(render: Render) -> None:
    with pytest.raises(HelmFailed, match="interval"):
        render("monitoring.serviceMonitor.interval=soon")
