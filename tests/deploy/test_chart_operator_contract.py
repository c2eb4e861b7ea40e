"""The chart agrees with what the operator engineer ships: the CRD and RBAC in k8s-manifests/, the
operator's settings (environment variables) and its spec model (the default SentimentPipeline)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from sentiment_operator.settings import OperatorSettings
from sentiment_operator.spec import parse_spec

from tests.deploy.conftest import REPO, Render


def _component(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    return next(
        d
        for d in docs
        if d["kind"] == kind and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    )


def test_chart_crd_is_byte_identical_to_k8s_manifests(chart_dir: Path) -> None:
    source = REPO / "k8s-manifests" / "crds" / "sentimentpipelines.yaml"
    copy = chart_dir / "crds" / "sentimentpipelines.yaml"
    assert copy.read_bytes() == source.read_bytes(), "run scripts/sync-crds.sh"
    crd = yaml.safe_load(copy.read_text())
    assert crd["metadata"]["name"] == "sentimentpipelines.sentiment.io"
    assert crd["spec"]["names"]["shortNames"] == ["sp"]


def test_sync_script_check_mode_reports_the_chart_up_to_date() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "sync-crds.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_rendered_cluster_role_has_exactly_the_rules_of_k8s_manifests(render: Render) -> None:
    manifests = list(yaml.safe_load_all((REPO / "k8s-manifests" / "rbac" / "operator-rbac.yaml").read_text()))
    expected = next(d for d in manifests if d and d["kind"] == "ClusterRole")["rules"]
    docs = render()
    role = _component(docs, "ClusterRole", "operator")
    assert role["rules"] == expected
    binding = _component(docs, "ClusterRoleBinding", "operator")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-sentiment-pipeline-operator", "namespace": "ns"}
    ]


def test_rbac_can_be_left_to_the_cluster_admin(render: Render) -> None:
    docs = render(
        "operator.rbac.create=false",
        "operator.serviceAccount.create=false",
        "operator.serviceAccount.name=ops",
    )
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}]
    operator = _component(docs, "Deployment", "operator")
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_operator_environment_sets_only_settings_the_operator_reads(render: Render) -> None:
    docs = render(values={"operator": {"watchNamespaces": "team-a,team-b"}})
    container = _component(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("SENTIMENT_OPERATOR_")}
    known = {f"SENTIMENT_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    assert env.keys() <= known, env.keys() - known
    settings = OperatorSettings(**{k.removeprefix("SENTIMENT_OPERATOR_").lower(): v for k, v in env.items()})
    assert settings.namespaces == "team-a,team-b"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (settings.health_port, settings.metrics_port) == (ports["health"], ports["metrics"])


def test_default_pipeline_is_a_valid_spec_wired_to_the_in_chart_data_plane(render: Render) -> None:
    docs = render()
    pipeline = _component(docs, "SentimentPipeline", "pipeline")
    assert pipeline["apiVersion"] == "sentiment.io/v1alpha1"
    spec = parse_spec(pipeline["spec"])
    assert spec.source.bootstrap_servers == "rel-sentiment-pipeline-kafka.ns.svc:9092"
    assert spec.sink.host == "rel-sentiment-pipeline-mysql.ns.svc"
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    # Every Secret the operator will check exists in the release with the keys it will read.
    for name, keys in spec.secret_refs().items():
        assert name in secrets, name
        assert set(keys) <= secrets[name]["data"].keys(), (name, keys)


def test_extra_spec_overrides_reach_the_pipeline_and_stay_valid(render: Render) -> None:
    docs = render(
        values={
            "pipeline": {
                "name": "tweets",
                "modelBackend": "onnx-int8",
                "extraSpec": {"autoscaling": {"enabled": True, "maxReplicas": 3}, "state": "paused"},
            }
        }
    )
    pipeline = _component(docs, "SentimentPipeline", "pipeline")
    assert pipeline["metadata"]["name"] == "tweets"
    spec = parse_spec(pipeline["spec"])
    assert spec.model.backend == "onnx-int8"
    assert spec.autoscaling.enabled and spec.autoscaling.max_replicas == 3
    assert spec.state == "paused"
    assert spec.source.topic == "messages"  # untouched defaults survive the merge
