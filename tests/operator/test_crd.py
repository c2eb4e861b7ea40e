"""The SentimentPipeline CRD as a real kube-apiserver (v1.20) serves it: structural, defaulted, validating."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from sentiment_operator.spec import LANDING_COLLECTION, PipelineSpec

from .helpers import CRD, GROUP, PLURAL, SAMPLES, VERSION, kubectl, pipeline


def _schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _defaults(schema: dict[str, Any], served: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Every leaf default the schema declares under the objects ``served`` holds, by dotted camelCase path
    (an optional object without a default, such as source.http, is only defaulted when it is there)."""
    found: dict[str, Any] = {}
    for key, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{key}" if path else key
        if "default" in prop and prop["default"] != {}:
            found[here] = prop["default"]
        if isinstance(served.get(key), dict):
            found.update(_defaults(prop, served[key], here))
    return found


def _flatten(data: Any, path: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {path: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{path}.{key}" if path else key))
    return flat


async def test_crd_is_established_with_short_name_status_subresource_and_printer_columns(
    api: client.ApiClient,
):
    crd = await client.ApiextensionsV1Api(api).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions.get("Established") == "True"
    assert conditions.get("NonStructuralSchema") is None
    assert crd.spec.names.short_names == ["sp"]
    version = crd.spec.versions[0]
    assert version.subresources.status is not None
    assert [c.name for c in version.additional_printer_columns] == [
        "Phase",
        "Ready",
        "Mode",
        "Consumers",
        "Inference",
        "Model",
        "Age",
    ]


HTTP_SOURCE = {
    "kind": "http",
    "bootstrapServers": "kafka.example:9092",
    "topic": "messages",
    "http": {"url": "https://api.example/v1/posts"},
}


TRACKING = {"uri": "https://mlflow.example", "credentialsSecretRef": {"name": "mlflow"}}
S3_LANDING = {
    "url": "s3://lake/raw/http",
    "endpointUrl": "http://minio.storage:9000",
    "region": "eu-west-1",
    "credentialsSecretRef": {"name": "lake"},
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"source": HTTP_SOURCE},
        {"mode": "fused", "model": {"name": "models:/tweets@champion", "tracking": TRACKING}},
        {"source": {**HTTP_SOURCE, "http": {**HTTP_SOURCE["http"], "landing": S3_LANDING}}},
    ],
    ids=["minimal", "http-source", "fused-registry-model", "s3-landing"],
)
async def test_server_fills_the_same_defaults_as_the_operator_spec_model(
    api: client.ApiClient, namespace: str, change: dict[str, Any]
):
    objects = client.CustomObjectsApi(api)
    body = pipeline("defaults", namespace, **change)
    created = await objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    served = _flatten(created["spec"])
    declared = _defaults(_schema(), created["spec"])
    # Every default the CRD declares is applied by the server where the body sets nothing (nested objects
    # default to {} first) ...
    assert declared, "the CRD declares defaults"
    given = _flatten(body["spec"])
    for path, value in declared.items():
        expected = given.get(path, value)
        assert served.get(path) == expected, f"{path}: declared {value!r}, served {served.get(path)!r}"
    # ... and the operator's pydantic model, given only the required fields, fills the very same values.
    model = PipelineSpec.model_validate(body["spec"])
    from_model = _flatten(model.model_dump(by_alias=True, mode="json", exclude_none=True))
    for path, value in served.items():
        assert from_model.get(path) == value, f"{path}: server {value!r}, operator {from_model.get(path)!r}"


def _http(**http: Any) -> dict[str, Any]:
    return {"source": {**HTTP_SOURCE, "http": {**HTTP_SOURCE["http"], **http}}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": {"backend": "tensorflow"}}, "spec.model.backend"),
        ({"consumer": {"replicas": -1}}, "spec.consumer.replicas"),
        ({"sink": {"host": "db", "secretRef": {"name": "s"}, "table": "drop table;"}}, "spec.sink.table"),
        ({"state": "stopped"}, "spec.state"),
        ({"autoscaling": {"maxReplicas": 0}}, "spec.autoscaling.maxReplicas"),
        ({"staging": {}}, "spec.staging.mongoSecretRef"),
        ({"source": {"topic": "t"}}, "spec.source.bootstrapServers"),
        ({"metrics": {"port": 80}}, "spec.metrics.port"),
        ({"source": {**HTTP_SOURCE, "kind": "ftp"}}, "spec.source.kind"),
        ({"source": {**HTTP_SOURCE, "http": {"method": "GET"}}}, "spec.source.http.url"),
        (_http(url="ftp://files.example/x"), "spec.source.http.url"),
        (_http(method="DELETE"), "spec.source.http.method"),
        (_http(paging={"type": "offset"}), "spec.source.http.paging.type"),
        (_http(intervalSeconds=0), "spec.source.http.intervalSeconds"),
        (_http(timeoutSeconds=601), "spec.source.http.timeoutSeconds"),
        (_http(headersSecretRef={"name": "Not_A_Name"}), "spec.source.http.headersSecretRef.name"),
        (_http(landing={"collection": "1pages"}), "spec.source.http.landing.collection"),
        # Credentials come from a Secret, never in the endpoint's URL.
        (
            _http(landing={**S3_LANDING, "endpointUrl": "http://key:s3cr3t@minio:9000"}),
            "spec.source.http.landing.endpointUrl",
        ),
        (_http(landing={**S3_LANDING, "endpointUrl": "minio:9000"}), "spec.source.http.landing.endpointUrl"),
        (_http(landing={**S3_LANDING, "region": "EU West"}), "spec.source.http.landing.region"),
        (
            _http(landing={**S3_LANDING, "credentialsSecretRef": {}}),
            "spec.source.http.landing.credentialsSecretRef.name",
        ),
        ({"mode": "batch"}, "spec.mode"),
        ({"model": {"tracking": {"uri": "mlflow:5000"}}}, "spec.model.tracking.uri"),
        ({"model": {"tracking": {"credentialsSecretRef": {"name": "m"}}}}, "spec.model.tracking.uri"),
        (
            {"model": {"tracking": {**TRACKING, "credentialsSecretRef": {}}}},
            "spec.model.tracking.credentialsSecretRef.name",
        ),
        ({"model": {"cacheSizeLimit": "lots"}}, "spec.model.cacheSizeLimit"),
        ({"model": {"cacheSizeLimit": "-1Gi"}}, "spec.model.cacheSizeLimit"),
    ],
)
async def test_schema_rejects_invalid_specs_with_the_field_named(
    api: client.ApiClient, namespace: str, change: dict[str, Any], expected: str
):
    body = pipeline("invalid", namespace, **change)
    with pytest.raises(ApiException) as raised:
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
    assert raised.value.status == 422
    assert expected in str(raised.value.body)


async def test_credentials_cannot_be_inlined(api: client.ApiClient, namespace: str):
    body = pipeline("inline", namespace)
    body["spec"]["sink"]["password"] = "hunter2"
    created = await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    # Unknown fields are pruned by the structural schema: a password never gets stored in the CR.
    assert "password" not in created["spec"]["sink"]


def test_samples_are_accepted_by_kubectl_apply(cluster):
    kubectl(cluster.admin_kubeconfig, "create", "namespace", "sentiment")
    out = kubectl(cluster.admin_kubeconfig, "apply", "-f", str(SAMPLES))
    assert "sentimentpipeline.sentiment.io/tweets created" in out
    assert "sentimentpipeline.sentiment.io/minimal created" in out
    assert "sentimentpipeline.sentiment.io/posts created" in out
    assert "sentimentpipeline.sentiment.io/registry created" in out
    assert "sentimentpipeline.sentiment.io/fused created" in out
    listed = kubectl(cluster.admin_kubeconfig, "-n", "sentiment", "get", "sp", "-o", "name")
    names = ("tweets", "minimal", "posts", "registry", "fused")
    assert set(listed.split()) == {f"sentimentpipeline.{GROUP}/{n}" for n in names}
    # Every sample is also a valid operator spec.
    for path in sorted(SAMPLES.glob("sentimentpipeline*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            PipelineSpec.model_validate(doc["spec"])


def test_urls_and_quantities_follow_the_operators_patterns():
    from sentiment_operator.spec import HTTP_URL, QUANTITY

    model = _schema()["properties"]["model"]["properties"]
    assert model["tracking"]["properties"]["uri"]["pattern"] == HTTP_URL
    assert model["cacheSizeLimit"]["pattern"] == QUANTITY
    assert _schema()["properties"]["source"]["properties"]["http"]["properties"]["url"]["pattern"] == HTTP_URL
    assert _schema()["properties"]["mode"]["enum"] == ["lease", "fused"]


def test_sql_identifiers_follow_the_one_pattern_the_operator_uses():
    from sentiment_operator.spec import SQL_IDENTIFIER

    sink = _schema()["properties"]["sink"]["properties"]
    assert sink["database"]["pattern"] == SQL_IDENTIFIER
    assert sink["table"]["pattern"] == SQL_IDENTIFIER


def test_kubectl_apply_rejects_a_bad_http_source_naming_the_field(cluster, tmp_path):
    body = pipeline("badhttp", "default", **_http(url="not a url", paging={"type": "offset"}))
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(body))
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.admin_kubeconfig}", "apply", "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "spec.source.http.url" in result.stderr
    assert "spec.source.http.paging.type" in result.stderr


def test_the_http_source_follows_the_pollers_own_rules():
    """The CRD accepts no landing collection the poller refuses, and its defaults are the poller's."""
    from sentiment_workers.http_source.settings import HttpSourceConfig

    http = _schema()["properties"]["source"]["properties"]["http"]["properties"]
    assert http["landing"]["properties"]["collection"]["pattern"] == LANDING_COLLECTION
    poller = HttpSourceConfig.model_fields
    assert http["method"]["default"] == poller["method"].default
    assert http["recordsPath"]["default"] == poller["records_path"].default
    assert http["intervalSeconds"]["default"] == poller["interval_seconds"].default
    assert http["landing"]["properties"]["collection"]["default"] == poller["landing_collection"].default


def test_the_s3_landing_settings_follow_the_operators_patterns():
    from sentiment_operator.spec import AWS_REGION, ENDPOINT_URL, K8S_NAME

    landing = _schema()["properties"]["source"]["properties"]["http"]["properties"]["landing"]["properties"]
    assert landing["endpointUrl"]["pattern"] == ENDPOINT_URL
    assert landing["region"]["pattern"] == AWS_REGION
    assert landing["credentialsSecretRef"]["properties"]["name"]["pattern"] == K8S_NAME
    assert landing["credentialsSecretRef"]["required"] == ["name"]
