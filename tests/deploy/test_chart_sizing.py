"""Sizing defaults fit the machines the project says it runs on, with inference autoscaled to its maximum.

The scheduler places a pod only where the requests of everything already there leave room for its own: a
default install whose inference replicas, at the autoscaler's maximum, request more CPU than the node has left
scales out into Pending pods, and the pipeline then heads for Degraded. (Seen on a 2-CPU node: 500m per
inference replica left the third one Pending.) The sums below are the chart's workloads as `helm template`
renders them plus the worker Deployments the operator builds for the chart's pipeline (its builders, the
autoscaler at ``maxReplicas``). Hook Jobs are left out: they finish.
"""

from __future__ import annotations

from typing import Any

from sentiment_operator.builders import Owner, build_children
from sentiment_operator.spec import parse_spec

from tests.deploy._tools import TERRAFORM_DIR, load_hcl
from tests.deploy.conftest import Render

# vCPU (millicores) and memory (MiB) of the Azure sizes terraform/variables.tf may default to.
VM_SIZES = {"Standard_D4as_v5": (4000, 16 * 1024), "Standard_B4ms": (4000, 16 * 1024)}
# What k3s runs itself and requests: CoreDNS (100m, 70Mi) and metrics-server (100m, 70Mi).
K3S_SYSTEM = (200, 140)
# This project's development and CI machine (2 cores, 24 GiB), where `make e2e` runs its one-node cluster
# without Metabase (no image for it there) and without CoreDNS (a dnsmasq on the host).
SMALL_NODE = (2000, 24 * 1024)
AUTOSCALED = {"pipeline": {"extraSpec": {"autoscaling": {"enabled": True}}}}


def _millicores(quantity: Any) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def _mebibytes(quantity: Any) -> int:
    text = str(quantity)
    for suffix, factor in (("Gi", 1024), ("Mi", 1), ("Ki", 1 / 1024)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(int(text) / 2**20)


def _requested(pod_spec: dict[str, Any], replicas: int) -> tuple[int, int]:
    cpu = mem = 0
    for container in pod_spec["containers"]:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += _millicores(requests.get("cpu", 0))
        mem += _mebibytes(requests.get("memory", 0))
    return cpu * replicas, mem * replicas


def _total_requests(docs: list[dict[str, Any]]) -> tuple[int, int, dict[str, tuple[int, int]]]:
    """CPU and memory requested by the install at the autoscaler's maximum, and the part of each workload."""
    parts: dict[str, tuple[int, int]] = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            parts[doc["metadata"]["name"]] = _requested(
                doc["spec"]["template"]["spec"], doc["spec"]["replicas"]
            )
    (pipeline,) = [d for d in docs if d["kind"] == "SentimentPipeline"]
    spec = parse_spec(pipeline["spec"])
    children = build_children(
        spec, Owner("default", "ns", "uid"), default_image="w", autoscaled=spec.autoscaling.max_replicas
    )
    for child in children:
        if child["kind"] == "Deployment":
            parts[child["metadata"]["name"]] = _requested(
                child["spec"]["template"]["spec"], child["spec"]["replicas"]
            )
    cpu = sum(c for c, _ in parts.values())
    mem = sum(m for _, m in parts.values())
    return cpu, mem, parts


def _terraform_default_vm() -> str:
    for block in load_hcl(TERRAFORM_DIR / "variables.tf")["variable"]:
        if "vm_size" in block:
            return str(block["vm_size"]["default"])
    raise AssertionError("terraform/variables.tf declares no vm_size")


def test_default_install_autoscaled_to_the_maximum_fits_the_terraform_default_vm(render: Render) -> None:
    vm = _terraform_default_vm()
    assert vm in VM_SIZES, f"add {vm}'s vCPU and memory to VM_SIZES"
    cpu, mem, parts = _total_requests(render(values=AUTOSCALED))
    capacity_cpu, capacity_mem = VM_SIZES[vm]
    assert cpu + K3S_SYSTEM[0] <= capacity_cpu, (cpu, parts)
    assert mem + K3S_SYSTEM[1] <= capacity_mem, (mem, parts)


def test_the_e2e_install_autoscaled_to_the_maximum_fits_a_two_cpu_node(render: Render) -> None:
    """What failed: 500m per inference replica left the third one Pending on a 2-CPU node."""
    values = {**AUTOSCALED, "metabase": {"enabled": False}}
    cpu, mem, parts = _total_requests(render(values=values))
    assert cpu <= SMALL_NODE[0], (cpu, parts)
    assert mem <= SMALL_NODE[1], (mem, parts)
