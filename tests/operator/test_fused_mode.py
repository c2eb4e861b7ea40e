"""``spec.mode`` on a real kube-apiserver: in fused mode the inference Deployment consumes (``infer --fused``)
and no consumer Deployment exists; back in lease mode the consumer returns. The status counts only the
workers the mode runs.

The cluster runs no Deployment controller: the tests write the inference Deployment's status themselves
(playing that controller) and say so."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .helpers import create_secrets, eventually, pipeline
from .test_reconcile import (
    _condition,
    _cr,
    _create,
    _deployment,
    _env,
    _events,
    _patch_spec,
    _play_deployment_controller,
)


async def _gone(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        await client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        return exc.status == 404
    raise AssertionError(f"{name} still exists")


async def _status(api: client.ApiClient, namespace: str, name: str, **expected: Any) -> dict[str, Any]:
    status = (await _cr(api, namespace, name)).get("status") or {}
    for key, value in expected.items():
        assert status.get(key) == value, (key, status)
    return status


async def test_fused_mode_removes_the_consumer_and_lease_mode_brings_it_back(api, namespace, run_operator):
    await create_secrets(api, namespace, "f")
    source = {"bootstrapServers": "kafka.example:9092", "topic": "messages", "consumerGroup": "tweets"}
    with run_operator(namespace):
        await _create(api, namespace, pipeline("f", namespace, source=source))
        lease_consumer = await eventually(lambda: _deployment(api, namespace, "f-consumer"))
        lease_inference = await eventually(lambda: _deployment(api, namespace, "f-inference"))

        await _patch_spec(api, namespace, "f", {"mode": "fused"})

        async def fused_inference() -> dict[str, Any]:
            dep = await _deployment(api, namespace, "f-inference")
            assert "--fused" in dep["spec"]["template"]["spec"]["containers"][0]["command"], dep
            return dep

        fused = await eventually(fused_inference)
        removed = await eventually(lambda: _gone(api, namespace, "f-consumer"))
        # Playing the Deployment controller: the fused inference pod is ready. Nothing waits on a consumer.
        await _play_deployment_controller(api, namespace, "f-inference", ready=1)
        running = await eventually(lambda: _status(api, namespace, "f", phase="Running"))
        ready = await _condition(api, namespace, "f", "Ready")

        await _patch_spec(api, namespace, "f", {"mode": "lease"})
        back = await eventually(lambda: _deployment(api, namespace, "f-consumer"))

        async def lease_inference_again() -> dict[str, Any]:
            dep = await _deployment(api, namespace, "f-inference")
            assert dep["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "infer", dep
            return dep

        await eventually(lease_inference_again)
        counted = await eventually(lambda: _status(api, namespace, "f", consumerDesiredReplicas=1))
        events = await _events(api, namespace, "f")

    assert lease_consumer["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "consume"
    assert lease_inference["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "infer"
    container = fused["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sentiment-pipeline", "infer", "--fused"]
    # The Kafka settings reach the fused worker through the pipeline's ConfigMap (SENTIMENT_KAFKA_GROUP_ID).
    assert container["envFrom"] == [{"configMapRef": {"name": "f-config"}}]
    config_map = await client.CoreV1Api(api).read_namespaced_config_map("f-config", namespace)
    assert config_map.data["SENTIMENT_KAFKA_GROUP_ID"] == "tweets"
    assert config_map.data["SENTIMENT_KAFKA_TOPIC"] == "messages"
    assert _env(container)["SENTIMENT_MONGO_URI"] == {"secretKeyRef": {"name": "f-mongo", "key": "uri"}}
    assert removed
    assert "consumerReplicas" not in running and "consumerDesiredReplicas" not in running
    assert running["inferenceDesiredReplicas"] == 1
    assert ready["status"] == "True" and ready["message"] == "all workers ready: f-inference 1/1"
    assert back["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "consume"
    assert counted["consumerDesiredReplicas"] == 1
    assert ("Normal", "Removed", "Removed Deployment f-consumer: mode is fused") in events
    assert ("Normal", "Created", "Created Deployment f-consumer") in events


async def test_a_consumer_left_while_the_operator_was_down_goes_when_it_starts(api, namespace, run_operator):
    """Level-triggered: the spec turned fused while no operator ran; its first pass removes the consumer."""
    await create_secrets(api, namespace, "d")
    with run_operator(namespace):
        await _create(api, namespace, pipeline("d", namespace))
        await eventually(lambda: _deployment(api, namespace, "d-consumer"))
        await eventually(lambda: _status(api, namespace, "d", consumerDesiredReplicas=1))

    await _patch_spec(api, namespace, "d", {"mode": "fused"})
    with run_operator(namespace):
        removed = await eventually(lambda: _gone(api, namespace, "d-consumer"))
        status = await eventually(lambda: _status(api, namespace, "d", inferenceDesiredReplicas=1))

    assert removed
    assert "consumerDesiredReplicas" not in status


async def test_fused_mode_with_an_http_source_keeps_the_poller(api, namespace, run_operator):
    await create_secrets(api, namespace, "w")
    source = {
        "kind": "http",
        "bootstrapServers": "kafka.example:9092",
        "topic": "messages",
        "http": {"url": "https://api.example/v1/posts"},
    }
    with run_operator(namespace):
        await _create(api, namespace, pipeline("w", namespace, source=source, mode="fused"))
        poller = await eventually(lambda: _deployment(api, namespace, "w-poller"))
        inference = await eventually(lambda: _deployment(api, namespace, "w-inference"))
        status = await eventually(lambda: _status(api, namespace, "w", pollerDesiredReplicas=1))
        no_consumer = await _gone(api, namespace, "w-consumer")

    assert poller["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "poll"
    assert inference["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--fused"
    assert no_consumer and "consumerDesiredReplicas" not in status
