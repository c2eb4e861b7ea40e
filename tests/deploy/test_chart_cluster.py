"""helm install / upgrade / uninstall of the chart against a real kube-apiserver (v1.20.2 from
``scripts/cluster.sh``, API only: nothing is scheduled, so pods never start and hook Jobs never finish;
installs use ``--no-hooks`` and the provisioning Job is covered by test_metabase_provisioning.py).

The API server validates every manifest (schemas, the CRD's structural schema for the SentimentPipeline);
``lookup`` sees the live Secrets, so generated passwords must survive an upgrade."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

NAMESPACE = "sentiment"
RELEASE = "sp"


@dataclass(frozen=True)
class Kube:
    kubeconfig: Path
    helm: Path

    def run(self, *args: str, tool: str = "kubectl", check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = str(self.helm) if tool == "helm" else "kubectl"
        result = subprocess.run(
            [binary, *args],
            env={
                **os.environ,
                "KUBECONFIG": str(self.kubeconfig),
                "HELM_CACHE_HOME": str(self.kubeconfig.parent),
            },
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"{binary} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def secret(self, name: str) -> dict[str, str]:
        data = self.json("-n", NAMESPACE, "get", "secret", name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory, helm: Path) -> Iterator[Kube]:
    state = tmp_path_factory.mktemp("chart-cluster")
    env = {**os.environ, "CLUSTER_DIR": str(state)}
    script = str(REPO / "scripts" / "cluster.sh")
    up = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr}"
    try:
        yield Kube(state / "kubeconfig", helm)
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120, check=False)


def test_install_upgrade_uninstall(kube: Kube, chart_dir: Path) -> None:
    install = kube.run(
        "install", RELEASE, str(chart_dir), "-n", NAMESPACE, "--create-namespace", "--no-hooks", tool="helm"
    )
    assert "STATUS: deployed" in install.stdout
    assert (
        f"kubectl -n {NAMESPACE} port-forward svc/sp-sentiment-pipeline-metabase 3000:3000" in install.stdout
    )
    assert "kubectl -n sentiment get sentimentpipelines" in install.stdout

    # The CRD came from crds/, and the API server accepted the default pipeline against its schema.
    pipeline = kube.json("-n", NAMESPACE, "get", "sentimentpipelines.sentiment.io", "default")
    assert pipeline["spec"]["sink"]["secretRef"]["name"] == "sp-sentiment-pipeline-mysql"
    for kind, name in [
        ("statefulset", "sp-sentiment-pipeline-kafka"),
        ("statefulset", "sp-sentiment-pipeline-mongodb"),
        ("statefulset", "sp-sentiment-pipeline-mysql"),
        ("deployment", "sp-sentiment-pipeline-metabase"),
        ("deployment", "sp-sentiment-pipeline-operator"),
        ("networkpolicy", "sp-sentiment-pipeline-mysql"),
    ]:
        kube.run("-n", NAMESPACE, "get", kind, name)
    kube.run("get", "clusterrole", "sp-sentiment-pipeline-operator")

    before = {c: kube.secret(f"sp-sentiment-pipeline-{c}") for c in ("mongodb", "mysql", "metabase")}
    upgrade = kube.run(
        "upgrade",
        RELEASE,
        str(chart_dir),
        "-n",
        NAMESPACE,
        "--no-hooks",
        "--set",
        "pipeline.consumerReplicas=2",
        tool="helm",
    )
    assert "REVISION: 2" in upgrade.stdout
    after = {c: kube.secret(f"sp-sentiment-pipeline-{c}") for c in ("mongodb", "mysql", "metabase")}
    assert after == before, "generated credentials must survive an upgrade"
    pipeline = kube.json("-n", NAMESPACE, "get", "sentimentpipelines.sentiment.io", "default")
    assert pipeline["spec"]["consumer"]["replicas"] == 2

    kube.run("uninstall", RELEASE, "-n", NAMESPACE, "--no-hooks", tool="helm")
    gone = kube.run("-n", NAMESPACE, "get", "statefulset,deployment,sentimentpipelines", "-o", "name")
    assert gone.stdout.strip() == ""
    kept = kube.run("-n", NAMESPACE, "get", "secrets", "-o", "name").stdout.split()
    assert {f"secret/sp-sentiment-pipeline-{c}" for c in ("mongodb", "mysql", "metabase")} <= set(kept)
    kube.run("get", "crd", "sentimentpipelines.sentiment.io")  # helm never deletes crds/

    # A re-install adopts the kept Secrets and keeps the same passwords for the data left on the PVCs.
    kube.run("install", RELEASE, str(chart_dir), "-n", NAMESPACE, "--no-hooks", tool="helm")
    again = {c: kube.secret(f"sp-sentiment-pipeline-{c}") for c in ("mongodb", "mysql", "metabase")}
    assert again == before
