"""Helpers of the operator suite: constants, kubectl, polling, and SentimentPipeline bodies."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "k8s-manifests/crds/sentimentpipelines.yaml"
RBAC = ROOT / "k8s-manifests/rbac/operator-rbac.yaml"
SAMPLES = ROOT / "k8s-manifests/samples"
GROUP, VERSION, PLURAL = "sentiment.io", "v1alpha1", "sentimentpipelines"
OPERATOR_NS, OPERATOR_SA = "sentiment-system", "sentiment-operator"

# The operator's timer period and ports are read when its handlers module is imported: set them first.
RESYNC_SECONDS = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_ip() -> str:
    """A non-loopback IPv4 of this machine (Endpoints may not point at 127.0.0.0/8)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        ip = str(s.getsockname()[0])
    assert not ip.startswith("127."), "the autoscaling test needs a non-loopback IPv4 address on this machine"
    return ip


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns without AssertionError or a 404 (and not None/False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
            if result is not None and result is not False:
                return result
            last: BaseException = AssertionError(f"{check.__name__} returned {result!r}")
        except AssertionError as exc:
            last = exc
        except ApiException as exc:
            if exc.status != 404:  # not there yet: keep polling; any other API error is a failure
                raise
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {last}") from last
        await asyncio.sleep(interval)


def pipeline(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A SentimentPipeline referencing Secrets ``<name>-mongo`` and ``<name>-mysql``."""
    body: dict[str, Any] = {
        "source": {"bootstrapServers": "kafka.example:9092", "topic": "messages"},
        "staging": {"mongoSecretRef": {"name": f"{name}-mongo"}},
        "sink": {"host": "mysql.example", "secretRef": {"name": f"{name}-mysql"}},
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SentimentPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


async def create_secrets(api: client.ApiClient, namespace: str, name: str) -> None:
    core = client.CoreV1Api(api)
    for suffix, data in (
        ("mongo", {"uri": "mongodb://placeholder:27017"}),
        ("mysql", {"username": "u", "password": "p"}),
    ):
        secret = client.V1Secret(metadata=client.V1ObjectMeta(name=f"{name}-{suffix}"), string_data=data)
        await core.create_namespaced_secret(namespace, secret)
