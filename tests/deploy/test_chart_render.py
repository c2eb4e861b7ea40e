"""The Helm chart, rendered by the real helm binary: lint, structure, security defaults, secrets, schema.

Every assertion reads the manifests ``helm template`` produces (or helm's own refusal)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import HelmFailed, Render

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
PASSWORD_KEYS = {"root-password", "password", "bi-password", "admin-password", "encryption-key"}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [
        d for d in by_kind(docs, kind) if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


@pytest.fixture(scope="module")
def default_docs(render: Render) -> list[dict[str, Any]]:
    return render()


def test_helm_lint_passes_in_strict_mode(helm: Path, chart_dir: Path) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(chart_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_default_install_has_operator_rbac_data_plane_metabase_and_pipeline(
    default_docs: list[dict[str, Any]],
) -> None:
    kinds = {(d["kind"], d["metadata"]["labels"].get("app.kubernetes.io/component")) for d in default_docs}
    for expected in [
        ("Deployment", "operator"),
        ("ServiceAccount", "operator"),
        ("ClusterRole", "operator"),
        ("ClusterRoleBinding", "operator"),
        ("StatefulSet", "kafka"),
        ("StatefulSet", "mongodb"),
        ("StatefulSet", "mysql"),
        ("Deployment", "metabase"),
        ("PersistentVolumeClaim", "metabase"),
        ("Job", "metabase-provisioner"),
        ("SentimentPipeline", "pipeline"),
    ]:
        assert expected in kinds, f"{expected} missing from the default render"


def test_every_resource_carries_the_recommended_labels(default_docs: list[dict[str, Any]]) -> None:
    for doc in default_docs:
        labels = doc["metadata"]["labels"]
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/name"] == "sentiment-pipeline", where
        assert labels["app.kubernetes.io/instance"] == "rel", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["app.kubernetes.io/part-of"] == "sentiment-pipeline", where
        assert labels["app.kubernetes.io/component"], where
        assert re.fullmatch(r"sentiment-pipeline-\d+\.\d+\.\d+.*", labels["helm.sh/chart"]), where
        assert len(doc["metadata"]["name"]) <= 63, where


def test_selectors_match_their_pod_templates_and_services(default_docs: list[dict[str, Any]]) -> None:
    pods = {}
    for doc in default_docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            selector = doc["spec"]["selector"]["matchLabels"]
            template_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= template_labels.items(), doc["metadata"]["name"]
            pods[doc["metadata"]["name"]] = template_labels
    for svc in by_kind(default_docs, "Service"):
        matched = [n for n, labels in pods.items() if svc["spec"]["selector"].items() <= labels.items()]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {matched}"


def test_every_pod_runs_non_root_read_only_without_capabilities(default_docs: list[dict[str, Any]]) -> None:
    specs = dict(pod_specs(default_docs))
    assert len(specs) == 6  # operator, kafka, mongodb, mysql, metabase, provisioner Job
    for where, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), where
            assert {"cpu", "memory"} <= resources["limits"].keys(), where
            # Writable paths the images need are volumes, never the root filesystem.
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, where


def test_long_running_containers_have_probes(default_docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(default_docs):
        if where.startswith("Job/"):
            continue
        for container in spec["containers"]:
            assert "readinessProbe" in container and "livenessProbe" in container, where


def test_only_the_operator_gets_a_service_account_token(default_docs: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(default_docs):
        expected = where == "Deployment/rel-sentiment-pipeline-operator"
        assert spec["automountServiceAccountToken"] is expected, where
    operator = one(default_docs, "Deployment", "operator")["spec"]["template"]["spec"]
    assert operator["serviceAccountName"] == "rel-sentiment-pipeline-operator"


def test_operator_runs_the_decided_image_command_and_probes_kopf_health(
    default_docs: list[dict[str, Any]],
) -> None:
    deploy = one(default_docs, "Deployment", "operator")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/sentiment-pipeline/operator:0.1.0"
    assert container["command"] == ["python", "-m", "sentiment_operator"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = env_of(container)
    assert env["SENTIMENT_OPERATOR_HEALTH_PORT"] == str(ports["health"])
    assert env["SENTIMENT_OPERATOR_METRICS_PORT"] == str(ports["metrics"])
    assert env["SENTIMENT_OPERATOR_WORKER_IMAGE"] == "ghcr.io/sentiment-pipeline/worker:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_image_tags_default_to_app_version_and_can_be_pinned(render: Render) -> None:
    docs = render("operator.image.tag=9.9.9", "worker.image.tag=1.2.3")
    operator = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == "ghcr.io/sentiment-pipeline/operator:9.9.9"
    assert env_of(operator)["SENTIMENT_OPERATOR_WORKER_IMAGE"] == "ghcr.io/sentiment-pipeline/worker:1.2.3"
    job = one(docs, "Job", "metabase-provisioner")["spec"]["template"]["spec"]["containers"][0]
    assert job["image"] == "ghcr.io/sentiment-pipeline/worker:1.2.3"
    assert job["command"] == ["sentiment-pipeline", "metabase", "provision"]


def test_generated_passwords_are_random_strong_and_never_repeated(render: Render) -> None:
    first = {s["metadata"]["name"]: secret_data(s) for s in by_kind(render(), "Secret")}
    second = {s["metadata"]["name"]: secret_data(s) for s in by_kind(render(), "Secret")}
    assert set(first) == {
        "rel-sentiment-pipeline-mongodb",
        "rel-sentiment-pipeline-mysql",
        "rel-sentiment-pipeline-metabase",
    }
    seen: set[str] = set()
    for name, data in first.items():
        for key in PASSWORD_KEYS & data.keys():
            value = data[key]
            assert len(value) >= 24 and re.search(r"\d", value), (name, key)
            assert value != second[name][key], f"{name}/{key} is not random"
            assert value not in seen, f"{name}/{key} reuses another password"
            seen.add(value)


def test_generated_secrets_are_kept_on_uninstall(default_docs: list[dict[str, Any]]) -> None:
    for secret in by_kind(default_docs, "Secret"):
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_credentials_reach_containers_only_as_secret_references(default_docs: list[dict[str, Any]]) -> None:
    secret_values = {
        v for s in by_kind(default_docs, "Secret") for v in secret_data(s).values() if len(v) >= 16
    }
    rendered_elsewhere = yaml.safe_dump_all([d for d in default_docs if d["kind"] != "Secret"])
    for value in secret_values:
        assert value not in rendered_elsewhere
    for where, spec in pod_specs(default_docs):
        for container in spec["containers"]:
            for name, value in env_of(container).items():
                if re.search(r"PASSWORD|SECRET|ENCRYPTION", name):
                    assert isinstance(value, dict) and "secretKeyRef" in value, (where, name)


def test_mongodb_uri_secret_points_workers_at_the_in_chart_server(default_docs: list[dict[str, Any]]) -> None:
    data = secret_data(
        next(s for s in by_kind(default_docs, "Secret") if s["metadata"]["name"].endswith("mongodb"))
    )
    assert data["uri"] == (
        f"mongodb://sentiment:{data['password']}@rel-sentiment-pipeline-mongodb.ns.svc:27017/sentiment"
        "?authSource=sentiment"
    )


def test_existing_secrets_replace_generated_ones(render: Render) -> None:
    docs = render(
        "mongodb.auth.existingSecret=my-mongo",
        "mysql.auth.existingSecret=my-mysql",
        "metabase.existingSecret=my-metabase",
    )
    assert by_kind(docs, "Secret") == []
    refs = {
        (v["secretKeyRef"]["name"], v["secretKeyRef"]["key"])
        for _, spec in pod_specs(docs)
        for c in spec["containers"]
        for v in env_of(c).values()
        if isinstance(v, dict) and "secretKeyRef" in v
    }
    assert {("my-mongo", "root-password"), ("my-mongo", "password")} <= refs
    assert {("my-mysql", "root-password"), ("my-mysql", "password"), ("my-mysql", "bi-password")} <= refs
    assert {("my-metabase", "admin-password"), ("my-metabase", "encryption-key")} <= refs
    pipeline = by_kind(docs, "SentimentPipeline")[0]["spec"]
    assert pipeline["staging"]["mongoSecretRef"] == {"name": "my-mongo"}
    assert pipeline["sink"]["secretRef"] == {"name": "my-mysql"}


def test_metabase_connects_with_the_read_only_bi_user(default_docs: list[dict[str, Any]]) -> None:
    job = one(default_docs, "Job", "metabase-provisioner")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["SENTIMENT_METABASE_WAREHOUSE_USER"] == {
        "secretKeyRef": {"name": "rel-sentiment-pipeline-mysql", "key": "bi-username"}
    }
    assert env["SENTIMENT_METABASE_WAREHOUSE_PASSWORD"] == {
        "secretKeyRef": {"name": "rel-sentiment-pipeline-mysql", "key": "bi-password"}
    }
    assert env["SENTIMENT_METABASE_URL"] == "http://rel-sentiment-pipeline-metabase.ns.svc:3000"
    mysql_secret = secret_data(
        next(s for s in by_kind(default_docs, "Secret") if s["metadata"]["name"].endswith("mysql"))
    )
    assert mysql_secret["bi-username"] == "metabase_ro" != mysql_secret["username"]


def test_metabase_is_the_lts_release_provisioned_with_the_specified_dashboard(
    default_docs: list[dict[str, Any]], render: Render
) -> None:
    container = one(default_docs, "Deployment", "metabase")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "metabase/metabase:v0.58.39"  # the v0.58 LTS line (docs/metabase.md)
    env = env_of(
        one(default_docs, "Job", "metabase-provisioner")["spec"]["template"]["spec"]["containers"][0]
    )
    assert env["SENTIMENT_METABASE_DASHBOARD_NAME"] == "Sentiment_Streaming_Kafka_Mongo_DL_MySQL"
    assert (env["SENTIMENT_METABASE_BY_SENTIMENT_DISPLAY"], env["SENTIMENT_METABASE_PER_DAY_DISPLAY"]) == (
        "bar",
        "line",
    )
    docs = render("metabase.provisioner.bySentimentDisplay=pie", "metabase.provisioner.perDayDisplay=area")
    env = env_of(one(docs, "Job", "metabase-provisioner")["spec"]["template"]["spec"]["containers"][0])
    assert (env["SENTIMENT_METABASE_BY_SENTIMENT_DISPLAY"], env["SENTIMENT_METABASE_PER_DAY_DISPLAY"]) == (
        "pie",
        "area",
    )


def render_notes(helm: Path, chart_dir: Path, tmp_path: Path, *set_args: str, upgrade: bool = False) -> str:
    """NOTES.txt as `helm install` prints it: helm template skips NOTES, so a copy of the chart renders it
    through a ConfigMap (`tpl` of the same file, same values)."""
    chart = tmp_path / "chart"
    shutil.copytree(chart_dir, chart)
    (chart / "notes.txt").write_text((chart_dir / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    cmd = [str(helm), "template", "rel", str(chart), "-n", "ns", "--show-only", "templates/notes-cm.yaml"]
    cmd += ["--is-upgrade"] if upgrade else []
    for expr in set_args:
        cmd += ["--set", expr]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    notes: str = yaml.safe_load(result.stdout)["data"]["notes"]
    return notes


def test_notes_tell_gitops_users_to_bring_their_own_secrets(
    helm: Path, chart_dir: Path, tmp_path: Path
) -> None:
    """Rendered without a cluster (helm template, Argo CD), `lookup` finds nothing and every render would
    generate new passwords and a new Metabase encryption key: NOTES say so and name the values to set."""
    generated = render_notes(helm, chart_dir, tmp_path / "a")
    assert "helm template" in generated and "can no longer decrypt" in generated
    assert "mongodb.auth.existingSecret, mysql.auth.existingSecret, metabase.existingSecret" in generated
    assert 'dashboard "Sentiment_Streaming_Kafka_Mongo_DL_MySQL"' in generated
    partly = render_notes(
        helm, chart_dir, tmp_path / "b", "mysql.auth.existingSecret=m", "metabase.existingSecret=b"
    )
    assert "set: mongodb.auth.existingSecret." in partly
    own = render_notes(
        helm,
        chart_dir,
        tmp_path / "c",
        "mongodb.auth.existingSecret=a",
        "mysql.auth.existingSecret=m",
        "metabase.existingSecret=b",
    )
    assert "WARNING" not in own


def test_notes_of_an_upgrade_say_that_helm_leaves_the_crd_as_it_was(
    helm: Path, chart_dir: Path, tmp_path: Path
) -> None:
    """Helm never upgrades crds/: `helm upgrade` NOTES give the command that applies this release's CRD (a
    newer spec field would be pruned without it); a first install, which does install it, does not."""
    upgrade = render_notes(helm, chart_dir, tmp_path / "u", upgrade=True)
    assert "helm show crds <this chart> | kubectl apply --server-side --force-conflicts -f -" in upgrade
    assert "Helm does not upgrade CRDs" not in render_notes(helm, chart_dir, tmp_path / "i")


def test_data_plane_components_can_each_be_disabled(render: Render) -> None:
    external = {
        "source": {"bootstrapServers": "kafka.example:9092"},
        "staging": {"mongoSecretRef": {"name": "ext-mongo"}},
        "sink": {"host": "mysql.example", "secretRef": {"name": "ext-mysql"}},
    }
    docs = render(
        values={
            "kafka": {"enabled": False},
            "mongodb": {"enabled": False},
            "mysql": {"enabled": False, "auth": {"existingSecret": "ext-mysql"}},
            "metabase": {"enabled": False},
            "pipeline": {"extraSpec": external},
        }
    )
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs}
    assert components == {"operator", "pipeline"}
    spec = by_kind(docs, "SentimentPipeline")[0]["spec"]
    assert spec["source"]["bootstrapServers"] == "kafka.example:9092"
    assert spec["sink"]["host"] == "mysql.example"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka": {"enabled": False}}, "pipeline.extraSpec.source.bootstrapServers"),
        ({"mongodb": {"enabled": False}}, "pipeline.extraSpec.staging.mongoSecretRef.name"),
        ({"mysql": {"enabled": False}}, "pipeline.extraSpec.sink.host"),
        (
            {"metabase": {"appDatabase": {"type": "external"}}},
            "metabase.appDatabase.existingSecret is required",
        ),
    ],
)
def test_incomplete_bring_your_own_settings_fail_with_a_clear_message(
    render: Render, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed) as failure:
        render(values=values)
    assert message in failure.value.stderr


@pytest.mark.parametrize(
    ("set_arg", "complaint"),
    [
        ("unknownTopLevel=1", "Additional property unknownTopLevel is not allowed"),
        ("kafka.port=0", "kafka.port"),
        ("kafka.clusterId=short", "kafka.clusterId"),
        ("mysql.auth.biUsername=bi'; DROP USER root; --", "mysql.auth.biUsername"),
        ("mysql.auth.database=sent-iment", "mysql.auth.database"),
        ("pipeline.modelBackend=tensorflow", "pipeline.modelBackend"),
        ("pipeline.table=1bad", "pipeline.table"),
        ("metabase.appDatabase.type=postgres", "metabase.appDatabase.type"),
        ("metabase.admin.email=not-an-email", "metabase.admin.email"),
        ("metabase.provisioner.bySentimentDisplay=donut", "metabase.provisioner.bySentimentDisplay"),
        ("metabase.provisioner.perDayDisplay=scatter", "metabase.provisioner.perDayDisplay"),
        ("operator.image.pullPolicy=Sometimes", "operator.image.pullPolicy"),
        # kopf runs standalone (no peering): two replicas were two active reconcilers and autoscalers.
        ("operator.replicaCount=2", "operator.replicaCount"),
        ("mongodb.persistence.size=lots", "mongodb.persistence.size"),
        ("kafka.resources.limits.memory=a lot", "kafka.resources.limits.memory"),
    ],
)
def test_schema_rejects_bad_values(render: Render, set_arg: str, complaint: str) -> None:
    with pytest.raises(HelmFailed) as failure:
        render(set_arg)
    assert "values don't meet the specifications of the schema" in failure.value.stderr
    assert complaint in failure.value.stderr


def test_values_file_documents_every_value(chart_dir: Path) -> None:
    """helm-docs style: every leaf value, or a map holding it, is preceded by a `# --` comment."""
    lines = (chart_dir / "values.yaml").read_text().splitlines()
    documented_maps: list[tuple[int, bool]] = []  # (indent, has "# --") of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(\s.*)?$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while documented_maps and documented_maps[-1][0] >= indent:
            documented_maps.pop()
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        has_doc = j >= 0 and lines[j].strip().startswith("# --")
        inherited = any(doc for _, doc in documented_maps)
        is_parent = (
            not (m.group(3) or "").strip()
            and i + 1 < len(lines)
            and lines[i + 1].startswith(m.group(1) + "  ")
        )
        if is_parent:
            documented_maps.append((indent, has_doc))
        elif not (has_doc or inherited):
            undocumented.append(f"line {i + 1}: {m.group(2)}")
    assert undocumented == []


def test_schema_covers_every_value(chart_dir: Path) -> None:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        assert (
            node.get("additionalProperties") is False
            or node.get("type") != "object"
            or "properties" not in node
        )
        if isinstance(value, dict) and "properties" in node:
            for key, child in value.items():
                assert key in node["properties"], f"{path}{key} missing from values.schema.json"
                walk(node["properties"][key], child, f"{path}{key}.")

    walk(schema, values, "")


def test_kafka_is_single_node_kraft_on_a_persistent_volume(default_docs: list[dict[str, Any]]) -> None:
    sts = one(default_docs, "StatefulSet", "kafka")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("apache/kafka:")
    config = one(default_docs, "ConfigMap", "kafka")["data"]["server.properties"]
    props = dict(line.split("=", 1) for line in config.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["advertised.listeners"] == "PLAINTEXT://rel-sentiment-pipeline-kafka.ns.svc:9092"
    assert props["log.dirs"].startswith("/var/lib/kafka/data/")
    cluster_id = env_of(container)["KAFKA_CLUSTER_ID"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_cluster_id_is_stable_per_release(render: Render) -> None:
    def cluster_id(docs: list[dict[str, Any]]) -> str:
        container = one(docs, "StatefulSet", "kafka")["spec"]["template"]["spec"]["containers"][0]
        return str(env_of(container)["KAFKA_CLUSTER_ID"])

    assert cluster_id(render()) == cluster_id(render())
    assert cluster_id(render()) != cluster_id(render(release="other"))


def test_persistence_can_be_turned_off(render: Render) -> None:
    docs = render(
        "kafka.persistence.enabled=false",
        "mongodb.persistence.enabled=false",
        "mysql.persistence.enabled=false",
        "metabase.persistence.enabled=false",
    )
    assert by_kind(docs, "PersistentVolumeClaim") == []
    for sts in by_kind(docs, "StatefulSet"):
        assert "volumeClaimTemplates" not in sts["spec"]
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes["data"]


def test_metabase_can_use_an_external_application_database(render: Render) -> None:
    docs = render("metabase.appDatabase.type=external", "metabase.appDatabase.existingSecret=mb-appdb")
    container = one(docs, "Deployment", "metabase")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["MB_DB_CONNECTION_URI"] == {"secretKeyRef": {"name": "mb-appdb", "key": "connection-uri"}}
    assert "MB_DB_FILE" not in env
    assert all(d["kind"] != "PersistentVolumeClaim" for d in docs)


def test_network_policies_limit_databases_to_the_namespace(default_docs: list[dict[str, Any]]) -> None:
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in by_kind(default_docs, "NetworkPolicy")
    }
    assert set(policies) == {"kafka", "mongodb", "mysql"}
    for component, policy in policies.items():
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]


def test_ingress_for_metabase_is_opt_in(render: Render, default_docs: list[dict[str, Any]]) -> None:
    assert by_kind(default_docs, "Ingress") == []
    docs = render(
        "metabase.ingress.enabled=true",
        "metabase.ingress.host=bi.example.org",
        "metabase.ingress.tlsSecretName=bi-tls",
    )
    ingress = by_kind(docs, "Ingress")[0]
    assert ingress["spec"]["rules"][0]["host"] == "bi.example.org"
    assert ingress["spec"]["tls"] == [{"hosts": ["bi.example.org"], "secretName": "bi-tls"}]
