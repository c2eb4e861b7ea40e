"""The operator's one adapter to the Kubernetes API (kubernetes_asyncio's ApiClient, raw JSON dicts).

Children are written with server-side apply (field manager ``sentiment-operator``, ``force``): the same call
creates a missing child, repairs a drifted one and is a no-op when nothing changed. Reads return plain dicts,
or ``None`` for a 404. Every verb used here is listed in ``k8s-manifests/rbac/operator-rbac.yaml``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from . import FIELD_MANAGER, GROUP, PLURAL, VERSION

_COLLECTIONS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services",
    ("v1", "Secret"): "/api/v1/namespaces/{namespace}/secrets",
    ("v1", "Endpoints"): "/api/v1/namespaces/{namespace}/endpoints",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    ): "/apis/monitoring.coreos.com/v1/namespaces/{namespace}/servicemonitors",
    (f"{GROUP}/{VERSION}", "SentimentPipeline"): f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}",
}
_AUTH = ["BearerToken"]
_JSON = "application/json"


async def connect() -> client.ApiClient:
    """In a pod: the ServiceAccount; elsewhere: ``$KUBECONFIG`` (or ~/.kube/config)."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
        await config.load_kube_config(
            config_file=path, client_configuration=configuration, persist_config=False
        )
    return client.ApiClient(configuration=configuration)


def _path(
    api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None
) -> str:
    try:
        path = _COLLECTIONS[(api_version, kind)].format(namespace=namespace)
    except KeyError:
        raise ValueError(f"the operator does not manage {api_version} {kind}") from None
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return path


async def _call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = _JSON,
) -> tuple[dict[str, Any], int]:
    data, code, _ = await api.call_api(
        path,
        method,
        query_params=query or [],
        header_params={"Accept": _JSON, "Content-Type": content_type},
        body=body,
        response_types_map={200: "object", 201: "object"},
        auth_settings=_AUTH,
        _request_timeout=30,
    )
    return data, code


async def apply(api: client.ApiClient, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Server-side apply one child; returns the object as stored and whether it was created."""
    meta = manifest["metadata"]
    path = _path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    stored, code = await _call(
        api,
        "PATCH",
        path,
        body=manifest,
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        content_type="application/apply-patch+yaml",
    )
    return stored, code == 201


async def get(
    api: client.ApiClient, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """One object, or None when it does not exist."""
    try:
        found, _ = await _call(api, "GET", _path(api_version, kind, namespace, name))
        return found
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def patch_pipeline_status(
    api: client.ApiClient, namespace: str, name: str, status: Mapping[str, Any]
) -> None:
    """Merge-patch the CR's status subresource (lists such as conditions are replaced whole)."""
    path = _path(f"{GROUP}/{VERSION}", "SentimentPipeline", namespace, name, "status")
    try:
        await _call(api, "PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
    except ApiException as exc:
        if exc.status != 404:  # deleted meanwhile: nothing to report on
            raise


def error_message(exc: ApiException) -> str:
    """The API server's own explanation of a failed call (its Status message), for conditions and logs."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")


class ApiDiscovery:
    """Whether an optional API (the ServiceMonitor CRD) is served; cached for ``ttl`` seconds."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    async def serves(self, api: client.ApiClient, group_version: str, plural: str) -> bool:
        key = (group_version, plural)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            found, _ = await _call(api, "GET", f"/apis/{group_version}")
            served = any(r.get("name") == plural for r in found.get("resources", []))
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
            served = False
        self._cache[key] = (time.monotonic(), served)
        return served

    def forget(self) -> None:
        self._cache.clear()
