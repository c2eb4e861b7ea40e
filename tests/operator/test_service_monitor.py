"""A ServiceMonitor per pipeline once prometheus-operator's CRD is in the cluster.

A minimal stand-in CRD is installed: the real one is large, and only its group/version/kind matter here."""

from __future__ import annotations

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .helpers import GROUP, PLURAL, VERSION, create_secrets, eventually, kubectl, pipeline

SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


async def test_service_monitor_is_created_when_its_crd_exists(api, namespace, run_operator, cluster):
    kubectl(cluster.admin_kubeconfig, "apply", "-f", "-", stdin=SERVICE_MONITOR_CRD)
    kubectl(
        cluster.admin_kubeconfig,
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=60s",
    )
    objects = client.CustomObjectsApi(api)
    await create_secrets(api, namespace, "mon")
    await create_secrets(api, namespace, "nomon")
    with_labels = {"serviceMonitor": {"labels": {"release": "prometheus"}, "interval": "15s"}}
    disabled = {"serviceMonitor": {"enabled": False}}
    with run_operator(namespace):
        cr = await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, pipeline("mon", namespace, metrics=with_labels)
        )
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, pipeline("nomon", namespace, metrics=disabled)
        )
        monitor = await eventually(
            lambda: objects.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", namespace, "servicemonitors", "mon"
            )
        )
        await eventually(
            lambda: client.AppsV1Api(api).read_namespaced_deployment("nomon-inference", namespace)
        )
        service = await client.CoreV1Api(api).read_namespaced_service("mon-metrics", namespace)
        try:
            await objects.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", namespace, "servicemonitors", "nomon"
            )
            absent = False
        except ApiException as exc:
            absent = exc.status == 404

    assert monitor["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service.metadata.labels.items(), "the monitor selects the metrics Service"
    assert absent, "serviceMonitor.enabled=false creates none"
