"""Benchmark: how fast the operator brings N SentimentPipelines to steady state, and its memory.

Starts a private etcd + kube-apiserver (scripts/cluster.sh), applies the CRD and RBAC, runs the operator as
its own process (``python -m sentiment_operator``, ServiceAccount token, one watched namespace), creates N
pipelines (with their Secrets) at once and reports:

- children: seconds until every pipeline has its ConfigMap, both Deployments and Service, and a status for
  its current generation (phase Progressing: no kubelet runs on this API-only cluster);
- running: seconds until every pipeline is phase Running after the benchmark writes all Deployments' status
  as ready (playing the absent Deployment controller);
- the operator's resident memory (VmRSS now, VmHWM peak), from /proc.

    .venv/bin/python bench/bench_operator.py [--pipelines 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client, config

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "sentiment.io", "v1alpha1", "sentimentpipelines"
NAMESPACE = "bench"
MERGE = "application/merge-patch+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubectl(kubeconfig: Path, *args: str) -> str:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args], check=True, capture_output=True, text=True
    ).stdout


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def _pipeline(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SentimentPipeline",
        "metadata": {"name": f"p{i:03d}", "namespace": NAMESPACE},
        "spec": {
            "source": {"bootstrapServers": "kafka:9092", "topic": f"topic-{i}"},
            "staging": {"mongoSecretRef": {"name": "mongo"}},
            "sink": {"host": "mysql", "secretRef": {"name": "mysql"}},
        },
    }


async def _wait(what: str, check: Any, limit_s: float = 300.0) -> float:
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > limit_s:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)
    return time.perf_counter() - started


async def _run(n: int, kubeconfig: Path, operator_pid: int) -> dict[str, float]:
    configuration = client.Configuration()
    await config.load_kube_config(str(kubeconfig), client_configuration=configuration, persist_config=False)
    async with client.ApiClient(configuration=configuration) as api:
        core, apps, objects = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        for name, data in (("mongo", {"uri": "x"}), ("mysql", {"username": "u", "password": "p"})):
            secret = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
            await core.create_namespaced_secret(NAMESPACE, secret)
        rss_idle = _memory_kib(operator_pid)["VmRSS"]
        started = time.perf_counter()
        await asyncio.gather(
            *(
                objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _pipeline(i))
                for i in range(n)
            )
        )
        created = time.perf_counter() - started

        async def all_children() -> bool:
            listed = await objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
            with_status = [
                cr
                for cr in listed["items"]
                if (cr.get("status") or {}).get("observedGeneration") == cr["metadata"]["generation"]
            ]
            deployments = await apps.list_namespaced_deployment(NAMESPACE)
            config_maps = await core.list_namespaced_config_map(NAMESPACE, label_selector=f"{GROUP}/pipeline")
            services = await core.list_namespaced_service(NAMESPACE)
            return (
                len(with_status) == n
                and len(deployments.items) == 2 * n
                and len(config_maps.items) == n
                and len(services.items) == n
            )

        await _wait("children", all_children)
        children = time.perf_counter() - started

        deployments = (await apps.list_namespaced_deployment(NAMESPACE)).items
        status_started = time.perf_counter()
        for dep in deployments:  # play the Deployment controller: everything rolled out and ready
            replicas = dep.spec.replicas
            body = {
                "status": {
                    "observedGeneration": dep.metadata.generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                }
            }
            await apps.patch_namespaced_deployment_status(
                dep.metadata.name,
                NAMESPACE,
                body,
                _content_type=MERGE,  # type: ignore[call-arg]
            )
        writes = time.perf_counter() - status_started

        async def all_running() -> bool:
            listed = await objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
            return sum((cr.get("status") or {}).get("phase") == "Running" for cr in listed["items"]) == n

        await _wait("running", all_running)
        running = time.perf_counter() - status_started
        await asyncio.sleep(3)  # let a resync pass run over all pipelines before reading memory
        memory = _memory_kib(operator_pid)
    return {
        "create_calls_s": created,
        "children_s": children,
        "status_writes_s": writes,
        "running_after_status_s": running,
        "rss_idle_mib": rss_idle / 1024,
        "rss_mib": memory["VmRSS"] / 1024,
        "rss_peak_mib": memory["VmHWM"] / 1024,
    }


def operator_python() -> str:
    """A Python with the operator image's packages only (``pip install -e .[operator]``), in .dev/.

    The dev venv also holds kubernetes_asyncio (the tests' client); kopf imports its ~700 model classes
    whenever it is installed, so an operator started from the dev venv would carry ~37 MiB that the
    operator image does not. Rebuilt when pyproject.toml changes."""
    venv = ROOT / ".dev/operator-venv"
    stamp = venv / "pyproject.sha256"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    python = venv / "bin/python"
    if not (python.exists() and stamp.exists() and stamp.read_text() == digest):
        print("building .dev/operator-venv (the operator image's packages) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-e",
                f"{ROOT}[operator]",
            ],
            check=True,
            capture_output=True,
        )
        stamp.write_text(digest)
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--resync-seconds", type=float, default=15.0)
    parser.add_argument(
        "--python",
        default=None,
        help="Interpreter that runs the operator (default: .dev/operator-venv, the image's packages only).",
    )
    args = parser.parse_args()
    python = args.python or operator_python()

    state = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    env = {**os.environ, "CLUSTER_DIR": str(state)}
    cluster = ROOT / "scripts/cluster.sh"
    subprocess.run([str(cluster), "up"], env=env, check=True, capture_output=True)
    operator = None
    try:
        admin = state / "kubeconfig"
        _kubectl(admin, "create", "namespace", "sentiment-system")
        _kubectl(admin, "create", "namespace", NAMESPACE)
        _kubectl(
            admin, "apply", "-f", str(ROOT / "k8s-manifests/crds"), "-f", str(ROOT / "k8s-manifests/rbac")
        )
        _kubectl(admin, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
        token = _kubectl(admin, "-n", "sentiment-system", "create", "token", "sentiment-operator").strip()
        cfg = yaml.safe_load(admin.read_text())
        cfg["users"] = [{"name": "operator", "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = "operator"
        (state / "operator-kubeconfig").write_text(yaml.safe_dump(cfg))
        operator_env = {
            **os.environ,
            "KUBECONFIG": str(state / "operator-kubeconfig"),
            "SENTIMENT_OPERATOR_NAMESPACES": NAMESPACE,
            "SENTIMENT_OPERATOR_METRICS_PORT": str(_free_port()),
            "SENTIMENT_OPERATOR_HEALTH_PORT": str(_free_port()),
            "SENTIMENT_OPERATOR_RESYNC_SECONDS": str(args.resync_seconds),
        }
        with (state / "operator.log").open("w") as log:
            operator = subprocess.Popen(
                [python, "-m", "sentiment_operator"], env=operator_env, stdout=log, stderr=log
            )
            time.sleep(3)  # operator start-up (imports, login, initial listing)
            result = asyncio.run(_run(args.pipelines, admin, operator.pid))
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        subprocess.run([str(cluster), "down"], env=env, check=False, capture_output=True)
    print(
        f"pipelines: {args.pipelines} (resync {args.resync_seconds:g}s, kube-apiserver v1.20.2 on loopback)"
    )
    for key, value in result.items():
        print(f"{key}: {value:.2f}")


if __name__ == "__main__":
    main()
