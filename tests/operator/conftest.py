"""Fixtures of the operator suite.

A real etcd + kube-apiserver (v1.20.2, RBAC on) started by the project's own ``scripts/cluster.sh`` on free
loopback ports; the CRD and the operator's RBAC applied from k8s-manifests/; the operator run in-process by
``kopf.testing.KopfRunner`` with the token of its own ServiceAccount (a verb missing from the ClusterRole
fails the suite).

The cluster runs only the garbage-collector, namespace and service-account-token controllers (no Deployment
controller, no scheduler, no kubelet): Deployments are stored but never rolled out. Tests that need a
Deployment's status write it through the status subresource, playing the Deployment controller's part, and
say so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, config

from .helpers import (
    CRD,
    GROUP,
    OPERATOR_NS,
    OPERATOR_SA,
    PLURAL,
    RBAC,
    RESYNC_SECONDS,
    ROOT,
    free_port,
    kubectl,
)


@dataclass(frozen=True)
class Cluster:
    dir: Path
    admin_kubeconfig: Path
    operator_kubeconfig: Path
    server: str


def _kubeconfig_with_token(admin: Path, target: Path, token: str) -> None:
    cfg = yaml.safe_load(admin.read_text())
    cfg["users"] = [{"name": "operator", "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = "operator"
    target.write_text(yaml.safe_dump(cfg))
    target.chmod(0o600)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "CLUSTER_DIR": str(state)}
    up = subprocess.run([str(ROOT / "scripts/cluster.sh"), "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr}"
    admin = state / "kubeconfig"
    try:
        kubectl(admin, "create", "namespace", OPERATOR_NS)
        kubectl(admin, "apply", "-f", str(CRD), "-f", str(RBAC))
        kubectl(admin, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
        token = kubectl(admin, "-n", OPERATOR_NS, "create", "token", OPERATOR_SA, "--duration=2h").strip()
        operator_cfg = state / "operator-kubeconfig"
        _kubeconfig_with_token(admin, operator_cfg, token)
        server = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]["server"]
        yield Cluster(state, admin, operator_cfg, server)
    finally:
        subprocess.run([str(ROOT / "scripts/cluster.sh"), "down"], env=env, capture_output=True, check=False)


@pytest.fixture(scope="session")
def operator_env(cluster: Cluster) -> dict[str, str]:
    """Environment of the operator under test (its kubeconfig holds the ServiceAccount token only)."""
    env = {
        "KUBECONFIG": str(cluster.operator_kubeconfig),
        "SENTIMENT_OPERATOR_RESYNC_SECONDS": str(RESYNC_SECONDS),
        "SENTIMENT_OPERATOR_IDLE_SECONDS": "0.5",
        "SENTIMENT_OPERATOR_METRICS_PORT": str(free_port()),
        "SENTIMENT_OPERATOR_WORKER_IMAGE": "ghcr.io/sentiment-pipeline/worker:test",
        "SENTIMENT_OPERATOR_BACKLOG_SCRAPE_TIMEOUT_SECONDS": "1",
    }
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
async def api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    """The test's own admin client (not the operator's)."""
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(cluster.admin_kubeconfig), client_configuration=configuration, persist_config=False
    )
    async with client.ApiClient(configuration=configuration) as api_client:
        yield api_client


@pytest.fixture
async def namespace(api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace per test (left in place: the cluster is thrown away with the session)."""
    name = f"op-{uuid.uuid4().hex[:8]}"
    await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name


@pytest.fixture
def run_operator(operator_env: dict[str, str]) -> Callable[..., contextlib.AbstractContextManager[Any]]:
    """``with run_operator(ns): ...`` runs the real operator (kopf) in a thread, watching ``ns`` only."""
    import sentiment_operator.handlers  # noqa: F401 - registers the handlers with kopf
    from kopf.testing import KopfRunner

    @contextlib.contextmanager
    def run(ns: str, *extra: str) -> Iterator[KopfRunner]:
        args = ["run", "--standalone", f"--namespace={ns}", *extra]
        with KopfRunner(args, timeout=30) as runner:
            yield runner
        assert runner.exit_code == 0, runner.output
        assert runner.exception is None, runner.output

    return run
