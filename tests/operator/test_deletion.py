"""Deleting a SentimentPipeline removes its children: owner references + the real garbage collector.

``scripts/cluster.sh`` runs kube-controller-manager with the garbage collector (no Deployment controller), so
this is Kubernetes' own cascading deletion, not the operator's (it has no ``delete`` verb). The operator puts
no finalizer on the CR: ``helm uninstall`` deletes the CRs and the operator together, and a CR deleted while
the operator is gone must still go, with its children.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .helpers import GROUP, PLURAL, RESYNC_SECONDS, VERSION, create_secrets, eventually, pipeline

LABEL = f"{GROUP}/pipeline"
FINALIZER = f"{GROUP}/operator"
NAME = "doomed"
EXPECTED = {
    "ConfigMap": [f"{NAME}-config"],
    "Service": [f"{NAME}-metrics"],
    "Deployment": [f"{NAME}-consumer", f"{NAME}-inference"],
}
# The garbage collector discovers resource types (the CRD, created after it started) every 30 s.
GC_TIMEOUT = 90.0


async def _children(api: client.ApiClient, namespace: str, name: str) -> dict[str, list[str]]:
    """The pipeline's children by kind: by name, and by its label (so nothing renamed escapes the check)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    selector = f"{LABEL}={name}"
    found: dict[str, list[Any]] = {
        "ConfigMap": (await core.list_namespaced_config_map(namespace, label_selector=selector)).items,
        "Service": (await core.list_namespaced_service(namespace, label_selector=selector)).items,
        "Deployment": (await apps.list_namespaced_deployment(namespace, label_selector=selector)).items,
    }
    children = {kind: sorted(obj.metadata.name for obj in items) for kind, items in found.items()}
    children["ServiceMonitor"] = await _service_monitors(api, namespace, selector)
    return children


async def _service_monitors(api: client.ApiClient, namespace: str, selector: str) -> list[str]:
    """ServiceMonitors, where another test installed their CRD (the operator creates one only then)."""
    try:
        listed = await client.CustomObjectsApi(api).list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors", label_selector=selector
        )
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return sorted(item["metadata"]["name"] for item in listed["items"])


async def _cr(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


async def _owners(api: client.ApiClient, namespace: str, name: str) -> set[str]:
    """The controller owners' uids of every child (ConfigMap, Service, Deployments)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    selector = f"{LABEL}={name}"
    items: list[Any] = [
        *(await core.list_namespaced_config_map(namespace, label_selector=selector)).items,
        *(await core.list_namespaced_service(namespace, label_selector=selector)).items,
        *(await apps.list_namespaced_deployment(namespace, label_selector=selector)).items,
    ]
    return {ref.uid for obj in items for ref in obj.metadata.owner_references or [] if ref.controller}


async def _cr_gone(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        cr = await _cr(api, namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    raise AssertionError(f"still there: finalizers {cr['metadata'].get('finalizers')}")


class _Pipeline:
    """One pipeline ``doomed`` in ``namespace`` and the checks on its children."""

    name = NAME

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = client.CustomObjectsApi(api)

    async def create(self) -> dict[str, Any]:
        await create_secrets(self.api, self.namespace, self.name)
        return await self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, pipeline(self.name, self.namespace)
        )

    async def delete(self) -> None:
        await self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)

    async def all_children(self) -> dict[str, list[str]]:
        children = await _children(self.api, self.namespace, self.name)
        assert {kind: children[kind] for kind in EXPECTED} == EXPECTED, children
        return children

    async def no_children(self) -> bool:
        children = await _children(self.api, self.namespace, self.name)
        assert not any(children.values()), f"still there: {children}"
        return True

    async def gone(self) -> bool:
        return await _cr_gone(self.api, self.namespace, self.name)


async def test_deleting_the_pipeline_deletes_its_children(api, namespace, run_operator):
    p = _Pipeline(api, namespace)
    with run_operator(namespace):
        created = await p.create()
        await eventually(p.all_children)
        assert await _owners(api, namespace, p.name) == {created["metadata"]["uid"]}
        cr = await _cr(api, namespace, p.name)
        assert not cr["metadata"].get("finalizers"), "owner references suffice: no finalizer"
        await p.delete()
        await eventually(p.gone, timeout=15)
        # The garbage collector, not the operator (it has no delete verb), removes the dependents; the
        # operator sees them go (DELETED events) and must not recreate them for a CR that is gone.
        await eventually(p.no_children, timeout=GC_TIMEOUT)


async def test_a_pipeline_deleted_while_the_operator_is_gone_goes_with_its_children(
    api, namespace, run_operator
):
    """What ``helm uninstall`` does: the CR and the operator are deleted together. The CR used to stay
    (kopf's finalizer, added for the resync timer, with nobody left to release it), and its workers kept
    running against a deleted data plane; the namespace could not be deleted."""
    p = _Pipeline(api, namespace)
    with run_operator(namespace):
        await p.create()
        await eventually(p.all_children)
        # a resync pass has run (the old timer's finalizer would be on by now)
        await asyncio.sleep(2 * RESYNC_SECONDS)
    await p.delete()
    await eventually(p.gone, timeout=15)
    await eventually(p.no_children, timeout=GC_TIMEOUT)


async def test_a_finalizer_left_by_an_older_operator_is_released(api, namespace, run_operator):
    """Upgrading from a version that put ``sentiment.io/operator`` on the CRs: the new operator removes it, so
    those pipelines can be deleted without it too."""
    p = _Pipeline(api, namespace)
    await p.create()
    await p.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        p.name,
        {"metadata": {"finalizers": [FINALIZER]}},
        _content_type="application/merge-patch+json",  # type: ignore[call-arg]
    )

    async def released() -> bool:
        cr = await _cr(api, namespace, p.name)
        assert not cr["metadata"].get("finalizers"), cr["metadata"].get("finalizers")
        return True

    with run_operator(namespace):
        await eventually(p.all_children)
        await eventually(released, timeout=15)
    await p.delete()
    await eventually(p.gone, timeout=15)
    await eventually(p.no_children, timeout=GC_TIMEOUT)
