"""The operator reconciling SentimentPipelines on a real kube-apiserver (KopfRunner, ServiceAccount token).

Each test runs the real operator against a fresh namespace and asserts through the test's own admin client.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from .helpers import (
    GROUP,
    PLURAL,
    VERSION,
    create_secrets,
    eventually,
    free_port,
    host_ip,
    pipeline,
)

MERGE = "application/merge-patch+json"
HASH = f"{GROUP}/config-hash"


async def _create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


async def _patch_spec(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    await client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"spec": spec},
        _content_type=MERGE,  # type: ignore[call-arg]
    )


async def _cr(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


def _as_dict(api: client.ApiClient, obj: Any) -> dict[str, Any]:
    return api.sanitize_for_serialization(obj)


async def _deployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    try:
        return _as_dict(api, await client.AppsV1Api(api).read_namespaced_deployment(name, namespace))
    except ApiException as exc:
        assert exc.status != 404, f"Deployment {name} does not exist"
        raise


async def _condition(api: client.ApiClient, namespace: str, name: str, ctype: str) -> dict[str, Any]:
    status = (await _cr(api, namespace, name)).get("status") or {}
    for cond in status.get("conditions") or []:
        if cond["type"] == ctype:
            return cond
    raise AssertionError(f"no {ctype} condition in {status}")


async def _events(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    events = await client.CoreV1Api(api).list_namespaced_event(namespace)
    return [(e.type, e.reason, e.message) for e in events.items if e.involved_object.name == name]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


async def _play_deployment_controller(api: client.ApiClient, namespace: str, name: str, ready: int) -> None:
    """Write a Deployment's status as the (absent) Deployment controller and kubelets would."""
    apps = client.AppsV1Api(api)
    deployment = await apps.read_namespaced_deployment(name, namespace)
    replicas = deployment.spec.replicas
    status = {
        "observedGeneration": deployment.metadata.generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    await apps.patch_namespaced_deployment_status(
        name,
        namespace,
        {"status": status},
        _content_type=MERGE,  # type: ignore[call-arg]
    )


async def test_create_builds_owned_children_from_the_spec(api, namespace, run_operator):
    await create_secrets(api, namespace, "p")
    spec = {"model": {"name": "org/tweet-model", "backend": "onnx-int8"}, "consumer": {"replicas": 2}}
    with run_operator(namespace):
        cr = await _create(api, namespace, pipeline("p", namespace, **spec))
        consumer = await eventually(lambda: _deployment(api, namespace, "p-consumer"))
        inference = await eventually(lambda: _deployment(api, namespace, "p-inference"))
        core = client.CoreV1Api(api)
        config_map = _as_dict(api, await core.read_namespaced_config_map("p-config", namespace))
        service = _as_dict(api, await core.read_namespaced_service("p-metrics", namespace))
        await eventually(lambda: _condition(api, namespace, "p", "Progressing"))
        events = await _events(api, namespace, "p")

    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SentimentPipeline",
        "name": "p",
        "uid": cr["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    # Deleting the CR removes the children through these references (the garbage collector is part of the
    # controller-manager, which this API-only cluster does not run).
    for child in (consumer, inference, config_map, service):
        assert child["metadata"]["ownerReferences"] == [owner]
        assert child["metadata"]["labels"][f"{GROUP}/pipeline"] == "p"

    data = config_map["data"]
    assert data["SENTIMENT_MODEL_NAME"] == "org/tweet-model"
    assert data["SENTIMENT_MODEL_BACKEND"] == "onnx-int8"
    assert data["SENTIMENT_KAFKA_BOOTSTRAP_SERVERS"] == "kafka.example:9092"
    assert data["SENTIMENT_KAFKA_TOPIC"] == "messages"
    assert data["SENTIMENT_MYSQL_HOST"] == "mysql.example"
    assert data["SENTIMENT_MYSQL_TABLE"] == "dw_messages"
    assert not [k for k in data if "PASSWORD" in k or k == "SENTIMENT_MONGO_URI"], (
        "no credential in the ConfigMap"
    )

    assert consumer["spec"]["replicas"] == 2
    assert inference["spec"]["replicas"] == 1
    for deployment, command in ((consumer, "consume"), (inference, "infer")):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["sentiment-pipeline", command]
        assert container["image"] == "ghcr.io/sentiment-pipeline/worker:test"
        assert container["envFrom"] == [{"configMapRef": {"name": "p-config"}}]
        assert container["ports"][0]["containerPort"] == 9000
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]

    consumer_env = _env(consumer["spec"]["template"]["spec"]["containers"][0])
    inference_env = _env(inference["spec"]["template"]["spec"]["containers"][0])
    assert inference_env["SENTIMENT_MYSQL_PASSWORD"] == {
        "secretKeyRef": {"name": "p-mysql", "key": "password"}
    }
    assert inference_env["SENTIMENT_MYSQL_USER"] == {"secretKeyRef": {"name": "p-mysql", "key": "username"}}
    assert consumer_env["SENTIMENT_MONGO_URI"] == {"secretKeyRef": {"name": "p-mongo", "key": "uri"}}
    assert "SENTIMENT_MYSQL_PASSWORD" not in consumer_env, "the consumer never gets MySQL credentials"

    assert service["spec"]["ports"][0]["port"] == 9000
    assert service["spec"]["selector"] == {
        f"{GROUP}/pipeline": "p",
        "app.kubernetes.io/name": "sentiment-pipeline-worker",
    }
    assert ("Normal", "Created", "Created Deployment p-inference") in events


async def test_update_changes_children_and_a_new_model_rolls_only_inference(api, namespace, run_operator):
    await create_secrets(api, namespace, "u")
    with run_operator(namespace):
        await _create(api, namespace, pipeline("u", namespace))
        inference = await eventually(lambda: _deployment(api, namespace, "u-inference"))
        consumer = await _deployment(api, namespace, "u-consumer")
        old_inference = inference["spec"]["template"]["metadata"]["annotations"][HASH]
        old_consumer = consumer["spec"]["template"]["metadata"]["annotations"][HASH]

        await _patch_spec(
            api, namespace, "u", {"model": {"name": "other-model"}, "consumer": {"replicas": 3}}
        )

        async def updated() -> dict[str, Any]:
            inf = await _deployment(api, namespace, "u-inference")
            assert inf["spec"]["template"]["metadata"]["annotations"][HASH] != old_inference
            return inf

        inference = await eventually(updated)
        consumer = await _deployment(api, namespace, "u-consumer")
        config_map = await client.CoreV1Api(api).read_namespaced_config_map("u-config", namespace)
        status = (await eventually(lambda: _cr(api, namespace, "u")))["status"]

    assert config_map.data["SENTIMENT_MODEL_NAME"] == "other-model"
    assert consumer["spec"]["replicas"] == 3
    assert consumer["spec"]["template"]["metadata"]["annotations"][HASH] == old_consumer, (
        "consumers keep running"
    )
    assert inference["metadata"]["generation"] > 1
    assert status["model"] == "other-model"


async def test_deleted_or_edited_children_are_restored(api, namespace, run_operator):
    await create_secrets(api, namespace, "d")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    with run_operator(namespace):
        await _create(api, namespace, pipeline("d", namespace))
        original = await eventually(lambda: _deployment(api, namespace, "d-consumer"))
        await eventually(lambda: core.read_namespaced_config_map("d-config", namespace))

        await apps.delete_namespaced_deployment("d-consumer", namespace)
        await core.delete_namespaced_config_map("d-config", namespace)

        async def restored() -> dict[str, Any]:
            dep = await _deployment(api, namespace, "d-consumer")
            assert dep["metadata"]["uid"] != original["metadata"]["uid"]
            return dep

        await eventually(restored)
        config_map = await eventually(lambda: core.read_namespaced_config_map("d-config", namespace))

        # Someone edits a child by hand: replicas, image and a ConfigMap value.
        await apps.patch_namespaced_deployment(
            "d-inference",
            namespace,
            {
                "spec": {
                    "replicas": 7,
                    "template": {"spec": {"containers": [{"name": "inference", "image": "evil"}]}},
                }
            },
        )
        await core.patch_namespaced_config_map(
            "d-config", namespace, {"data": {"SENTIMENT_KAFKA_TOPIC": "other"}}
        )

        async def repaired() -> bool:
            dep = await _deployment(api, namespace, "d-inference")
            cm = await core.read_namespaced_config_map("d-config", namespace)
            assert dep["spec"]["replicas"] == 1
            assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("worker:test")
            assert cm.data["SENTIMENT_KAFKA_TOPIC"] == "messages"
            return True

        await eventually(repaired)
        events = await _events(api, namespace, "d")

    assert config_map.data["SENTIMENT_KAFKA_TOPIC"] == "messages"
    assert ("Normal", "Restored", "Restored Deployment d-consumer") in events
    assert ("Normal", "Restored", "Restored ConfigMap d-config") in events


async def test_pause_scales_workers_to_zero_and_resume_restores(api, namespace, run_operator):
    await create_secrets(api, namespace, "z")
    with run_operator(namespace):
        await _create(api, namespace, pipeline("z", namespace, consumer={"replicas": 2}))
        await eventually(lambda: _deployment(api, namespace, "z-consumer"))

        await _patch_spec(api, namespace, "z", {"state": "paused"})

        async def paused() -> dict[str, Any]:
            for name in ("z-consumer", "z-inference"):
                dep = await _deployment(api, namespace, name)
                assert dep["spec"]["replicas"] == 0
                await _play_deployment_controller(api, namespace, name, ready=0)
            cr = await _cr(api, namespace, "z")
            assert cr["status"]["phase"] == "Paused"
            assert "scaled to 0" in (await _condition(api, namespace, "z", "Ready"))["message"]
            return cr

        cr = await eventually(paused)
        ready = await _condition(api, namespace, "z", "Ready")

        await _patch_spec(api, namespace, "z", {"state": "running"})

        async def resumed() -> dict[str, Any]:
            dep = await _deployment(api, namespace, "z-consumer")
            assert dep["spec"]["replicas"] == 2
            cr = await _cr(api, namespace, "z")
            assert cr["status"]["phase"] != "Paused"
            return cr

        await eventually(resumed)
        inference = await _deployment(api, namespace, "z-inference")
        events = await _events(api, namespace, "z")

    assert ready["status"] == "False"
    assert ready["reason"] == "Paused"
    assert "scaled to 0" in ready["message"]
    assert cr["status"]["consumerDesiredReplicas"] == 0
    assert inference["spec"]["replicas"] == 1
    assert ("Normal", "Paused", "state is paused") in events
    assert ("Normal", "Resumed", "state is running") in events


async def test_status_follows_the_deployments_status(api, namespace, run_operator):
    await create_secrets(api, namespace, "s")
    with run_operator(namespace):
        await _create(api, namespace, pipeline("s", namespace, consumer={"replicas": 2}))
        await eventually(lambda: _deployment(api, namespace, "s-inference"))
        progressing = await eventually(lambda: _condition(api, namespace, "s", "Progressing"))
        assert progressing["status"] == "True"

        # Play the Deployment controller: every replica updated and ready.
        await _play_deployment_controller(api, namespace, "s-consumer", ready=2)
        await _play_deployment_controller(api, namespace, "s-inference", ready=1)

        async def running() -> dict[str, Any]:
            cr = await _cr(api, namespace, "s")
            assert cr["status"]["phase"] == "Running", cr["status"]
            return cr

        cr = await eventually(running)
        ready = await _condition(api, namespace, "s", "Ready")

        # One consumer pod stops being ready.
        await _play_deployment_controller(api, namespace, "s-consumer", ready=1)

        async def not_ready() -> dict[str, Any]:
            cond = await _condition(api, namespace, "s", "Ready")
            assert cond["status"] == "False"
            return cond

        lost = await eventually(not_ready)
        cr_after = await _cr(api, namespace, "s")

    assert ready["status"] == "True"
    assert ready["reason"] == "WorkersReady"
    assert cr["status"]["consumerReplicas"] == 2
    assert cr["status"]["inferenceReplicas"] == 1
    assert cr["status"]["observedGeneration"] == cr["metadata"]["generation"]
    assert "s-consumer" in lost["message"]
    assert cr_after["status"]["phase"] == "Progressing"
    assert cr_after["status"]["consumerReplicas"] == 1


async def test_cross_field_error_is_reported_as_degraded_and_clears_when_fixed(api, namespace, run_operator):
    await create_secrets(api, namespace, "x")
    bad = {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}}
    with run_operator(namespace):
        await _create(api, namespace, pipeline("x", namespace, **bad))

        async def degraded() -> dict[str, Any]:
            cond = await _condition(api, namespace, "x", "Degraded")
            assert cond["status"] == "True"
            return cond

        cond = await eventually(degraded)
        deployments = await client.AppsV1Api(api).list_namespaced_deployment(namespace)
        phase = (await _cr(api, namespace, "x"))["status"]["phase"]
        events = await _events(api, namespace, "x")

        await _patch_spec(api, namespace, "x", {"autoscaling": {"maxReplicas": 4}})

        async def healed() -> dict[str, Any]:
            c = await _condition(api, namespace, "x", "Degraded")
            assert c["status"] == "False"
            return c

        await eventually(healed)
        inference = await _deployment(api, namespace, "x-inference")

    assert cond["reason"] == "InvalidSpec"
    assert "autoscaling.minReplicas (3) must be <= autoscaling.maxReplicas (2)" in cond["message"]
    assert phase == "Degraded"
    assert deployments.items == [], "nothing is built from an invalid spec"
    assert any(t == "Warning" and r == "InvalidSpec" for t, r, _ in events)
    assert inference["spec"]["replicas"] == 3, "autoscaling starts at minReplicas"


async def test_the_status_drops_what_is_no_longer_true(api, namespace, run_operator):
    """The status is rewritten whole: a block or count that no longer applies goes (a merge patch of the
    changed keys kept them: an InvalidSpec pipeline went on showing its model, replicas and autoscaling)."""
    await create_secrets(api, namespace, "s")
    scaled = {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 2}}
    with run_operator(namespace):
        await _create(api, namespace, pipeline("s", namespace, **scaled))

        async def status_with(*keys: str) -> dict[str, Any]:
            status = (await _cr(api, namespace, "s")).get("status") or {}
            assert all(k in status for k in keys), status
            return status

        async def status_without(*keys: str) -> dict[str, Any]:
            status = (await _cr(api, namespace, "s")).get("status") or {}
            assert status and not [k for k in keys if k in status], status
            return status

        running = await eventually(lambda: status_with("autoscaling", "model", "consumerReplicas"))
        await _patch_spec(api, namespace, "s", {"autoscaling": {"enabled": False}})
        unscaled = await eventually(lambda: status_without("autoscaling"))
        await _patch_spec(api, namespace, "s", {"autoscaling": {"enabled": True, "minReplicas": 3}})

        async def invalid() -> dict[str, Any]:
            status = await status_without("autoscaling", "model", "consumerReplicas", "inferenceReplicas")
            assert status["phase"] == "Degraded", status
            return status

        degraded = await eventually(invalid)

    assert running["autoscaling"]["desiredReplicas"] == 1
    assert unscaled["model"] == "default" and "consumerReplicas" in unscaled
    assert degraded["observedGeneration"] == 3
    assert {c["type"]: c["reason"] for c in degraded["conditions"]}["Degraded"] == "InvalidSpec"
    assert set(degraded) == {"observedGeneration", "phase", "conditions"}


async def test_missing_secret_is_reported_by_name_and_clears_when_created(api, namespace, run_operator):
    with run_operator(namespace):
        await _create(api, namespace, pipeline("m", namespace))

        async def degraded() -> dict[str, Any]:
            cond = await _condition(api, namespace, "m", "Degraded")
            assert cond["status"] == "True"
            return cond

        cond = await eventually(degraded)
        await create_secrets(api, namespace, "m")

        async def healed() -> dict[str, Any]:
            c = await _condition(api, namespace, "m", "Degraded")
            assert c["status"] == "False"
            return c

        await eventually(healed)

    assert cond["reason"] == "SecretNotFound"
    assert "'m-mongo'" in cond["message"]
    assert "'m-mysql'" in cond["message"]


async def test_operator_restart_neither_duplicates_nor_replaces_children(api, namespace, run_operator):
    await create_secrets(api, namespace, "r")
    await create_secrets(api, namespace, "late")
    apps = client.AppsV1Api(api)
    selector = f"{GROUP}/pipeline=r"
    with run_operator(namespace):
        await _create(api, namespace, pipeline("r", namespace))
        await eventually(lambda: _deployment(api, namespace, "r-inference"))
        before = await apps.list_namespaced_deployment(namespace, label_selector=selector)

    # Created while no operator runs: picked up on start (resume), like everything else.
    await _create(api, namespace, pipeline("late", namespace))
    with run_operator(namespace):
        await eventually(lambda: _deployment(api, namespace, "late-inference"))
        status = await eventually(lambda: _condition(api, namespace, "r", "Progressing"))
        after = await apps.list_namespaced_deployment(namespace, label_selector=selector)
        config_maps = await client.CoreV1Api(api).list_namespaced_config_map(
            namespace, label_selector=selector
        )

    assert sorted(d.metadata.name for d in after.items) == ["r-consumer", "r-inference"]
    assert {d.metadata.uid: d.metadata.generation for d in after.items} == {
        d.metadata.uid: d.metadata.generation for d in before.items
    }
    assert [c.metadata.name for c in config_maps.items] == ["r-config"]
    assert status["type"] == "Progressing"


@pytest.mark.parametrize("mode", ["lease", "fused"])
async def test_inference_scales_with_the_backlog_the_workers_export(api, namespace, run_operator, mode):
    """The autoscaler scrapes the pods behind the metrics Service. This test plays the endpoints controller
    (no controller-manager here): it points the Service's Endpoints at a real Prometheus exporter. In fused
    mode the inference pods export the consumer group's Kafka lag as that backlog, and are scaled the same."""
    await create_secrets(api, namespace, "a")
    registry = CollectorRegistry()
    backlog = Gauge("sentiment_inference_backlog_messages", "pending staged messages", registry=registry)
    backlog.set(350)
    ip, port = host_ip(), free_port()
    server, thread = start_http_server(port, addr=ip, registry=registry)
    try:
        await client.CoreV1Api(api).create_namespaced_endpoints(
            namespace,
            client.V1Endpoints(
                metadata=client.V1ObjectMeta(name="a-metrics"),
                subsets=[
                    client.V1EndpointSubset(
                        addresses=[client.V1EndpointAddress(ip=ip)],
                        ports=[client.CoreV1EndpointPort(name="metrics", port=port)],
                    )
                ],
            ),
        )
        spec = {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetBacklogPerReplica": 100,
                "scaleDownStabilizationSeconds": 0,
            },
            "mode": mode,
        }
        with run_operator(namespace):
            await _create(api, namespace, pipeline("a", namespace, **spec))

            async def replicas(expected: int) -> dict[str, Any]:
                dep = await _deployment(api, namespace, "a-inference")
                assert dep["spec"]["replicas"] == expected, dep["spec"]["replicas"]
                return dep

            async def decided(expected: int) -> dict[str, Any]:
                # The status is written after the Deployment is applied: wait for both.
                await replicas(expected)
                state = (await _cr(api, namespace, "a"))["status"]["autoscaling"]
                assert state["desiredReplicas"] == expected, state
                return state

            up = await eventually(lambda: decided(4))  # ceil(350 / 100)
            backlog.set(0)
            down = await eventually(lambda: decided(1))  # back to minReplicas
            events = await _events(api, namespace, "a")
    finally:
        server.shutdown()
        thread.join(timeout=5)

    assert up["backlog"] == 350
    assert up["desiredReplicas"] == 4
    assert down["backlog"] == 0
    assert any(r == "Scaled" and "1 -> 4" in m for _, r, m in events)


async def test_a_store_the_workers_cannot_reach_is_named_in_the_status_and_recovers_by_itself(
    api, namespace, run_operator
):
    """Ready said True while every worker looped on "store unreachable". The workers export
    sentiment_store_up{store} (and fail /readyz, so they sit in the Endpoints' notReadyAddresses); the
    operator reads it on each resync and says which store is unreachable from which pods. This test plays the
    Deployment and endpoints controllers (none run here) and points the Endpoints at real exporters."""
    await create_secrets(api, namespace, "u")
    ip = host_ip()
    exporters = []
    gauges = {}
    for pod, store in (("u-consumer-7d9f-a", "mongo"), ("u-inference-5c8b-b", "mysql")):
        registry = CollectorRegistry()
        gauge = Gauge("sentiment_store_up", "store reachable", ["store"], registry=registry)
        gauge.labels(store).set(1)
        gauges[pod] = gauge.labels(store)
        port = free_port()
        exporters.append((pod, port, start_http_server(port, addr=ip, registry=registry)))

    async def endpoints(ready: bool) -> None:
        key = "addresses" if ready else "not_ready_addresses"
        subsets = [
            client.V1EndpointSubset(
                **{
                    key: [
                        client.V1EndpointAddress(
                            ip=ip, target_ref=client.V1ObjectReference(kind="Pod", name=pod)
                        )
                    ]
                },
                ports=[client.CoreV1EndpointPort(name="metrics", port=port)],
            )
            for pod, port, _ in exporters
        ]
        body = client.V1Endpoints(metadata=client.V1ObjectMeta(name="u-metrics"), subsets=subsets)
        core = client.CoreV1Api(api)
        try:
            await core.replace_namespaced_endpoints("u-metrics", namespace, body)
        except ApiException as exc:
            assert exc.status == 404
            await core.create_namespaced_endpoints(namespace, body)

    async def ready(status: str, ctype: str = "Ready") -> dict[str, Any]:
        cond = await _condition(api, namespace, "u", ctype)
        assert cond["status"] == status, cond
        return cond

    try:
        await endpoints(ready=True)
        with run_operator(namespace):
            await _create(api, namespace, pipeline("u", namespace))
            await eventually(lambda: _deployment(api, namespace, "u-inference"))
            await _play_deployment_controller(api, namespace, "u-consumer", ready=1)
            await _play_deployment_controller(api, namespace, "u-inference", ready=1)
            await eventually(lambda: ready("True"))

            # MySQL goes away: the inference worker reports it and fails its readiness probe.
            gauges["u-inference-5c8b-b"].set(0)
            await endpoints(ready=False)
            await _play_deployment_controller(api, namespace, "u-inference", ready=0)
            degraded = await eventually(lambda: ready("True", "Degraded"))
            lost = await _condition(api, namespace, "u", "Ready")
            phase = (await _cr(api, namespace, "u"))["status"]["phase"]
            events = await _events(api, namespace, "u")

            # MySQL is back: nothing to do but wait.
            gauges["u-inference-5c8b-b"].set(1)
            await endpoints(ready=True)
            await _play_deployment_controller(api, namespace, "u-inference", ready=1)
            healed = await eventually(lambda: ready("False", "Degraded"))
            back = await eventually(lambda: ready("True"))
    finally:
        for _, _, (server, thread) in exporters:
            server.shutdown()
            thread.join(timeout=5)

    assert degraded["status"] == "True"
    assert degraded["reason"] == "StoreUnreachable"
    assert degraded["message"] == "MySQL unreachable from u-inference-5c8b-b", degraded["message"]
    assert lost["reason"] == "StoreUnreachable" and phase == "Degraded"
    assert ("Warning", "StoreUnreachable", "MySQL unreachable from u-inference-5c8b-b") in events
    assert back["reason"] == "WorkersReady"
    assert healed["status"] == "False"


async def _point_endpoints(
    api: client.ApiClient, namespace: str, service: str, exporters: list[tuple[str, int]], ready: set[str]
) -> None:
    """Play the endpoints controller: the metrics Service's Endpoints list each (pod, port) of ``exporters``
    on this host, in ``addresses`` when the pod is in ``ready``, else in ``notReadyAddresses``."""
    ip = host_ip()

    def address(pod: str) -> Any:
        return client.V1EndpointAddress(ip=ip, target_ref=client.V1ObjectReference(kind="Pod", name=pod))

    subsets = [
        client.V1EndpointSubset(
            addresses=[address(pod)] if pod in ready else None,
            not_ready_addresses=None if pod in ready else [address(pod)],
            ports=[client.CoreV1EndpointPort(name="metrics", port=port)],
        )
        for pod, port in exporters
    ]
    body = client.V1Endpoints(metadata=client.V1ObjectMeta(name=service), subsets=subsets)
    core = client.CoreV1Api(api)
    try:
        await core.replace_namespaced_endpoints(service, namespace, body)
    except ApiException as exc:
        assert exc.status == 404
        await core.create_namespaced_endpoints(namespace, body)


SECRETS_VERSION = f"{GROUP}/secrets-version"


async def test_credentials_a_store_refuses_are_named_in_the_status_a_fixed_secret_rolls_the_workers(
    api, namespace, run_operator
):
    """A wrong MySQL password crash-looped the inference worker and the status said RollingOut. The workers
    keep running and export sentiment_store_error{store,kind="auth"} (the workers' own PipelineMetrics
    here, served over HTTP); the operator reports Degraded StoreAuthFailed naming the store, the Secret the
    pipeline references for it and the pods. Fixing the Secret rolls the Deployments that read it (its
    resourceVersion is in their pod template), and the status recovers by itself."""
    from sentiment_workers.metrics import PipelineMetrics

    await create_secrets(api, namespace, "a")
    ip = host_ip()
    pods = {"consumer": "a-consumer-7d9f-a", "inference": "a-inference-5c8b-b"}
    workers: dict[str, PipelineMetrics] = {}
    exporters: list[tuple[str, int]] = []
    servers = []
    for component, pod in pods.items():
        workers[component] = PipelineMetrics(CollectorRegistry())
        workers[component].store_reached("mongo")
        port = free_port()
        exporters.append((pod, port))
        servers.append(start_http_server(port, addr=ip, registry=workers[component].registry))
    workers["inference"].store_reached("mysql")

    async def cond(ctype: str, status: str) -> dict[str, Any]:
        found = await _condition(api, namespace, "a", ctype)
        assert found["status"] == status, found
        return found

    async def template_versions() -> dict[str, str]:
        return {
            c: (await _deployment(api, namespace, f"a-{c}"))["spec"]["template"]["metadata"]["annotations"][
                SECRETS_VERSION
            ]
            for c in pods
        }

    try:
        await _point_endpoints(api, namespace, "a-metrics", exporters, ready=set(pods.values()))
        with run_operator(namespace):
            await _create(api, namespace, pipeline("a", namespace))
            await eventually(lambda: _deployment(api, namespace, "a-inference"))
            for component in pods:
                await _play_deployment_controller(api, namespace, f"a-{component}", ready=1)
            await eventually(lambda: cond("Ready", "True"))
            before = await template_versions()

            # MySQL refuses the inference worker's credentials: it keeps running, unready, and says why.
            workers["inference"].store_failed(
                "mysql", "auth", "MySQL refused the credentials (OperationalError: (1045, 'Access denied'))"
            )
            await _point_endpoints(api, namespace, "a-metrics", exporters, ready={pods["consumer"]})
            await _play_deployment_controller(api, namespace, "a-inference", ready=0)
            degraded = await eventually(lambda: cond("Degraded", "True"))
            not_ready = await cond("Ready", "False")
            events = await _events(api, namespace, "a")

            # The Secret is fixed: the inference pods roll (the consumer does not read that Secret).
            await client.CoreV1Api(api).patch_namespaced_secret(
                "a-mysql", namespace, {"stringData": {"password": "the-right-one"}}
            )

            async def rolled() -> dict[str, str]:
                now = await template_versions()
                assert now["inference"] != before["inference"], now
                return now

            after = await eventually(rolled)
            workers["inference"].store_reached("mysql")
            await _point_endpoints(api, namespace, "a-metrics", exporters, ready=set(pods.values()))
            await _play_deployment_controller(api, namespace, "a-inference", ready=1)
            healed = await eventually(lambda: cond("Degraded", "False"))
            back = await eventually(lambda: cond("Ready", "True"))
    finally:
        for server, thread in servers:
            server.shutdown()
            thread.join(timeout=5)

    expected = (
        "MySQL refused the credentials from Secret 'a-mysql' (spec.sink.secretRef, keys username, password) "
        "for a-inference-5c8b-b: fix the Secret; the workers retry and roll when it changes"
    )
    assert degraded["reason"] == "StoreAuthFailed" and degraded["message"] == expected, degraded
    assert not_ready["reason"] == "StoreAuthFailed"
    assert ("Warning", "StoreAuthFailed", expected) in events
    assert after["consumer"] == before["consumer"]
    assert healed["reason"] == "AsExpected" and back["reason"] == "WorkersReady"


async def test_operator_exposes_metrics_and_a_liveness_probe(api, namespace, run_operator, operator_env):
    await create_secrets(api, namespace, "h")
    health = free_port()
    with run_operator(namespace, f"--liveness=http://127.0.0.1:{health}/healthz"):
        await _create(api, namespace, pipeline("h", namespace))
        await eventually(lambda: _condition(api, namespace, "h", "Ready"))
        async with aiohttp.ClientSession() as session:

            async def probe() -> dict[str, Any]:
                async with session.get(f"http://127.0.0.1:{health}/healthz") as response:
                    assert response.status == 200
                    return await response.json()

            probed = await eventually(probe)
            metrics_url = f"http://127.0.0.1:{operator_env['SENTIMENT_OPERATOR_METRICS_PORT']}/metrics"
            async with session.get(metrics_url) as response:
                exposition = await response.text()

    assert probed["pipelines"] >= 1
    assert 'sentiment_operator_reconciles_total{result="progressing",trigger="create"}' in exposition
    assert "sentiment_operator_reconcile_duration_seconds_count" in exposition
    assert 'sentiment_operator_children_applied_total{kind="Deployment"}' in exposition
