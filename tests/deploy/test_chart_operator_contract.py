"""The chart agrees with what the operator engineer ships: the CRD and RBAC in k8s-manifests/, the
operator's settings (environment variables) and its spec model (the default SentimentPipeline)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sentiment_operator.builders import Owner, build_children
from sentiment_operator.reconcile import backend_problem
from sentiment_operator.settings import OperatorConfig
from sentiment_operator.spec import parse_spec

from tests.deploy.conftest import REPO, HelmFailed, Render


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
    known = {f"SENTIMENT_OPERATOR_{name.upper()}" for name in OperatorConfig.model_fields}
    assert env.keys() <= known, env.keys() - known
    settings = OperatorConfig(**{k.removeprefix("SENTIMENT_OPERATOR_").lower(): v for k, v in env.items()})
    assert settings.namespaces == "team-a,team-b"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (settings.health_port, settings.metrics_port) == (ports["health"], ports["metrics"])


def test_worker_pull_policy_reaches_the_worker_deployments(render: Render) -> None:
    """docs/images.md: `--set worker.image.pullPolicy=Never` (images loaded on the node, no registry) used to
    stop at the Metabase Job: the worker Deployments the operator builds kept IfNotPresent."""
    docs = render("worker.image.pullPolicy=Never")
    container = _component(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("SENTIMENT_OPERATOR_")}
    settings = OperatorConfig(**{k.removeprefix("SENTIMENT_OPERATOR_").lower(): v for k, v in env.items()})
    spec = parse_spec(_component(docs, "SentimentPipeline", "pipeline")["spec"])
    owner = Owner(name="default", namespace="ns", uid="u")
    deployments = [
        child
        for child in build_children(
            spec,
            owner,
            default_image=settings.worker_image,
            default_pull_policy=settings.worker_image_pull_policy,
        )
        if child["kind"] == "Deployment"
    ]
    assert len(deployments) == 2
    for deployment in deployments:
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        assert worker["imagePullPolicy"] == "Never", deployment["metadata"]["name"]
        assert worker["image"] == settings.worker_image


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


def test_pipeline_mode_reaches_the_pipelines_spec(
    render: Render,
) -> None:
    """`pipeline.mode` is the spec's mode: lease by default (consumer + inference), fused on request
    (tests/operator/test_fused_mode.py: what the operator runs then); anything else is refused by the
    schema."""
    default = parse_spec(_component(render(), "SentimentPipeline", "pipeline")["spec"])
    assert default.mode == "lease"
    fused = parse_spec(_component(render("pipeline.mode=fused"), "SentimentPipeline", "pipeline")["spec"])
    assert fused.mode == "fused"
    with pytest.raises(HelmFailed) as failure:
        render("pipeline.mode=batch")
    assert "pipeline.mode" in failure.value.stderr


SAMPLES = REPO / "k8s-manifests" / "samples"
# The install the samples (and the README's quick start) are written for.
SAMPLE_RELEASE, SAMPLE_NAMESPACE = "sentiment-pipeline", "sentiment"


def test_samples_point_at_services_and_secrets_the_chart_creates(render: Render) -> None:
    """The samples named `kafka.sentiment.svc` and `mysql.sentiment.svc`, which no install of the chart
    creates: the workers looped on "store unreachable"."""
    docs = render(release=SAMPLE_RELEASE, namespace=SAMPLE_NAMESPACE)
    services = {
        f"{d['metadata']['name']}.{SAMPLE_NAMESPACE}.svc": {p["port"] for p in d["spec"]["ports"]}
        for d in docs
        if d["kind"] == "Service"
    }
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in docs if d["kind"] == "Secret"}
    pipelines = [
        doc
        for path in sorted(SAMPLES.glob("sentimentpipeline*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "SentimentPipeline"
    ]
    assert len(pipelines) == 5  # minimal, full, HTTP source, fused, MLflow registry model
    for doc in pipelines:
        name = doc["metadata"]["name"]
        assert doc["metadata"]["namespace"] == SAMPLE_NAMESPACE
        spec = parse_spec(doc["spec"])
        for server in spec.source.bootstrap_servers.split(","):
            host, _, port = server.rpartition(":")
            assert int(port) in services.get(host, set()), f"{name}: no Service {server} in the chart"
        assert spec.sink.port in services.get(spec.sink.host, set()), f"{name}: no Service {spec.sink.host}"
        for secret, keys in spec.secret_refs().items():
            assert set(keys) <= secrets.get(secret, set()), f"{name}: Secret {secret} with keys {keys}"


def _render_notes(helm: Path, chart_dir: Path, tmp_path: Path, *set_args: str) -> str:
    """NOTES.txt as `helm install` prints it (`helm template` skips NOTES: render a renamed copy)."""
    chart = tmp_path / "chart"
    shutil.copytree(chart_dir, chart)
    notes = chart / "templates" / "NOTES.txt"
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes" }}' + notes.read_text() + "{{- end }}"
    )
    notes.unlink()
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "notes" . | quote }}\n'
    )
    cmd = [str(helm), "template", SAMPLE_RELEASE, str(chart), "-n", SAMPLE_NAMESPACE]
    cmd += ["--show-only", "templates/notes.yaml"]
    for expr in set_args:
        cmd += ["--set", expr]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def test_notes_produce_from_inside_the_cluster_with_the_worker_image(
    helm: Path, chart_dir: Path, tmp_path: Path
) -> None:
    """The port-forward recipe failed (NodeNotReadyError): the broker advertises its in-cluster name. The
    recipe runs the producer in a pod: the worker image, its pull policy, the chart's Kafka Service."""
    notes = _render_notes(helm, chart_dir, tmp_path, "worker.image.pullPolicy=Never")
    assert "kubectl port-forward" not in notes.split("3. Metabase")[0], "no port-forward to produce"
    run = notes[notes.index("kubectl -n sentiment run") :].split("\n\n")[0]
    flat = " ".join(run.replace("\\\n", " ").split())
    assert "--image=ghcr.io/sentiment-pipeline/worker:" in flat
    assert "--image-pull-policy=Never" in flat
    assert "--env=SENTIMENT_KAFKA_BOOTSTRAP_SERVERS=sentiment-pipeline-kafka.sentiment.svc:9092" in flat
    assert flat.endswith("-- produce --topic messages --count 1000 --no-progress"), flat


def _operator_settings(docs: list[dict[str, Any]]) -> OperatorConfig:
    container = _component(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("SENTIMENT_OPERATOR_")}
    return OperatorConfig(**{k.removeprefix("SENTIMENT_OPERATOR_").lower(): v for k, v in env.items()})


def test_default_install_runs_onnx_int8_on_the_slim_worker_image(render: Render) -> None:
    """The chart defaulted to the torch backend on the torch image (~850 MB of torch for a CPU pipeline)."""
    docs = render()
    settings = _operator_settings(docs)
    spec = parse_spec(_component(docs, "SentimentPipeline", "pipeline")["spec"])
    assert settings.worker_image == "ghcr.io/sentiment-pipeline/worker:0.1.0"
    assert settings.worker_image_backends == "onnx-int8"
    assert spec.model.backend == "onnx-int8"
    assert backend_problem(settings, spec) is None


def test_the_torch_variant_runs_every_backend(render: Render) -> None:
    docs = render("worker.image.variant=torch", "pipeline.modelBackend=torch")
    settings = _operator_settings(docs)
    spec = parse_spec(_component(docs, "SentimentPipeline", "pipeline")["spec"])
    assert settings.worker_image == "ghcr.io/sentiment-pipeline/worker:0.1.0-torch"
    assert backend_problem(settings, spec) is None
    cuda = _operator_settings(render("worker.image.variant=torch", "worker.image.tag=0.1.0-cuda"))
    assert cuda.worker_image == "ghcr.io/sentiment-pipeline/worker:0.1.0-cuda"


def test_a_torch_backend_on_the_slim_image_is_refused_with_the_fix(render: Render) -> None:
    with pytest.raises(HelmFailed) as failure:
        render("pipeline.modelBackend=torch")
    assert "pipeline.modelBackend torch needs torch" in failure.value.stderr
    assert "worker.image.variant=torch" in failure.value.stderr


def test_a_pipeline_asking_torch_of_the_slim_image_is_degraded_with_the_fix() -> None:
    """A CR applied by hand (not through the chart) gets a status that says what to change."""
    settings = OperatorConfig(worker_image="w:0.1.0", worker_image_backends="onnx-int8")
    base = {
        "source": {"bootstrapServers": "k:9092", "topic": "t"},
        "staging": {"mongoSecretRef": {"name": "m"}},
        "sink": {"host": "db", "secretRef": {"name": "s"}},
    }
    problem = backend_problem(settings, parse_spec({**base, "model": {"backend": "torch"}}))
    assert problem is not None and problem.reason == "BackendUnavailable"
    assert "spec.model.backend to onnx-int8" in problem.message and "-torch" in problem.message
    # Its own torch image for inference: the operator cannot know better than the user.
    custom = parse_spec({**base, "model": {"backend": "torch"}, "inference": {"image": "w:0.1.0-torch"}})
    assert backend_problem(settings, custom) is None
