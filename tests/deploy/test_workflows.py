""".github/workflows: valid, linted by actionlint, and saying what the project promises.

CI runs the same ``make test`` as developers; infra logs in to Azure by OIDC only (no stored Azure
secret) and applies only behind a protected environment; e2e goes from images to rows in MySQL;
release pushes images and the chart to GHCR with the job's own token.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy._tools import REPO, WORKFLOWS_DIR, helm_template, lint_tool, run

EXPECTED = {"ci.yml", "e2e.yml", "infra.yml", "release.yml"}
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS_DIR / name).read_text())
    assert isinstance(data, dict), name
    # YAML 1.1 reads the bare key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict[str, Any]]:
    return {path.name: _load(path.name) for path in sorted(WORKFLOWS_DIR.glob("*.yml"))}


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _runs(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow))


def _uses(workflow: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in _steps(workflow) if "uses" in step]


def test_the_four_workflows_exist_and_are_valid_yaml(workflows: dict[str, dict[str, Any]]) -> None:
    assert set(workflows) >= EXPECTED
    for name, workflow in workflows.items():
        assert workflow.get("name"), name
        assert workflow.get("on"), f"{name} has no trigger"
        assert workflow.get("jobs"), f"{name} has no jobs"
        for job_name, job in workflow["jobs"].items():
            assert job.get("runs-on"), f"{name}:{job_name} has no runner"
            assert job.get("timeout-minutes") or job_name == "version", f"{name}:{job_name} has no timeout"


def test_actionlint_passes_on_every_workflow() -> None:
    result = run([str(lint_tool("actionlint")), str(WORKFLOWS_DIR / "*.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Checking {len(list(WORKFLOWS_DIR.glob('*.yml')))} workflow file(s)" in result.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = (WORKFLOWS_DIR / "ci.yml").read_text().replace("${{ github.ref }}", "${{ github.reff }}", 1)
    (tmp_path / "ci.yml").write_text(broken)
    result = run([str(lint_tool("actionlint")), str(tmp_path / "*.yml")])
    assert result.returncode != 0 and "reff" in result.stdout


def test_run_scripts_are_shellcheck_clean(workflows: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    scripts: list[Path] = []
    for name, workflow in workflows.items():
        for index, step in enumerate(_steps(workflow)):
            if "run" in step:
                # GitHub substitutes expressions before the shell runs: stand in a variable for each.
                script = EXPRESSION.sub("${EXPR}", step["run"])
                label = re.sub(r"\W+", "-", step.get("name", "run"))
                path = tmp_path / f"{name}-step{index}-{label}.sh"
                path.write_text("#!/usr/bin/env bash\nset -e\nexport EXPR=x\n" + script)
                scripts.append(path)
    assert scripts
    result = run([str(lint_tool("shellcheck")), "--shell=bash", "--severity=warning", *map(str, scripts)])
    assert result.returncode == 0, result.stdout


def test_permissions_are_read_only_unless_a_job_needs_more(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        assert workflow["permissions"].get("contents") == "read", name
        granted = {k for k, v in workflow["permissions"].items() if v == "write"}
        assert granted <= {"id-token"}, f"{name} grants {granted} workflow-wide"


def test_ci_runs_make_test_and_the_chart_and_lint_targets(workflows: dict[str, dict[str, Any]]) -> None:
    ci = workflows["ci.yml"]
    runs = _runs(ci)
    assert re.search(r"^make test$", runs, re.MULTILINE), "CI must run exactly `make test`"
    # ...without the e2e suite: a job container cannot create network namespaces (e2e.yml runs it on kind).
    step = next(s for s in ci["jobs"]["test"]["steps"] if s.get("run") == "make test")
    assert step["env"]["E2E"] == "0"
    assert "make lint" in runs and "make chart-lint" in runs
    assert {"push", "pull_request"} <= set(ci["on"])
    # The suite's servers need Debian 12 + Python 3.11, as on the development machines.
    assert ci["jobs"]["test"]["container"]["image"].startswith("python:3.11")
    assert ci["jobs"]["test"]["container"]["image"].endswith("-bookworm")


def test_infra_logs_in_by_oidc_with_no_long_lived_secret(workflows: dict[str, dict[str, Any]]) -> None:
    infra = workflows["infra.yml"]
    assert infra["permissions"]["id-token"] == "write"
    text = (WORKFLOWS_DIR / "infra.yml").read_text()
    assert "secrets." not in text, "infra must not read any stored secret"
    for forbidden in ("client-secret", "ARM_CLIENT_SECRET", "creds:", "ARM_ACCESS_KEY", "AZURE_CREDENTIALS"):
        assert forbidden not in text
    assert infra["env"]["ARM_USE_OIDC"] == "true"
    logins = [s for s in _steps(infra) if s.get("uses", "").startswith("azure/login@")]
    assert logins and all(set(s["with"]) == {"client-id", "tenant-id", "subscription-id"} for s in logins)


def test_infra_plans_on_pull_requests_and_applies_only_on_dispatch_behind_an_environment(
    workflows: dict[str, dict[str, Any]],
) -> None:
    infra = workflows["infra.yml"]
    assert "pull_request" in infra["on"] and "workflow_dispatch" in infra["on"]
    plan, apply = infra["jobs"]["plan"], infra["jobs"]["apply"]
    assert "terraform plan" in _runs({"jobs": {"plan": plan}})
    assert "terraform apply" not in _runs({"jobs": {"plan": plan}})
    assert "terraform apply" in _runs({"jobs": {"apply": apply}})
    assert "workflow_dispatch" in apply["if"] and apply["environment"]
    assert infra["concurrency"]["cancel-in-progress"] is False, "never cancel a run holding the state"


def _e2e_suite_step(e2e: dict[str, Any]) -> dict[str, Any]:
    (step,) = [s for s in _steps(e2e) if "pytest -m e2e tests/e2e" in s.get("run", "")]
    return step


def test_e2e_runs_the_e2e_suite_on_kind_with_the_images_it_built(
    workflows: dict[str, dict[str, Any]],
) -> None:
    """e2e.yml builds both images with Docker, loads them into kind and runs the project's e2e suite
    (tests/e2e, the scenario `make e2e` runs locally) against kind's kubeconfig."""
    e2e = workflows["e2e.yml"]
    uses, runs = _uses(e2e), _runs(e2e)
    assert any(u.startswith("helm/kind-action@") for u in uses)
    builds = sorted(
        (s["with"]["file"], s["with"].get("target", ""))
        for s in _steps(e2e)
        if s.get("uses", "").startswith("docker/build-push-action@")
    )
    assert builds == [
        ("docker/operator.Dockerfile", ""),
        ("docker/worker.Dockerfile", ""),
        ("docker/worker.Dockerfile", "torch"),
    ], "operator, the slim worker (default) and the torch worker the suite switches to"
    for expected in ("kind load docker-image", "kubectl apply --dry-run=server -f k8s-manifests/samples/"):
        assert expected in runs, expected
    env = _e2e_suite_step(e2e)["env"]
    assert env["E2E_KUBECONFIG"] and env["E2E_STANDINS"] == "0", "kind pulls the chart's official data plane"
    assert env["E2E_IMAGE_TAG"] == "${{ env.TAG }}", "the suite installs the images built and loaded above"


def test_e2e_suite_values_install_the_built_images_and_what_the_suite_queries(
    workflows: dict[str, dict[str, Any]],
) -> None:
    """The suite's values and image flags (as set by e2e.yml) render the built images with pullPolicy Never,
    the chart's own SentimentPipeline, and the MySQL variables the suite's row count uses."""
    e2e = workflows["e2e.yml"]
    assert _e2e_suite_step(e2e)
    tag = "e2e-0123abc"
    env = e2e["env"]
    args = ["-f", str(REPO / "tests/e2e/values-e2e.yaml")]
    args += ["--set", f"operator.image.tag={tag}", "--set", f"worker.image.tag={tag}"]
    manifests = helm_template(env["RELEASE"], env["NAMESPACE"], *args)

    containers = [
        c
        for m in manifests
        if m["kind"] in {"Deployment", "StatefulSet", "Job"}
        for c in m["spec"]["template"]["spec"]["containers"]
    ]
    operator = [c for c in containers if c["image"] == f"ghcr.io/sentiment-pipeline/operator:{tag}"]
    assert operator and all(c["imagePullPolicy"] == "Never" for c in operator)
    # The chart's own SentimentPipeline, waited for by name and read for topic and bootstrap servers.
    pipelines = [m for m in manifests if m["kind"] == "SentimentPipeline"]
    assert len(pipelines) == 1 and pipelines[0]["spec"]["source"]["topic"]
    assert pipelines[0]["spec"]["source"]["bootstrapServers"]
    rendered = yaml.safe_dump_all(manifests)
    assert f"ghcr.io/sentiment-pipeline/worker:{tag}" in rendered
    # The suite's row count execs into statefulset/$RELEASE-mysql and uses these variables.
    (mysql,) = [
        m
        for m in manifests
        if m["kind"] == "StatefulSet" and m["metadata"]["name"] == f"{env['RELEASE']}-mysql"
    ]
    names = {e["name"] for c in mysql["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert {"APP_USERNAME", "APP_PASSWORD", "MYSQL_DATABASE"} <= names


def test_release_pushes_images_and_the_chart_to_ghcr_with_the_job_token(
    workflows: dict[str, dict[str, Any]],
) -> None:
    release = workflows["release.yml"]
    text = (WORKFLOWS_DIR / "release.yml").read_text()
    assert set(re.findall(r"secrets\.(\w+)", text)) == {"GITHUB_TOKEN"}
    images = release["jobs"]["images"]
    assert images["permissions"]["packages"] == "write"
    matrix = images["strategy"]["matrix"]["include"]
    variants = {(m["image"], m["target"], m["torch_variant"], m["suffix"]) for m in matrix}
    # The slim worker (the chart's default tag), CPU torch and CUDA torch; the Dockerfile's targets.
    assert {
        ("operator", "", "cpu", ""),
        ("worker", "slim", "cpu", ""),
        ("worker", "torch", "cpu", "-torch"),
    } <= (variants)
    assert any(
        i == "worker" and t == "torch" and v.startswith("cu") and s == "-cuda" for i, t, v, s in variants
    )
    assert images["steps"][-1]["with"]["target"] == "${{ matrix.target }}"
    assert "helm push" in _runs(release) and "oci://ghcr.io/" in _runs(release)


def test_actions_are_pinned_to_a_version(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        for uses in _uses(workflow):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", uses), f"{name}: {uses}"


def test_dependabot_watches_actions_images_and_terraform() -> None:
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    ecosystems = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert ecosystems >= {("github-actions", "/"), ("docker", "/docker"), ("terraform", "/terraform")}


def test_ci_builds_and_checks_both_worker_variants(workflows: dict[str, dict[str, Any]]) -> None:
    """The slim worker (the default) and the torch one are both built on every push; the slim one is checked
    to hold no torch and to refuse the torch backend with exit status 3 (cli/infer.py)."""
    images = workflows["ci.yml"]["jobs"]["images"]
    targets = {(m["image"], m["target"]) for m in images["strategy"]["matrix"]["include"]}
    assert targets == {("operator", ""), ("worker", "slim"), ("worker", "torch")}
    build = next(s for s in images["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["target"] == "${{ matrix.target }}"
    checks = next(s["run"] for s in images["steps"] if "docker run" in s.get("run", ""))
    assert "classify --backend onnx-int8" in checks
    assert 'find_spec("torch") is None' in checks and 'test "$status" = 3' in checks
    stages = re.findall(
        r"^FROM \S+ AS (\S+)$", (REPO / "docker" / "worker.Dockerfile").read_text(), re.MULTILINE
    )
    assert {"slim", "torch"} <= set(stages) and stages[-1] == "slim"
