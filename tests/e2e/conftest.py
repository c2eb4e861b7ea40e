"""Fixtures of the end-to-end suite (``pytest -m e2e``, ``make e2e``): the chart installed the way users
install it, on a real cluster with a kubelet, with images built from the project's own Dockerfiles.

Where it runs:

- here (default): the suite brings up what it needs itself, as the other suites do with their servers,
  cached and idempotent: ``scripts/node-cluster.sh up`` (a one-node v1.20.2 cluster in a network namespace:
  containerd, kubelet, scheduler, all controllers, kube-proxy, dnsmasq DNS; packages installed and binaries
  built once), then ``scripts/images.sh build`` (operator, slim and torch worker images from
  docker/*.Dockerfile, the data-plane stand-ins of tests/e2e/standins/, the pause image; buildah without a
  Docker engine) and ``scripts/images.sh import``. The cluster is stopped at the end if this session started
  it (its state and imported images stay for the next run).
- on any other cluster (CI's kind): ``E2E_KUBECONFIG=path``; the images must be there already
  (``kind load docker-image``; ``E2E_IMAGE_TAG`` if not tagged with the chart's appVersion);
  ``E2E_STANDINS=0`` installs the chart's official data-plane images; ``helm`` from PATH.

The data plane of the chart (Kafka, MongoDB, MySQL) cannot be pulled here: it runs on local stand-ins that
honour the chart's contracts (tests/e2e/standins/README.md). Metabase cannot run here: disabled (its
provisioning Job is covered by tests/deploy/test_metabase_provisioning.py).

The suite is deselected unless the marker expression names ``e2e`` (``pytest -m e2e``) or ``E2E=1`` is set:
it takes minutes and needs root. Numbers (timings, counts) are printed in the terminal summary and written to
``.dev/e2e/timings.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kube import Kube

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
NODE_CLUSTER = ROOT / "scripts" / "node-cluster.sh"
IMAGES = ROOT / "scripts" / "images.sh"
TIMINGS: dict[str, float | int | str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the e2e tests out of runs that did not ask for them (``-m e2e`` or ``E2E=1``)."""
    if "e2e" in (config.getoption("markexpr") or "") or os.environ.get("E2E") == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("e2e") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("e2e") is None]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed e2e step's report carries the cluster's state at that moment (Kube.diagnose): a CI log is
    often all there is to go on."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed or item.get_closest_marker("e2e") is None:
        return
    funcargs = getattr(item, "funcargs", {})
    kube = funcargs.get("kube") or getattr(funcargs.get("release"), "kube", None)
    if isinstance(kube, Kube):
        try:
            report.sections.append(("cluster at failure", kube.diagnose()))
        except Exception as exc:  # diagnostics must never hide the failure itself
            report.sections.append(("cluster at failure", f"could not read it: {exc!r}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("e2e numbers")
    for key, value in TIMINGS.items():
        shown = f"{value:.1f} s" if isinstance(value, float) else str(value)
        terminalreporter.write_line(f"{key:<58} {shown}")
    out = ROOT / ".dev" / "e2e"
    out.mkdir(parents=True, exist_ok=True)
    (out / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


def record(key: str, value: float | int | str) -> None:
    """A number of the run, shown in the terminal summary (and printed now, for ``-s``)."""
    TIMINGS[key] = value
    print(f"[e2e] {key}: {value:.1f} s" if isinstance(value, float) else f"[e2e] {key}: {value}", flush=True)


def _script(*args: str | Path, timeout: float) -> None:
    """Run one of the project's scripts, its output streamed to the terminal (builds take minutes)."""
    result = subprocess.run(["bash", *map(str, args)], timeout=timeout, check=False)
    assert result.returncode == 0, f"{shlex.join(map(str, args))} exited with {result.returncode}"


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """Admin access to the cluster the suite runs on (brought up here unless E2E_KUBECONFIG names one)."""
    external = os.environ.get("E2E_KUBECONFIG")
    if external:
        yield Kube(Path(external))
        return
    was_up = (
        subprocess.run(["bash", str(NODE_CLUSTER), "status"], capture_output=True, check=False).returncode
        == 0
    )
    t0 = time.monotonic()
    _script(NODE_CLUSTER, "up", timeout=3600)
    record("cluster up (node Ready; packages/binaries cached)", time.monotonic() - t0)
    try:
        t0 = time.monotonic()
        _script(IMAGES, "build", "operator", "worker", "worker-torch", "standins", "pause", timeout=3600)
        record("images built (cached layers when unchanged)", time.monotonic() - t0)
        t0 = time.monotonic()
        _script(IMAGES, "import", timeout=1800)
        record("images imported into containerd", time.monotonic() - t0)
        env = subprocess.run(["bash", str(NODE_CLUSTER), "env"], capture_output=True, text=True, check=True)
        yield Kube(Path(env.stdout.strip().split("=", 1)[1]))
    finally:
        if not was_up:
            subprocess.run(["bash", str(NODE_CLUSTER), "down"], check=False, timeout=300)


@pytest.fixture(scope="session")
def helm() -> Path:
    """A real helm 3 binary: the one on PATH on another cluster (CI), else scripts/install-helm.sh's."""
    on_path = shutil.which("helm")
    if os.environ.get("E2E_KUBECONFIG") and on_path:
        return Path(on_path)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-helm.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"scripts/install-helm.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def values_files() -> list[Path]:
    """The install's values: the e2e settings, plus the data-plane stand-ins unless E2E_STANDINS=0."""
    files = [E2E_DIR / "values-e2e.yaml"]
    if os.environ.get("E2E_STANDINS", "1") != "0":
        files.append(E2E_DIR / "values-standins.yaml")
    return files


@pytest.fixture(scope="session")
def image_tag() -> str | None:
    """Tag of the project's images when not the chart's default (E2E_IMAGE_TAG; the torch worker image is
    ``<tag>-torch``); None: the chart's appVersion, which is what scripts/images.sh builds."""
    return os.environ.get("E2E_IMAGE_TAG") or None


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_for_pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (``scripts/services.sh start mlflow``: SQLite backend store, artifacts
    proxied by the server) on this machine, listening where the cluster's pods reach it; returns its URL.

    On the node cluster that is the host end of its veth pair (``NODE_HOST_IP``, 10.250.0.1; the bridge CNI
    masquerades pod traffic to the node's address). On another cluster ``E2E_MLFLOW_HOST`` names it (kind: the
    gateway of the ``kind`` Docker network). Training needs the project's venv with the ``tracking`` extra
    (``VENV``, default .venv)."""
    host = os.environ.get("E2E_MLFLOW_HOST")
    if not host and not os.environ.get("E2E_KUBECONFIG"):
        host = os.environ.get("NODE_HOST_IP", "10.250.0.1")
    assert host, "E2E_MLFLOW_HOST: the address the cluster's pods reach this machine at"
    env = {
        **os.environ,
        "SERVICES_DIR": str(tmp_path_factory.mktemp("mlflow")),
        "MLFLOW_HOST": host,
        "MLFLOW_PORT": str(_free_port(host)),
    }
    services = ROOT / "scripts" / "services.sh"
    t0 = time.monotonic()
    subprocess.run(["bash", str(services), "start", "mlflow"], env=env, check=True, timeout=300)
    record("MLflow tracking server up (host)", time.monotonic() - t0)
    try:
        yield f"http://{host}:{env['MLFLOW_PORT']}"
    finally:
        subprocess.run(["bash", str(services), "stop", "mlflow"], env=env, check=False, timeout=120)
