"""terraform/cloud-init.yaml.tftpl and terraform/files/install-sentiment.sh: what the VM runs at first boot.

The template is rendered by Terraform's own ``templatefile`` from the variables' real defaults, then
validated by cloud-init's schema validator. The install script is linted by shellcheck and its
download-and-verify steps are exercised for real, against local ``file://`` downloads, with
``systemctl`` replaced by a recorder so nothing touches this machine's services.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy._tools import REPO, TERRAFORM_DIR, TerraformSandbox, helm_template, lint_tool, run

INSTALL_SH = TERRAFORM_DIR / "files" / "install-sentiment.sh"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZWQgYnkgdGhlIGRlcGxveSB0ZXN0cw admin@laptop"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> TerraformSandbox:
    return TerraformSandbox(
        tmp_path_factory.mktemp("tf-cloud-init"),
        required={"admin_cidrs": ["203.0.113.7/32"], "ssh_public_key": SSH_KEY},
    )


@pytest.fixture(scope="module")
def rendered(sandbox: TerraformSandbox) -> str:
    return sandbox.render_cloud_init()


@pytest.fixture(scope="module")
def cloud_config(rendered: str) -> dict[str, Any]:
    parsed = yaml.safe_load(rendered)
    assert isinstance(parsed, dict)
    return parsed


def _file(cloud_config: dict[str, Any], path: str) -> str:
    """Content of a write_files entry, decoded."""
    (entry,) = [f for f in cloud_config["write_files"] if f["path"] == path]
    content: str = entry["content"]
    return base64.b64decode(content).decode() if entry.get("encoding") == "b64" else content


def _env_file(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip("'") for key, value in pairs}


def test_renders_to_a_cloud_config_that_cloud_init_accepts(rendered: str, tmp_path: Path) -> None:
    assert rendered.startswith("#cloud-config\n")
    target = tmp_path / "user-data.yaml"
    target.write_text(rendered)
    result = run([str(lint_tool("cloud-init-schema")), str(target)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_check_rejects_a_broken_config(rendered: str, tmp_path: Path) -> None:
    broken = rendered.replace("encoding: b64", "encoding: rot13", 1)
    target = tmp_path / "broken.yaml"
    target.write_text(broken)
    result = run([str(lint_tool("cloud-init-schema")), str(target)])
    assert result.returncode != 0 and "rot13" in result.stdout + result.stderr


def test_password_login_is_off_and_the_install_script_runs_once(cloud_config: dict[str, Any]) -> None:
    assert cloud_config["ssh_pwauth"] is False
    assert cloud_config["disable_root"] is True
    assert cloud_config["runcmd"] == [["/opt/sentiment/install-sentiment.sh"]]
    (script,) = [f for f in cloud_config["write_files"] if f["path"] == "/opt/sentiment/install-sentiment.sh"]
    assert script["permissions"] == "0700" and script["owner"] == "root:root"
    assert _file(cloud_config, "/opt/sentiment/install-sentiment.sh") == INSTALL_SH.read_text()


def test_pinned_versions_and_checksums_reach_the_vm(
    cloud_config: dict[str, Any], sandbox: TerraformSandbox
) -> None:
    env = _env_file(_file(cloud_config, "/etc/sentiment/install.env"))
    for name in ("k3s_version", "k3s_sha256", "helm_version", "helm_sha256", "chart_version"):
        assert env[name.upper()] == sandbox.evaluate_string(f"var.{name}"), name
    assert env["CHART_REPOSITORY"] == "oci://ghcr.io/sentiment-pipeline/charts"
    unit = _file(cloud_config, "/etc/systemd/system/k3s.service")
    assert "ExecStart=/usr/local/bin/k3s server" in unit


def test_every_file_the_installer_reads_is_written_by_cloud_init(cloud_config: dict[str, Any]) -> None:
    written = {entry["path"] for entry in cloud_config["write_files"]}
    script = INSTALL_SH.read_text()
    read = set(re.findall(r"/etc/sentiment/[\w.-]+", script))
    assert read and read <= written, f"not written by cloud-init: {read - written}"
    assert "/etc/systemd/system/k3s.service" in written and "enable --now k3s.service" in script


def test_k3s_keeps_its_kubeconfig_private_and_serves_the_public_ip(cloud_config: dict[str, Any]) -> None:
    config = yaml.safe_load(_file(cloud_config, "/etc/rancher/k3s/config.yaml"))
    assert config["write-kubeconfig-mode"] == "0600"
    assert "203.0.113.10" in config["tls-san"]
    assert config["secrets-encryption"] is True
    for entry in cloud_config["write_files"]:
        if entry["path"].startswith(("/etc/sentiment/", "/etc/rancher/")):
            assert entry["permissions"] == "0600", entry["path"]


def test_extra_chart_values_are_passed_through_unchanged(sandbox: TerraformSandbox) -> None:
    values = "pipeline:\n  inferenceReplicas: 2\nmetabase:\n  siteName: 'Team: sentiment'\n"
    rendered = sandbox.render_cloud_init(extra_values_b64=f"base64encode({_hcl_string(values)})")
    cloud_config = yaml.safe_load(rendered)
    assert _file(cloud_config, "/etc/sentiment/values-extra.yaml") == values
    base = yaml.safe_load(_file(cloud_config, "/etc/sentiment/values-base.yaml"))
    assert base == {"metabase": {"ingress": {"enabled": True}}}


def test_the_chart_accepts_the_values_the_vm_passes_when_metabase_is_exposed(
    sandbox: TerraformSandbox,
) -> None:
    # main.tf's base values with expose_metabase = true, rendered by Terraform's yamlencode.
    host = "metabase.203.0.113.10.sslip.io"
    expression = (
        f'yamlencode({{metabase = {{ingress = {{enabled = true, className = "traefik", host = "{host}"}}}}}})'
    )
    values = sandbox.evaluate_string(expression)
    main_tf = (TERRAFORM_DIR / "main.tf").read_text()
    for key in ('className = "traefik"', "host      = local.metabase_host", "enabled   = true"):
        assert key in main_tf, f"main.tf no longer passes {key}; update this test with it"
    values_file = Path(sandbox.dir) / "values-base.yaml"
    values_file.write_text(values)
    manifests = helm_template("sentiment-pipeline", "sentiment", "--values", str(values_file))
    (ingress,) = [m for m in manifests if m["kind"] == "Ingress"]
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    # docs/deploy-azure.md and the metabase_url output name this Service and port.
    services = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Service"}
    assert 3000 in [p["port"] for p in services["sentiment-pipeline-metabase"]["spec"]["ports"]]


def test_the_default_chart_version_is_the_one_in_the_repository(sandbox: TerraformSandbox) -> None:
    chart = yaml.safe_load((REPO / "charts" / "sentiment-pipeline" / "Chart.yaml").read_text())
    assert sandbox.evaluate_string("var.chart_version") == chart["version"], (
        "bump chart_version's default in terraform/variables.tf together with the chart"
    )


def _hcl_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# --- install-sentiment.sh -------------------------------------------------------------------------


def test_install_script_is_shellcheck_clean() -> None:
    result = run([str(lint_tool("shellcheck")), "--severity=style", str(INSTALL_SH)])
    assert result.returncode == 0, result.stdout


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sandbox_root(tmp_path: Path) -> Path:
    """A fake filesystem root: downloads/, bin/, and a PATH whose systemctl only records its arguments."""
    for sub in ("downloads", "bin", "fakebin", "state"):
        (tmp_path / sub).mkdir()
    recorder = tmp_path / "fakebin" / "systemctl"
    recorder.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\n')
    recorder.chmod(0o755)
    return tmp_path


def _call(root: Path, function: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Source install-sentiment.sh and call one of its functions with file:// downloads allowed."""
    script = f'set -euo pipefail; . "{INSTALL_SH}"; {function} "$@"'
    return subprocess.run(
        ["bash", "-c", script, "install-sentiment", *args],
        env={
            **os.environ,
            "PATH": f"{root / 'fakebin'}:{os.environ['PATH']}",
            "FETCH_PROTOCOLS": "=file",
            "BIN_DIR": str(root / "bin"),
            "STATE_DIR": str(root / "state"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_fetch_verified_installs_a_download_whose_checksum_matches(sandbox_root: Path) -> None:
    payload = b"#!/bin/sh\necho k3s\n"
    source = sandbox_root / "downloads" / "k3s"
    source.write_bytes(payload)
    dest = sandbox_root / "bin" / "k3s"
    result = _call(sandbox_root, "fetch_verified", f"file://{source}", _sha256(payload), str(dest))
    assert result.returncode == 0, result.stderr
    assert dest.read_bytes() == payload
    assert list((sandbox_root / "bin").iterdir()) == [dest], "no temporary file left behind"


def test_fetch_verified_refuses_a_download_with_another_checksum(sandbox_root: Path) -> None:
    source = sandbox_root / "downloads" / "k3s"
    source.write_bytes(b"tampered")
    dest = sandbox_root / "bin" / "k3s"
    dest.write_bytes(b"previous good binary")
    result = _call(sandbox_root, "fetch_verified", f"file://{source}", _sha256(b"genuine"), str(dest))
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr
    assert dest.read_bytes() == b"previous good binary", "DEST must stay untouched"
    assert list((sandbox_root / "bin").iterdir()) == [dest], "the rejected download is removed"


def test_fetch_verified_uses_https_only_by_default(sandbox_root: Path) -> None:
    payload = b"a perfectly good file, offered over a protocol other than https"
    source = sandbox_root / "downloads" / "helm.tar.gz"
    source.write_bytes(payload)
    dest = sandbox_root / "bin" / "helm.tar.gz"
    # FETCH_PROTOCOLS empty: the script's default (=https) applies, so curl must refuse file://.
    result = _call(
        sandbox_root, "fetch_verified", f"file://{source}", _sha256(payload), str(dest), FETCH_PROTOCOLS=""
    )
    assert result.returncode != 0 and not dest.exists()
    assert "download failed" in result.stderr


def test_install_k3s_refuses_a_tampered_binary_before_starting_anything(sandbox_root: Path) -> None:
    version = "v1.36.5+k3s1"
    release = sandbox_root / "downloads" / version  # the URL says v1.36.5%2Bk3s1: curl decodes it
    release.mkdir()
    (release / "k3s").write_bytes(b"not the real k3s")
    result = _call(
        sandbox_root,
        "install_k3s",
        K3S_VERSION=version,
        K3S_SHA256=_sha256(b"the real k3s"),
        K3S_DOWNLOAD_BASE=f"file://{sandbox_root / 'downloads'}",
    )
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr and "v1.36.5%2Bk3s1/k3s" in result.stderr
    assert not (sandbox_root / "bin" / "k3s").exists()
    assert not (sandbox_root / "systemctl.log").exists(), "k3s must not be started"


def _helm_tarball(version_output: str) -> bytes:
    """A release-shaped tarball (linux-amd64/helm) whose helm prints ``version_output``."""
    script = f"#!/bin/sh\necho {version_output}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("linux-amd64/helm")
        info.size = len(script)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(script))
    return buffer.getvalue()


def test_install_helm_unpacks_the_verified_release_and_skips_when_current(sandbox_root: Path) -> None:
    tarball = _helm_tarball("v3.17.2")
    (sandbox_root / "downloads" / "helm-v3.17.2-linux-amd64.tar.gz").write_bytes(tarball)
    env = {
        "HELM_VERSION": "v3.17.2",
        "HELM_SHA256": _sha256(tarball),
        "HELM_DOWNLOAD_BASE": f"file://{sandbox_root / 'downloads'}",
    }
    first = _call(sandbox_root, "install_helm", **env)
    assert first.returncode == 0, first.stderr
    helm = sandbox_root / "bin" / "helm"
    assert os.access(helm, os.X_OK)
    assert subprocess.run([str(helm)], capture_output=True, text=True, check=True).stdout.strip() == "v3.17.2"
    (sandbox_root / "downloads" / "helm-v3.17.2-linux-amd64.tar.gz").unlink()
    again = _call(sandbox_root, "install_helm", **env)
    assert again.returncode == 0 and "already installed" in again.stderr


def test_install_helm_refuses_a_tarball_with_another_checksum(sandbox_root: Path) -> None:
    tarball = _helm_tarball("v3.17.2")
    (sandbox_root / "downloads" / "helm-v3.17.2-linux-amd64.tar.gz").write_bytes(tarball)
    result = _call(
        sandbox_root,
        "install_helm",
        HELM_VERSION="v3.17.2",
        HELM_SHA256=_sha256(b"another tarball"),
        HELM_DOWNLOAD_BASE=f"file://{sandbox_root / 'downloads'}",
    )
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    assert not (sandbox_root / "bin" / "helm").exists()
