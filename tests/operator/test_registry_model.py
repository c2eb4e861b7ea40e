"""A model from an MLflow registry on a real kube-apiserver: ``models:/`` without a tracking server is an
invalid spec; with one, the inference pods get its URI, the credentials of one Secret (each key optional) and
a model cache, and a changed credentials Secret rolls them (and only them)."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from .helpers import GROUP, create_secrets, eventually, pipeline
from .test_reconcile import _condition, _create, _deployment, _env, _events, _patch_spec

SECRETS_VERSION = f"{GROUP}/secrets-version"
MODEL = "models:/tweets@champion"
TRACKING = {"uri": "https://mlflow.example:5000", "credentialsSecretRef": {"name": "m-mlflow"}}


async def _degraded(api: client.ApiClient, namespace: str, reason: str | None) -> dict[str, Any]:
    cond = await _condition(api, namespace, "m", "Degraded")
    assert cond["status"] == ("True" if reason else "False"), cond
    assert reason is None or cond["reason"] == reason, cond
    return cond


async def test_a_registry_model_without_a_tracking_server_is_an_invalid_spec(api, namespace, run_operator):
    await create_secrets(api, namespace, "m")
    with run_operator(namespace):
        await _create(api, namespace, pipeline("m", namespace, model={"name": MODEL}))
        invalid = await eventually(lambda: _degraded(api, namespace, "InvalidSpec"))
        built = await client.AppsV1Api(api).list_namespaced_deployment(namespace)
        await _patch_spec(api, namespace, "m", {"model": {"tracking": {"uri": "http://mlflow:5000"}}})
        await eventually(lambda: _degraded(api, namespace, None))
        inference = await _deployment(api, namespace, "m-inference")

    assert invalid["message"] == (
        "spec.model: model.name models:/tweets@champion is resolved by an MLflow tracking server: set "
        "spec.model.tracking.uri (and credentialsSecretRef if the server wants credentials)"
    )
    assert built.items == [], "nothing is built from an invalid spec"
    assert _env(inference["spec"]["template"]["spec"]["containers"][0])["SENTIMENT_MODEL_CACHE_DIR"] == (
        "/model-cache"
    )


async def test_the_inference_pods_get_the_server_its_credentials_and_a_cache(api, namespace, run_operator):
    await create_secrets(api, namespace, "m")
    core = client.CoreV1Api(api)
    # Neither token nor username/password: the Secret is there but useless.
    await core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="m-mlflow"), string_data={"tokn": "x"})
    )
    model = {"name": MODEL, "tracking": TRACKING, "cacheSizeLimit": "3Gi"}

    async def versions() -> dict[str, str]:
        return {
            c: (await _deployment(api, namespace, f"m-{c}"))["spec"]["template"]["metadata"]["annotations"][
                SECRETS_VERSION
            ]
            for c in ("consumer", "inference")
        }

    with run_operator(namespace):
        await _create(api, namespace, pipeline("m", namespace, model=model))
        useless = await eventually(lambda: _degraded(api, namespace, "SecretKeyMissing"))

        # Only a token: enough (username and password are optional keys).
        await core.replace_namespaced_secret(
            "m-mlflow",
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name="m-mlflow"), string_data={"token": "t0ken"}),
        )
        await eventually(lambda: _degraded(api, namespace, None))
        inference = await eventually(lambda: _deployment(api, namespace, "m-inference"))
        consumer = await _deployment(api, namespace, "m-consumer")
        config_map = await core.read_namespaced_config_map("m-config", namespace)
        before = await versions()

        # A new token rolls the inference pods (they read MLFLOW_TRACKING_TOKEN when they start), not the
        # consumers.
        await core.patch_namespaced_secret("m-mlflow", namespace, {"stringData": {"token": "n3w"}})

        async def rolled() -> dict[str, str]:
            now = await versions()
            assert now["inference"] != before["inference"], now
            return now

        after = await eventually(rolled)
        events = await _events(api, namespace, "m")

    assert useless["message"] == "Secret 'm-mlflow' has none of the keys password, token, username"
    assert ("Warning", "SecretKeyMissing", useless["message"]) in events
    assert config_map.data["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000"
    assert config_map.data["SENTIMENT_MODEL_NAME"] == MODEL
    pod = inference["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    for variable, key in (
        ("MLFLOW_TRACKING_TOKEN", "token"),
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        assert env[variable] == {"secretKeyRef": {"name": "m-mlflow", "key": key, "optional": True}}
    assert env["SENTIMENT_MODEL_CACHE_DIR"] == "/model-cache"
    assert {"name": "model-cache", "mountPath": "/model-cache"} in pod["containers"][0]["volumeMounts"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "3Gi"}} in pod["volumes"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    consumer_env = _env(consumer["spec"]["template"]["spec"]["containers"][0])
    assert "MLFLOW_TRACKING_TOKEN" not in consumer_env, "the consumer never sees the tracking credentials"
    assert after["consumer"] == before["consumer"]
