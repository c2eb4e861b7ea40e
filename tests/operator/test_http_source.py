"""The HTTP source on a real kube-apiserver: the operator runs a poller Deployment exactly while
``spec.source.kind`` is http, repairs it, and reports what the poller says of the API in the status.

The cluster runs no Deployment or endpoints controller: the tests play the endpoints controller (the metrics
Service's Endpoints point at a real Prometheus exporter standing in for the poller pod's /metrics, serving the
two gauges of the contract in sentiment_workers.http_source.settings) and say so."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from .helpers import GROUP, create_secrets, eventually, free_port, host_ip, pipeline
from .test_reconcile import (
    _condition,
    _cr,
    _create,
    _deployment,
    _env,
    _events,
    _patch_spec,
    _point_endpoints,
)

URL = "https://api.example/v1/posts?access_token=s3cr3t&lang=en"
SECRETS_VERSION = f"{GROUP}/secrets-version"


def _http_source(**http: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "bootstrapServers": "kafka.example:9092",
        "topic": "messages",
        "http": {"url": URL, **http},
    }


async def test_the_poller_comes_and_goes_with_the_http_source_and_is_repaired(api, namespace, run_operator):
    await create_secrets(api, namespace, "h")
    apps = client.AppsV1Api(api)

    async def poller_gone() -> bool:
        try:
            await apps.read_namespaced_deployment("h-poller", namespace)
        except ApiException as exc:
            return exc.status == 404
        raise AssertionError("h-poller still exists")

    async def status_with(key: str, present: bool) -> dict[str, Any]:
        status = (await _cr(api, namespace, "h")).get("status") or {}
        assert (key in status) is present, status
        return status

    with run_operator(namespace):
        cr = await _create(api, namespace, pipeline("h", namespace))
        await eventually(lambda: _deployment(api, namespace, "h-inference"))
        kafka_only = await poller_gone()

        await _patch_spec(api, namespace, "h", {"source": _http_source()})
        poller = await eventually(lambda: _deployment(api, namespace, "h-poller"))
        with_poller = await eventually(lambda: status_with("pollerDesiredReplicas", True))

        await apps.delete_namespaced_deployment("h-poller", namespace)

        async def restored() -> dict[str, Any]:
            again = await _deployment(api, namespace, "h-poller")
            assert again["metadata"]["uid"] != poller["metadata"]["uid"]
            return again

        await eventually(restored)

        await _patch_spec(api, namespace, "h", {"source": {"kind": "kafka", "http": None}})
        removed = await eventually(poller_gone)
        without = await eventually(lambda: status_with("pollerDesiredReplicas", False))
        consumer = await _deployment(api, namespace, "h-consumer")
        events = await _events(api, namespace, "h")

    assert kafka_only, "a Kafka source has no poller"
    assert poller["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
    assert poller["metadata"]["labels"]["app.kubernetes.io/component"] == "poller"
    assert poller["spec"]["replicas"] == 1
    assert poller["spec"]["strategy"]["type"] == "Recreate"
    (container,) = poller["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sentiment-pipeline", "poll"]
    assert with_poller["pollerDesiredReplicas"] == 1
    assert removed and "pollerReplicas" not in without
    assert consumer["metadata"]["name"] == "h-consumer", "the consumers stay: they read the topic either way"
    assert ("Normal", "Restored", "Restored Deployment h-poller") in events
    assert ("Normal", "Removed", "Removed Deployment h-poller: source.kind is kafka") in events


async def test_what_the_poller_says_of_the_api_is_the_status(api, namespace, run_operator):
    """The poller exports sentiment_store_up{store="http"} and sentiment_store_error{store="http",kind}; the
    operator scrapes it with the workers on each resync: a rejection or refused credentials is
    SourceRejected, an API out of reach SourceUnreachable, naming the URL without its query string (which may
    hold a token); both clear by themselves."""
    await create_secrets(api, namespace, "s")
    headers = client.V1Secret(
        metadata=client.V1ObjectMeta(name="s-api"), string_data={"headers": '{"Authorization": "Bearer x"}'}
    )
    await client.CoreV1Api(api).create_namespaced_secret(namespace, headers)
    registry = CollectorRegistry()
    up = Gauge("sentiment_store_up", "store reachable", ["store"], registry=registry)
    error = Gauge("sentiment_store_error", "why a store is down", ["store", "kind"], registry=registry)

    def api_state(kind: str | None) -> None:
        up.labels("http").set(0 if kind else 1)
        for each in ("unreachable", "auth", "rejected"):
            error.labels("http", each).set(1 if each == kind else 0)

    async def credentials_refused() -> dict[str, Any]:
        cond = await degraded("SourceRejected")
        assert "refused the poller's credentials" in cond["message"], cond
        return cond

    async def degraded(reason: str | None) -> dict[str, Any]:
        cond = await _condition(api, namespace, "s", "Degraded")
        assert cond["status"] == ("True" if reason else "False"), cond
        assert reason is None or cond["reason"] == reason, cond
        return cond

    api_state("rejected")
    port = free_port()
    server, thread = start_http_server(port, addr=host_ip(), registry=registry)
    try:
        await _point_endpoints(api, namespace, "s-metrics", [("s-poller-6f7d-x", port)], ready=set())
        with run_operator(namespace):
            source = _http_source(headersSecretRef={"name": "s-api"})
            await _create(api, namespace, pipeline("s", namespace, source=source))
            rejected = await eventually(lambda: degraded("SourceRejected"))
            api_state("auth")
            refused = await eventually(credentials_refused)
            api_state("unreachable")
            unreachable = await eventually(lambda: degraded("SourceUnreachable"))
            api_state(None)
            healed = await eventually(lambda: degraded(None))
            events = await _events(api, namespace, "s")
    finally:
        server.shutdown()
        thread.join(timeout=5)

    public = "https://api.example/v1/posts"
    assert rejected["message"] == (
        f"the API {public} rejected the poller's requests (HTTP 4xx, or a page it cannot read) for "
        "s-poller-6f7d-x: check spec.source.http (url, method, paging, recordsPath)"
    )
    assert refused["message"] == (
        f"the API {public} refused the poller's credentials (HTTP 401/403) for s-poller-6f7d-x: fix the "
        "headers in Secret 's-api' (spec.source.http.headersSecretRef, key headers); the poller retries and "
        "rolls when the Secret changes"
    )
    assert unreachable["message"].startswith(f"the API {public} is unreachable from s-poller-6f7d-x")
    for cond in (rejected, refused, unreachable):
        assert "s3cr3t" not in cond["message"] and "?" not in cond["message"]
    assert healed["reason"] == "AsExpected"
    assert any(t == "Warning" and r == "SourceRejected" for t, r, _ in events)


async def test_an_s3_landing_gets_its_endpoint_region_and_credentials_on_the_poller_only(
    api, namespace, run_operator
):
    """``landing.endpointUrl``/``region``/``credentialsSecretRef`` without an s3:// url are an invalid spec;
    with one, the landing Secret is checked like the others (missing, a required key missing; sessionToken
    is optional), its keys reach the poller as botocore's AWS_* variables (and no other pod, nor the shared
    ConfigMap), and a changed Secret rolls the poller only."""
    await create_secrets(api, namespace, "l")
    core = client.CoreV1Api(api)
    landing = {
        "endpointUrl": "http://minio.storage:9000",
        "region": "us-east-1",
        "credentialsSecretRef": {"name": "l-lake"},
    }

    async def degraded(reason: str | None) -> dict[str, Any]:
        cond = await _condition(api, namespace, "l", "Degraded")
        assert cond["status"] == ("True" if reason else "False"), cond
        assert reason is None or cond["reason"] == reason, cond
        return cond

    def lake(**data: str) -> client.V1Secret:
        return client.V1Secret(metadata=client.V1ObjectMeta(name="l-lake"), string_data=data)

    async def versions() -> dict[str, str]:
        return {
            c: (await _deployment(api, namespace, f"l-{c}"))["spec"]["template"]["metadata"]["annotations"][
                SECRETS_VERSION
            ]
            for c in ("consumer", "inference", "poller")
        }

    with run_operator(namespace):
        await _create(api, namespace, pipeline("l", namespace, source=_http_source(landing=landing)))
        invalid = await eventually(lambda: degraded("InvalidSpec"))
        built = await client.AppsV1Api(api).list_namespaced_deployment(namespace)

        await _patch_spec(api, namespace, "l", {"source": {"http": {"landing": {"url": "s3://lake/raw"}}}})
        not_found = await eventually(lambda: degraded("SecretNotFound"))
        await core.create_namespaced_secret(namespace, lake(accessKeyId="AKIDLAKE"))
        key_missing = await eventually(lambda: degraded("SecretKeyMissing"))
        # Both required keys and no sessionToken (optional): enough.
        await core.replace_namespaced_secret(
            "l-lake", namespace, lake(accessKeyId="AKID", secretAccessKey="s")
        )
        await eventually(lambda: degraded(None))
        poller = await eventually(lambda: _deployment(api, namespace, "l-poller"))
        inference = await _deployment(api, namespace, "l-inference")
        consumer = await _deployment(api, namespace, "l-consumer")
        config_map = await core.read_namespaced_config_map("l-config", namespace)
        before = await versions()

        await core.patch_namespaced_secret("l-lake", namespace, {"stringData": {"secretAccessKey": "n3w"}})

        async def rolled() -> dict[str, str]:
            now = await versions()
            assert now["poller"] != before["poller"], now
            return now

        after = await eventually(rolled)
        events = await _events(api, namespace, "l")

    assert invalid["message"] == (
        "spec.source.http.landing: endpointUrl, region and credentialsSecretRef configure the S3 client "
        "of an s3:// landing store, but landing.url is empty (pages land in the staging MongoDB): set "
        "landing.url to s3://bucket/prefix, or remove endpointUrl, region and credentialsSecretRef"
    )
    assert built.items == [], "nothing is built from an invalid spec"
    assert not_found["message"] == (
        f"Secret 'l-lake' not found in namespace {namespace} "
        "(keys accessKeyId, secretAccessKey, sessionToken)"
    )
    assert key_missing["message"] == "Secret 'l-lake' lacks key(s) secretAccessKey"
    assert ("Warning", "InvalidSpec", invalid["message"]) in events
    env = _env(poller["spec"]["template"]["spec"]["containers"][0])
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "l-lake", "key": "accessKeyId"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "l-lake", "key": "secretAccessKey"}}
    assert env["AWS_SESSION_TOKEN"] == {
        "secretKeyRef": {"name": "l-lake", "key": "sessionToken", "optional": True}
    }
    assert config_map.data["SENTIMENT_HTTP_LANDING_URL"] == "s3://lake/raw"
    assert not any(k.startswith("AWS_") for k in config_map.data), "the ConfigMap reaches every worker"
    for other in (inference, consumer):
        assert not any(k.startswith("AWS_") for k in _env(other["spec"]["template"]["spec"]["containers"][0]))
    assert (after["consumer"], after["inference"]) == (before["consumer"], before["inference"])
