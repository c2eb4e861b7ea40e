"""The chart, installed as users install it, on a real cluster with a kubelet: pods run, messages become rows.

One scenario, in order (each test is one step and says what a user can rely on); the numbers are printed in
the terminal summary. The data plane runs on local stand-ins here (tests/e2e/standins/README.md); Metabase is
off. Every step uses its own producer run id, so rows are counted per step: exactly the messages sent, once
each.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import record
from .kube import Kube, condition, eventually

# Steps wait on a real cluster; the first one also waits for the session's cluster and image builds (cold).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

NAMESPACE = os.environ.get("E2E_NAMESPACE", "sentiment-e2e")
RELEASE = "sentiment-pipeline"
PIPELINE = "default"
CHART = Path(__file__).resolve().parents[2] / "charts" / "sentiment-pipeline"
MESSAGES = int(os.environ.get("E2E_MESSAGES", "2000"))
BACKLOG = int(os.environ.get("E2E_BACKLOG_MESSAGES", "6000"))
WORKERS = f"sentiment.io/pipeline={PIPELINE}"


@dataclass(frozen=True)
class Release:
    kube: Kube
    helm: Path
    values: list[Path]
    image_tag: str | None

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.kube.run("-n", NAMESPACE, *args, **kw)

    def get(self, *args: str) -> Any:
        return self.kube.json("-n", NAMESPACE, "get", *args)

    def helm_upgrade(self, *args: str) -> float:
        """``helm upgrade --install`` with the e2e values (plus ``args``); returns its wall time."""
        t0 = time.monotonic()
        values = [a for f in self.values for a in ("-f", str(f))]
        self.kube.helm(
            self.helm,
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "--create-namespace",
            *values,
            *([] if "--reuse-values" in args else self.tag_flags()),
            *args,
            "--wait",
            "--timeout",
            "10m",
        )
        return time.monotonic() - t0

    def tag_flags(self, variant: str = "") -> list[str]:
        """``--set`` flags for E2E_IMAGE_TAG (the torch variant's worker tag is ``<tag>-torch``)."""
        if not self.image_tag:
            return []
        worker = f"{self.image_tag}-torch" if variant == "torch" else self.image_tag
        return ["--set", f"operator.image.tag={self.image_tag}", "--set", f"worker.image.tag={worker}"]

    def pipeline(self) -> dict[str, Any]:
        return dict(self.get(f"sentimentpipeline/{PIPELINE}"))

    def wait_ready(self, timeout: float = 600) -> float:
        t0 = time.monotonic()
        self.kubectl(
            "wait",
            f"sentimentpipeline/{PIPELINE}",
            "--for=condition=Ready",
            f"--timeout={timeout:.0f}s",
            timeout=timeout + 30,
        )
        return time.monotonic() - t0

    def worker_pods(self, component: str | None = None) -> list[dict[str, Any]]:
        selector = WORKERS + (f",app.kubernetes.io/component={component}" if component else "")
        return [
            p
            for p in self.get("pods", "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") != "Succeeded"
        ]

    def produce(self, count: int, *, rate: float = 0, wait: bool = True) -> str:
        """Send ``count`` synthetic messages from a pod of the worker image (``sentiment-pipeline produce``);
        returns the run id (message ids are ``burst-<run id>-<i>``)."""
        spec = self.pipeline()["spec"]["source"]
        run_id = f"e2e{uuid.uuid4().hex[:8]}"
        image = self.get(f"deployment/{RELEASE}-operator")["spec"]["template"]["spec"]["containers"][0]["env"]
        worker_image = next(e["value"] for e in image if e["name"] == "SENTIMENT_OPERATOR_WORKER_IMAGE")
        self.kubectl(
            "run",
            f"producer-{run_id}",
            "--restart=Never",
            f"--image={worker_image}",
            "--image-pull-policy=Never",
            f"--env=SENTIMENT_KAFKA_BOOTSTRAP_SERVERS={spec['bootstrapServers']}",
            f"--env=SENTIMENT_KAFKA_TOPIC={spec['topic']}",
            "--env=SENTIMENT_METRICS_PORT=0",
            "--labels=app.kubernetes.io/part-of=sentiment-e2e",
            "--",
            "produce",
            "--count",
            str(count),
            "--run-id",
            run_id,
            "--rate",
            str(rate),
            "--no-progress",
        )
        if wait:
            self.wait_produced(run_id, timeout=300 + (count / rate if rate else 0))
        return run_id

    def wait_produced(self, run_id: str, timeout: float = 300) -> None:
        def done() -> bool:
            phase = self.get(f"pod/producer-{run_id}")["status"].get("phase")
            assert phase != "Failed", self.kubectl("logs", f"producer-{run_id}", check=False)
            return phase == "Succeeded"

        eventually(done, timeout=timeout, what=f"producer {run_id} done")
        self.kubectl("delete", "pod", f"producer-{run_id}", "--wait=false")

    def sql(self, query: str) -> list[list[str]]:
        """A query as the application user, through the MySQL pod's client (tab-separated rows)."""
        out = self.kubectl(
            "exec",
            f"statefulset/{RELEASE}-mysql",
            "--",
            "sh",
            "-c",
            'MYSQL_PWD="$APP_PASSWORD" mysql -u"$APP_USERNAME" -N -B "$MYSQL_DATABASE" -e "$1"',
            "sh",
            query,
        )
        return [line.split("\t") for line in out.splitlines() if line]

    def rows(self, run_id: str) -> tuple[int, int]:
        """(rows, distinct message ids) of a producer run in the fact table; (0, 0) while it does not
        exist."""
        table = self.pipeline()["spec"]["sink"].get("table", "dw_messages")
        try:
            ((total, distinct),) = self.sql(
                f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {table} WHERE id LIKE 'burst-{run_id}-%'"
            )
        except AssertionError:
            return (0, 0)
        return int(total), int(distinct)

    def wait_rows(self, run_id: str, expected: int, timeout: float) -> float:
        """Seconds until the run's rows reach ``expected``; then checks none is counted twice."""
        t0 = time.monotonic()
        eventually(
            lambda: self.rows(run_id)[0] >= expected,
            timeout=timeout,
            interval=2,
            what=f"{expected} rows of run {run_id} (have {self.rows(run_id)})",
        )
        took = time.monotonic() - t0
        time.sleep(5)  # late duplicates would land now
        assert self.rows(run_id) == (expected, expected), "each message exactly once in the fact table"
        return took

    def events(self, reason: str) -> list[dict[str, Any]]:
        items = self.get(
            "events",
            "--field-selector",
            f"involvedObject.kind=SentimentPipeline,involvedObject.name={PIPELINE},reason={reason}",
        )
        return list(items["items"])


@pytest.fixture(scope="module")
def release(kube: Kube, helm: Path, values_files: list[Path], image_tag: str | None) -> Release:
    """The release under test, in a namespace of its own. What an earlier run left there (a failed run keeps
    its
    namespace for diagnosis) is removed first."""
    rel = Release(kube, helm, values_files, image_tag)
    # Helm installs a chart's crds/ once and never upgrades them; the node cluster keeps the CRD of an earlier
    # run, as a user's cluster keeps the previous release's. The upgrade step docs/chart.md documents:
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    if kube.try_json("namespace", NAMESPACE) is not None:
        kube.helm(helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--ignore-not-found", check=False)
        for sp in (kube.try_json("-n", NAMESPACE, "get", "sentimentpipelines") or {}).get("items", []):
            kube.run(
                "-n",
                NAMESPACE,
                "patch",
                "sentimentpipeline",
                sp["metadata"]["name"],
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
        kube.run("delete", "namespace", NAMESPACE, "--timeout=300s", check=False, timeout=330)
    return rel


# Set by step 1. Every step between install and uninstall works on the release step 1 installs: when that
# failed (its message carries the cluster's state), they fail at once instead of each waiting out a timeout.
INSTALLED: list[str] = []


@pytest.fixture(autouse=True)
def _needs_the_release_installed(request: pytest.FixtureRequest) -> None:
    exempt = {"test_helm_install_brings_the_pipeline_to_ready", "test_helm_uninstall_leaves_nothing_behind"}
    if request.node.name not in exempt and not INSTALLED:
        pytest.fail("step 1 (helm install -> Ready) did not pass in this run; this step needs its release")


def test_helm_install_brings_the_pipeline_to_ready(release: Release) -> None:
    """``helm install`` with local images -> every chart pod runs -> ``kubectl wait sp/default
    --for=condition=Ready``."""
    record("helm install --wait", release.helm_upgrade())
    record("install -> SentimentPipeline Ready", release.wait_ready())
    status = release.pipeline()["status"]
    assert status["phase"] == "Running", status
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in release.worker_pods()} == {
        "consumer",
        "inference",
    }
    INSTALLED.append(RELEASE)


def test_worker_pods_use_the_charts_image_pull_policy(release: Release) -> None:
    """``worker.image.pullPolicy`` reaches the worker Deployments the operator creates (Never here: no
    registry)."""
    for component in ("consumer", "inference"):
        dep = release.get(f"deployment/{PIPELINE}-{component}")
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container.get("imagePullPolicy") == "Never", (component, container.get("imagePullPolicy"))


def test_messages_produced_from_a_pod_land_exactly_once(release: Release) -> None:
    """N messages produced from a pod -> exactly N rows in MySQL, none twice."""
    t0 = time.monotonic()
    run_id = release.produce(MESSAGES)
    record(f"produce {MESSAGES} messages (pod)", time.monotonic() - t0)
    took = release.wait_rows(run_id, MESSAGES, timeout=900)
    record(f"{MESSAGES} messages -> {MESSAGES} rows (after produce)", took)
    record(f"messages/s end to end ({MESSAGES})", f"{MESSAGES / (time.monotonic() - t0):.0f}")


def test_a_backlog_scales_inference_out_and_back(release: Release) -> None:
    """A backlog beyond the target scales inference out (Scaled events on the CR), every replica asked for is
    scheduled on the node, and once drained it scales back to minReplicas; nothing is lost."""
    autoscaling = release.pipeline()["spec"]["autoscaling"]
    scaled_before = len(release.events("Scaled"))
    t0 = time.monotonic()
    run_id = release.produce(BACKLOG)

    def scaled_out() -> int:
        replicas = int(release.get(f"deployment/{PIPELINE}-inference")["spec"].get("replicas", 1))
        return replicas if replicas > autoscaling["minReplicas"] else 0

    replicas = eventually(scaled_out, timeout=300, what="inference scaled out")
    record("backlog -> inference scaled out (from produce start)", time.monotonic() - t0)
    peak = replicas

    def scheduled() -> bool:
        pods = release.worker_pods("inference")
        nonlocal peak
        peak = max(peak, len(pods))
        pending = [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Pending"]
        unschedulable = [
            p["metadata"]["name"]
            for p in pods
            if condition(p, "PodScheduled").get("reason") == "Unschedulable"
        ]
        assert not unschedulable, f"inference replicas the node cannot fit: {unschedulable}"
        return not pending

    took = release.wait_rows(run_id, BACKLOG, timeout=1200)
    eventually(scheduled, timeout=60, what="all inference replicas scheduled")
    record(f"backlog of {BACKLOG} -> rows", took)
    record("inference replicas at peak", peak)
    assert len(release.events("Scaled")) > scaled_before, "Scaled events on the SentimentPipeline"
    t1 = time.monotonic()
    eventually(
        lambda: (
            int(release.get(f"deployment/{PIPELINE}-inference")["spec"].get("replicas", 0))
            == autoscaling["minReplicas"]
        ),
        timeout=autoscaling["scaleDownStabilizationSeconds"] + 300,
        what="inference scaled back to minReplicas",
    )
    record("drained -> scaled back in", time.monotonic() - t1)


def _without_images(template: dict[str, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(template))
    for container in copy["spec"]["containers"]:
        container.pop("image", None)
    return copy


def test_a_model_backend_change_rolls_the_workers_with_no_loss_and_no_duplicates(release: Release) -> None:
    """``helm upgrade`` to another model backend while messages flow (from the default slim image's onnx-int8
    to the torch image's torch backend: ``--set worker.image.variant=torch --set
    pipeline.modelBackend=torch``): the inference Deployment rolls to it, the consumer changes nothing but its
    image, and every message
    produced during the rollout lands exactly once."""
    backend = release.pipeline()["spec"]["model"]["backend"]
    flags = ["--set", "pipeline.modelBackend=onnx-int8"]
    if backend == "onnx-int8":
        flags = [*release.tag_flags("torch"), "--set", "worker.image.variant=torch"]
        flags += ["--set", "pipeline.modelBackend=torch"]
    target = flags[-1].split("=", 1)[1]
    consumer_before = release.get(f"deployment/{PIPELINE}-consumer")["spec"]["template"]
    inference_before = release.get(f"deployment/{PIPELINE}-inference")["spec"]["template"]
    count, rate = 1500, 50.0
    run_id = release.produce(count, rate=rate, wait=False)
    time.sleep(5)
    t0 = time.monotonic()
    release.helm_upgrade("--reuse-values", *flags)
    for component in ("inference", "consumer"):
        release.kubectl(
            "rollout", "status", f"deployment/{PIPELINE}-{component}", "--timeout=600s", timeout=630
        )
    record(f"backend {backend} -> {target}: workers rolled out", time.monotonic() - t0)
    release.wait_produced(run_id, timeout=count / rate + 300)
    took = release.wait_rows(run_id, count, timeout=900)
    record(f"{count} messages at {rate:.0f}/s across the rollout -> rows (after produce)", took)
    assert release.pipeline()["spec"]["model"]["backend"] == target
    assert release.get(f"deployment/{PIPELINE}-inference")["spec"]["template"] != inference_before
    consumer_after = release.get(f"deployment/{PIPELINE}-consumer")["spec"]["template"]
    assert _without_images(consumer_after) == _without_images(consumer_before), (
        "a model backend change touches the consumer's image at most"
    )
    release.wait_ready()


def test_paused_scales_workers_to_zero_and_running_brings_them_back(release: Release) -> None:
    """``state: paused`` -> zero worker pods (phase Paused); ``state: running`` -> workers back, Ready
    again."""
    t0 = time.monotonic()
    release.kubectl(
        "patch", f"sentimentpipeline/{PIPELINE}", "--type=merge", "-p", '{"spec":{"state":"paused"}}'
    )
    try:
        eventually(lambda: not release.worker_pods(), timeout=300, what="no worker pods")
        eventually(
            lambda: release.pipeline()["status"].get("phase") == "Paused", timeout=120, what="phase Paused"
        )
        record("paused -> zero worker pods", time.monotonic() - t0)
    finally:
        release.kubectl(
            "patch", f"sentimentpipeline/{PIPELINE}", "--type=merge", "-p", '{"spec":{"state":"running"}}'
        )
    t0 = time.monotonic()
    release.wait_ready()
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in release.worker_pods()} == {
        "consumer",
        "inference",
    }
    record("running -> workers back, Ready", time.monotonic() - t0)


def _children(release: Release) -> dict[str, list[str]]:
    """Kind -> UIDs of the objects owned by the pipeline."""
    uid = release.pipeline()["metadata"]["uid"]
    owned: dict[str, list[str]] = {}
    for kind in ("deployments", "configmaps", "services"):
        for item in release.get(kind)["items"]:
            if any(ref.get("uid") == uid for ref in item["metadata"].get("ownerReferences", [])):
                owned.setdefault(kind, []).append(item["metadata"]["uid"])
    return {k: sorted(v) for k, v in owned.items()}


def test_a_deleted_operator_pod_is_replaced_without_duplicate_children(release: Release) -> None:
    """Deleting the operator pod -> a new one takes over; the pipeline's children are the same objects,
    once."""
    before = _children(release)
    assert len(before["deployments"]) == 2, before
    (old,) = release.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    t0 = time.monotonic()
    release.kubectl("delete", "pod", old["metadata"]["name"], "--wait=true", "--timeout=120s", timeout=150)

    def new_operator_ready() -> bool:
        pods = release.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] != old["metadata"]["uid"]]
        return len(fresh) == 1 and condition(fresh[0], "Ready").get("status") == "True"

    eventually(new_operator_ready, timeout=300, what="a new operator pod Ready")
    record("operator pod deleted -> new one Ready", time.monotonic() - t0)
    # Let the new operator resume and reconcile (several resync periods), then compare.
    time.sleep(45)
    assert _children(release) == before, "same children, none created twice"
    assert condition(release.pipeline(), "Ready").get("status") == "True"


HTTP_PAGES = int(os.environ.get("E2E_HTTP_PAGES", "30"))
HTTP_PER_PAGE = 20
PAGED_API = Path(__file__).resolve().parents[1] / "http_source" / "paged_api.py"


def _start_paged_api(release: Release) -> str:
    """The tests' paged API (tests/http_source/paged_api.py, stdlib only) in a pod of the worker image behind
    a Service; returns its URL."""
    image = release.get(f"deployment/{PIPELINE}-consumer")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    release.kubectl("create", "configmap", "paged-api", f"--from-file=paged_api.py={PAGED_API}")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "paged-api",
            "labels": {"app": "paged-api", "app.kubernetes.io/part-of": "sentiment-e2e"},
        },
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "/api/paged_api.py", "--variant", "cursor"],
                    "args": ["--pages", str(HTTP_PAGES), "--per-page", str(HTTP_PER_PAGE), "--port", "8080"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/_stats", "port": 8080}, "periodSeconds": 2},
                    "volumeMounts": [{"name": "api", "mountPath": "/api"}],
                }
            ],
            "volumes": [{"name": "api", "configMap": {"name": "paged-api"}}],
        },
    }
    release.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    release.kubectl("expose", "pod", "paged-api", "--port=8080")
    release.kubectl("wait", "pod/paged-api", "--for=condition=Ready", "--timeout=180s", timeout=200)
    return f"http://paged-api.{NAMESPACE}.svc:8080/cursor"


def _api_stats(release: Release) -> dict[str, Any]:
    code = (
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/_stats').read().decode())"
    )
    return dict(json.loads(release.kubectl("exec", "paged-api", "--", "python", "-c", code)))


def _poller_metric(release: Release, name: str) -> float:
    """The sum of a metric's samples on the poller pod's /metrics."""
    (pod,) = release.worker_pods("poller")
    port = release.pipeline()["spec"].get("metrics", {}).get("port", 9000)
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    text = release.kubectl("exec", pod["metadata"]["name"], "--", "python", "-c", code)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_an_http_source_lands_every_page_once_and_each_record_becomes_one_row(release: Release) -> None:
    """``spec.source.kind: http`` -> a poller Deployment (one replica) pages through an API that serves each
    page once; every page is landed once and every record lands once in the fact table. Back to ``kafka`` ->
    the poller is removed and the pipeline is Ready."""
    from tests.http_source.paged_api import PagedApi

    expected = PagedApi("cursor", HTTP_PAGES, per_page=HTTP_PER_PAGE).expected_ids()
    url = _start_paged_api(release)
    http = {
        "url": url,
        "paging": {"type": "cursor", "cursorField": "next_cursor", "cursorParam": "cursor"},
        "recordsPath": "records",
        "intervalSeconds": 5,
    }
    t0 = time.monotonic()
    patch = {"spec": {"source": {"kind": "http", "http": http}}}
    release.kubectl("patch", f"sentimentpipeline/{PIPELINE}", "--type=merge", "-p", json.dumps(patch))
    try:
        eventually(lambda: len(release.worker_pods("poller")) == 1, timeout=180, what="one poller pod")
        release.kubectl("rollout", "status", f"deployment/{PIPELINE}-poller", "--timeout=300s", timeout=320)
        release.wait_ready()
        table = release.pipeline()["spec"]["sink"].get("table", "dw_messages")
        ids = ",".join(f"'{i}'" for i in sorted(expected))

        def rows() -> tuple[int, int]:
            ((total, distinct),) = release.sql(
                f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {table} WHERE id IN ({ids})"
            )
            return int(total), int(distinct)

        eventually(
            lambda: rows()[0] >= len(expected), timeout=600, interval=2, what=f"{len(expected)} API rows"
        )
        record(f"HTTP source: {HTTP_PAGES} pages, {len(expected)} records -> rows", time.monotonic() - t0)
        time.sleep(5)
        assert rows() == (len(expected), len(expected)), "each API record exactly once in the fact table"
        stats = _api_stats(release)
        assert stats["served_pages"] == HTTP_PAGES + 1 and stats["at_end"], stats  # + the empty end page
        landed = _poller_metric(release, 'sentiment_http_pages_total{outcome="landed"}')
        assert landed == HTTP_PAGES + 1, (landed, stats)
        record("HTTP source: pages served / landed", f"{stats['served_pages']} / {landed:.0f}")
    finally:
        revert = {"spec": {"source": {"kind": "kafka", "http": None}}}
        release.kubectl("patch", f"sentimentpipeline/{PIPELINE}", "--type=merge", "-p", json.dumps(revert))
        release.kubectl("delete", "pod,service,configmap", "paged-api", "--wait=false", check=False)
    eventually(lambda: not release.worker_pods("poller"), timeout=180, what="poller removed")
    release.wait_ready()


def _patch_pipeline(release: Release, spec: dict[str, Any]) -> None:
    release.kubectl(
        "patch", f"sentimentpipeline/{PIPELINE}", "--type=merge", "-p", json.dumps({"spec": spec})
    )


def _deployment(release: Release, component: str) -> dict[str, Any] | None:
    found = release.kube.try_json("-n", NAMESPACE, "get", f"deployment/{PIPELINE}-{component}")
    return None if found is None else dict(found)


def test_fused_mode_runs_inference_alone_and_switching_back_while_messages_flow_loses_nothing(
    release: Release,
) -> None:
    """``spec.mode: fused`` -> no consumer Deployment; the inference pods run ``infer --fused`` (consume,
    stage raw, classify, write, commit in one process) and every message lands once. Back to ``lease`` while
    messages flow -> the consumer is back, and every message sent across the switch lands exactly once."""
    t0 = time.monotonic()
    _patch_pipeline(release, {"mode": "fused"})
    try:
        eventually(
            lambda: _deployment(release, "consumer") is None, timeout=180, what="no consumer Deployment"
        )

        def inference_fused() -> bool:
            dep = _deployment(release, "inference")
            (container,) = dep["spec"]["template"]["spec"]["containers"] if dep else [{}]
            return "--fused" in [*container.get("command", []), *container.get("args", [])]

        eventually(inference_fused, timeout=180, what="inference Deployment runs infer --fused")
        release.kubectl(
            "rollout", "status", f"deployment/{PIPELINE}-inference", "--timeout=600s", timeout=630
        )
        release.wait_ready()
        assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in release.worker_pods()} == {
            "inference"
        }
        record("mode lease -> fused: Ready, inference alone", time.monotonic() - t0)
        t1 = time.monotonic()
        run_id = release.produce(MESSAGES)
        took = release.wait_rows(run_id, MESSAGES, timeout=900)
        record(f"fused: {MESSAGES} messages -> rows (after produce)", took)
        record(f"fused: messages/s end to end ({MESSAGES})", f"{MESSAGES / (time.monotonic() - t1):.0f}")
        count, rate = 1000, 50.0
        run_id = release.produce(count, rate=rate, wait=False)
        time.sleep(5)
    finally:
        _patch_pipeline(release, {"mode": "lease"})
    t2 = time.monotonic()
    eventually(lambda: _deployment(release, "consumer") is not None, timeout=180, what="consumer back")
    for component in ("consumer", "inference"):
        release.kubectl(
            "rollout", "status", f"deployment/{PIPELINE}-{component}", "--timeout=600s", timeout=630
        )
    release.wait_ready()
    record("mode fused -> lease: consumer back, Ready", time.monotonic() - t2)
    release.wait_produced(run_id, timeout=count / rate + 300)
    took = release.wait_rows(run_id, count, timeout=900)
    record(f"{count} messages at {rate:.0f}/s across fused -> lease -> rows (after produce)", took)


def test_a_model_registered_in_mlflow_serves_the_pipeline(
    release: Release, mlflow_for_pods: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A spam/ham classifier trained here and registered in a real MLflow server (``sentiment-pipeline train
    --data sms.csv --task e2e-spam``, TF-IDF + Naive Bayes, alias ``champion``) -> ``spec.model.name:
    models:/e2e-spam@champion`` with ``spec.model.tracking.uri`` -> the inference pods resolve the alias,
    download the model into their cache volume, and every message lands once, labelled ``spam`` or ``ham`` by
    it (labels come from the model). Back to the previous model -> Ready, sentiment labels again."""
    venv = Path(os.environ.get("VENV", str(CHART.parents[1] / ".venv")))
    work = tmp_path_factory.mktemp("e2e-spam")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_for_pods, "MLFLOW_EXPERIMENT_NAME": "e2e"}
    t0 = time.monotonic()
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "sentiment_workers.training.spam_fixture",
            str(work / "sms.csv"),
        ],
        check=True,
        timeout=120,
    )
    train = [str(venv / "bin" / "sentiment-pipeline"), "train", "--data", str(work / "sms.csv")]
    train += ["--task", "e2e-spam", "--output", str(work / "model")]
    subprocess.run(train, env=env, check=True, timeout=600)
    record("spam baseline trained and registered in MLflow (host)", time.monotonic() - t0)
    before = release.pipeline()["spec"].get("model", {})
    t1 = time.monotonic()
    _patch_pipeline(
        release, {"model": {"name": "models:/e2e-spam@champion", "tracking": {"uri": mlflow_for_pods}}}
    )
    try:

        def rendered_for_the_registry() -> bool:
            config = release.get(f"configmap/{PIPELINE}-config")["data"]
            dep = _deployment(release, "inference") or {}
            volumes = dep["spec"]["template"]["spec"].get("volumes", [])
            return config.get("MLFLOW_TRACKING_URI") == mlflow_for_pods and any(
                v.get("name") == "model-cache" and "emptyDir" in v for v in volumes
            )

        eventually(
            rendered_for_the_registry,
            timeout=180,
            what="MLFLOW_TRACKING_URI in the pipeline's ConfigMap, a model-cache volume on inference",
        )
        release.kubectl(
            "rollout", "status", f"deployment/{PIPELINE}-inference", "--timeout=600s", timeout=630
        )
        release.wait_ready()
        record("models:/e2e-spam@champion -> inference rolled out, Ready", time.monotonic() - t1)
        run_id = release.produce(MESSAGES // 4)
        took = release.wait_rows(run_id, MESSAGES // 4, timeout=900)
        record(f"registered model: {MESSAGES // 4} messages -> rows (after produce)", took)
        table = release.pipeline()["spec"]["sink"].get("table", "dw_messages")
        labels = release.sql(
            f"SELECT sentiment_label, model, COUNT(*) FROM {table} WHERE id LIKE 'burst-{run_id}-%' "
            "GROUP BY sentiment_label, model"
        )
        assert {label for label, _, _ in labels} <= {"spam", "ham"}, labels
        assert all(model.startswith("e2e-spam-v1@") for _, model, _ in labels), labels
        record("registered model: rows by label", ", ".join(f"{label} {n}" for label, _, n in labels))
    finally:
        _patch_pipeline(release, {"model": {**before, "tracking": None}})
    release.kubectl("rollout", "status", f"deployment/{PIPELINE}-inference", "--timeout=600s", timeout=630)
    release.wait_ready()


def test_a_mysql_outage_degrades_the_pipeline_naming_mysql_and_it_recovers_with_nothing_lost(
    release: Release,
) -> None:
    """MySQL's StatefulSet scaled to 0 -> Degraded, with a reason or message naming MySQL, in bounded time;
    messages
    sent meanwhile wait; MySQL back -> Ready again by itself, every message exactly once."""
    sts = f"statefulset/{RELEASE}-mysql"
    release.kubectl("scale", sts, "--replicas=0")
    t0 = time.monotonic()
    try:
        eventually(
            lambda: not release.get("pods", "-l", "app.kubernetes.io/component=mysql")["items"],
            timeout=180,
            what="MySQL pod gone",
        )
        run_id = release.produce(MESSAGES // 2)

        def degraded_naming_mysql() -> bool:
            degraded = condition(release.pipeline(), "Degraded")
            text = f"{degraded.get('reason', '')} {degraded.get('message', '')}".lower()
            return degraded.get("status") == "True" and "mysql" in text

        eventually(degraded_naming_mysql, timeout=300, what="Degraded naming MySQL")
        record("MySQL down -> Degraded naming MySQL", time.monotonic() - t0)
        print(json.dumps(condition(release.pipeline(), "Degraded")), flush=True)
    finally:
        release.kubectl("scale", sts, "--replicas=1")
    t1 = time.monotonic()
    release.kubectl("rollout", "status", sts, "--timeout=600s", timeout=630)
    release.wait_ready()
    record("MySQL back -> Ready", time.monotonic() - t1)
    took = release.wait_rows(run_id, MESSAGES // 2, timeout=900)
    record(f"{MESSAGES // 2} messages sent during the outage -> rows after recovery", took)


def test_helm_upgrade_keeps_the_generated_credentials(release: Release) -> None:
    """A plain ``helm upgrade`` re-renders the chart but keeps every generated password (and the data stays
    usable)."""

    def secrets() -> dict[str, dict[str, str]]:
        items = release.get("secrets", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        return {s["metadata"]["name"]: s.get("data", {}) for s in items if s.get("type") == "Opaque"}

    before = secrets()
    assert before, "the chart generated Secrets"
    record("helm upgrade --wait (no changes)", release.helm_upgrade("--reuse-values"))
    assert secrets() == before
    release.wait_ready()
    run_id = release.produce(100)
    release.wait_rows(run_id, 100, timeout=300)


def test_helm_uninstall_leaves_nothing_behind(release: Release, kube: Kube) -> None:
    """``helm uninstall`` -> no SentimentPipeline, no worker pods; the namespace can then be deleted."""
    t0 = time.monotonic()
    kube.helm(release.helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "5m")
    eventually(
        lambda: not release.get("sentimentpipelines")["items"], timeout=120, what="no SentimentPipeline"
    )
    eventually(lambda: not release.worker_pods(), timeout=180, what="no worker pods")
    eventually(lambda: not release.get("deployments")["items"], timeout=120, what="no Deployments")
    record("helm uninstall -> nothing left", time.monotonic() - t0)
    t1 = time.monotonic()
    kube.run("delete", "namespace", NAMESPACE, "--timeout=180s", timeout=200)
    assert kube.try_json("namespace", NAMESPACE) is None
    record("namespace deleted", time.monotonic() - t1)
