"""The e2e machinery itself, checked in every run (no cluster needed): its scripts are shellcheck-clean, the
stand-ins' Containerfiles lint clean, and the images script names what the chart deploys by default."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy._tools import lint_tool, run

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = [
    REPO / "scripts" / "cluster.sh",
    REPO / "scripts" / "node-cluster.sh",
    REPO / "scripts" / "images.sh",
    *sorted((REPO / "tests" / "e2e" / "standins").glob("*/*.sh")),
]
CONTAINERFILES = sorted((REPO / "tests" / "e2e" / "standins").glob("*/Containerfile"))


def test_cluster_and_image_scripts_are_shellcheck_clean() -> None:
    result = run([str(lint_tool("shellcheck")), "--severity=style", *map(str, SCRIPTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_standin_containerfiles_pass_hadolint() -> None:
    assert len(CONTAINERFILES) == 3
    for path in CONTAINERFILES:
        # DL3008/DL3013: the stand-ins install Debian's and PyPI's current versions on purpose (test images).
        result = run([str(lint_tool("hadolint")), "--ignore", "DL3008", "--ignore", "DL3013", str(path)])
        assert result.returncode == 0, f"{path}:\n{result.stdout}{result.stderr}"


def test_images_script_builds_what_the_chart_deploys_by_default() -> None:
    """``scripts/images.sh refs`` names the chart's default operator and worker images
    (repository:appVersion),
    so an install with only ``pullPolicy: Never`` finds the images built here."""
    chart = yaml.safe_load((REPO / "charts" / "sentiment-pipeline" / "Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts" / "sentiment-pipeline" / "values.yaml").read_text())
    refs = subprocess.run(
        ["bash", str(REPO / "scripts" / "images.sh"), "refs", "operator", "worker"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert refs == [
        f"{values['operator']['image']['repository']}:{chart['appVersion']}",
        f"{values['worker']['image']['repository']}:{chart['appVersion']}",
    ]
