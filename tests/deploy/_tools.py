"""Helpers for the deploy-path tests (Terraform, workflows, Dockerfiles).

- ``lint_tool(name)``: a linter from ``scripts/install-lint-tools.sh`` (hadolint, shellcheck, actionlint,
  checkov), installed on first use.
- ``TerraformSandbox``: the real ``terraform`` binary on a copy of ``terraform/variables.tf`` alone. That
  configuration needs no provider, so ``init`` and ``console`` work offline: the variables' own defaults,
  types and validation blocks are evaluated by Terraform itself, and ``templatefile`` renders the
  cloud-init template exactly as ``main.tf`` does.
- ``load_hcl(path)``: a ``.tf`` file parsed with python-hcl2 (expressions stay ``${...}`` strings).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import yaml

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
WORKFLOWS_DIR = REPO / ".github" / "workflows"
DOCKER_DIR = REPO / "docker"
TOOLS_BIN = REPO / ".dev" / "tools" / "bin"
LINT_TOOLS = ("hadolint", "shellcheck", "actionlint", "checkov", "cloud-init-schema")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(
    cmd: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lint_tool(name: str) -> Path:
    """Path of a linter installed by scripts/install-lint-tools.sh (running it when the tool is missing)."""
    assert name in LINT_TOOLS, f"unknown lint tool {name!r}"
    path = TOOLS_BIN / name
    if not os.access(path, os.X_OK):
        result = run(["bash", str(REPO / "scripts" / "install-lint-tools.sh")], timeout=900)
        assert result.returncode == 0, f"install-lint-tools.sh failed:\n{result.stdout}\n{result.stderr}"
    assert os.access(path, os.X_OK), f"{path} missing after scripts/install-lint-tools.sh"
    return path


def helm() -> Path:
    """The helm binary from scripts/install-helm.sh (installed on first use)."""
    result = run(["bash", str(REPO / "scripts" / "install-helm.sh")], timeout=600)
    assert result.returncode == 0, f"install-helm.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


def helm_template(release: str, namespace: str, *args: str) -> list[dict[str, Any]]:
    """The chart rendered by ``helm template`` (values schema enforced), as a list of manifests."""
    chart = REPO / "charts" / "sentiment-pipeline"
    result = run([str(helm()), "template", release, str(chart), "--namespace", namespace, *args])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_hcl(path: Path) -> dict[str, Any]:
    """A Terraform file parsed by python-hcl2."""
    with path.open() as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def resources(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """All ``resource "<kind>" "<name>"`` blocks of a parsed file, by name."""
    found: dict[str, dict[str, Any]] = {}
    for block in parsed.get("resource", []):
        found.update(block.get(kind, {}))
    return found


def variables(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All ``variable`` blocks of a parsed file, by name."""
    found: dict[str, dict[str, Any]] = {}
    for block in parsed.get("variable", []):
        found.update(block)
    return found


def hcl_literal(value: Any) -> str:
    """A Python value as a Terraform ``-var`` literal (strings stay raw, lists/maps/bools as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


class TerraformSandbox:
    """``terraform`` on a copy of terraform/variables.tf (no provider: init and console run offline)."""

    def __init__(self, workdir: Path, required: dict[str, Any]) -> None:
        self.dir = workdir
        self.required = required
        shutil.copy(TERRAFORM_DIR / "variables.tf", workdir / "variables.tf")
        rc_file = workdir / "terraformrc"
        rc_file.write_text("")
        self.env = {
            "TF_CLI_CONFIG_FILE": str(rc_file),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        init = run(["terraform", "init", "-backend=false", "-input=false"], cwd=workdir, env=self.env)
        assert init.returncode == 0, init.stdout + init.stderr

    def _var_args(self, overrides: dict[str, Any]) -> list[str]:
        args: list[str] = []
        for name, value in {**self.required, **overrides}.items():
            if value is not None:  # None leaves the variable unset
                args += ["-var", f"{name}={hcl_literal(value)}"]
        return args

    def _terraform(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["terraform", *args],
            cwd=self.dir,
            env={**os.environ, **self.env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        proc.stdout = _ANSI.sub("", proc.stdout)
        proc.stderr = _ANSI.sub("", proc.stderr)
        return proc

    def plan(self, **overrides: Any) -> subprocess.CompletedProcess[str]:
        """``terraform plan`` of the variables alone: fails exactly when a value is missing or invalid."""
        args = ["plan", "-input=false", "-no-color", "-lock=false", *self._var_args(overrides)]
        return self._terraform(args)

    def evaluate_string(self, expression: str, **overrides: Any) -> str:
        """The value of a string expression, exactly (passed through base64 to survive console quoting)."""
        proc = self._terraform(["console", *self._var_args(overrides)], stdin=f"base64encode({expression})\n")
        # console exits 0 even when it reports errors: look at what it says.
        assert proc.returncode == 0 and "Error:" not in proc.stderr, proc.stdout + proc.stderr
        return base64.b64decode(json.loads(proc.stdout.strip().splitlines()[-1])).decode()

    def rejects(self, **overrides: Any) -> str:
        """Assert that Terraform refuses these variable values; return its error text."""
        proc = self.plan(**overrides)
        assert proc.returncode != 0, f"terraform accepted {overrides}: {proc.stdout}"
        return " ".join((proc.stdout + proc.stderr).split())

    def accepts(self, **overrides: Any) -> None:
        """Assert that Terraform accepts these variable values."""
        proc = self.plan(**overrides)
        assert proc.returncode == 0, f"terraform refused {overrides}: {proc.stdout}{proc.stderr}"

    def render_cloud_init(self, **template_overrides: str) -> str:
        """terraform/cloud-init.yaml.tftpl rendered as main.tf renders it, from the variables' defaults."""
        template = TERRAFORM_DIR / "cloud-init.yaml.tftpl"
        install_sh = TERRAFORM_DIR / "files" / "install-sentiment.sh"
        args = {
            "admin_username": "var.admin_username",
            "public_ip": '"203.0.113.10"',
            "k3s_version": "var.k3s_version",
            "k3s_sha256": "var.k3s_sha256",
            "helm_version": "var.helm_version",
            "helm_sha256": "var.helm_sha256",
            "chart_repository": "var.chart_repository",
            "chart_version": "var.chart_version",
            "chart_namespace": "var.chart_namespace",
            "base_values_b64": "base64encode(yamlencode({metabase = {ingress = {enabled = true}}}))",
            "extra_values_b64": 'base64encode(var.chart_values == "" ? "{}" : var.chart_values)',
            "install_sh_b64": f'base64encode(file("{install_sh}"))',
            **template_overrides,
        }
        mapping = ", ".join(f"{key} = {value}" for key, value in args.items())
        return self.evaluate_string(f'templatefile("{template}", {{{mapping}}})')
