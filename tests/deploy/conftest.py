"""Fixtures of the deploy-path tests: the real ``helm`` binary (scripts/install-helm.sh), chart rendering,
a real MariaDB (scripts/services.sh, free loopback port, throwaway directory) and the Metabase fake.

Generic on purpose: other deploy tests (Terraform, workflows, Dockerfiles) share this folder."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "sentiment-pipeline"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def helm() -> Path:
    """Path of a real helm 3 binary (installed into .dev/tools/bin on first use)."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-helm.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"scripts/install-helm.sh failed:\n{result.stderr}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    return CHART_DIR


class HelmFailed(AssertionError):
    """helm exited non-zero; ``stderr`` holds its message."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def render(helm: Path, chart_dir: Path) -> Render:
    """``render(*set_args, values=None, release="rel", namespace="ns")``: ``helm template`` -> manifests.

    ``set_args`` are ``--set`` expressions; ``values`` a dict written as a values file. Raises
    :class:`HelmFailed` when helm refuses (schema or template ``fail``)."""

    def _render(
        *set_args: str,
        values: dict[str, Any] | None = None,
        release: str = "rel",
        namespace: str = "ns",
    ) -> list[dict[str, Any]]:
        cmd = [str(helm), "template", release, str(chart_dir), "--namespace", namespace]
        for expr in set_args:
            cmd += ["--set", expr]
        values_file = None
        if values is not None:
            values_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"values-{uuid.uuid4().hex}.yaml"
            values_file.write_text(yaml.safe_dump(values))
            cmd += ["--values", str(values_file)]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        finally:
            if values_file is not None:
                values_file.unlink()
        if result.returncode != 0:
            raise HelmFailed(result.stderr)
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


@dataclass(frozen=True)
class MariaDB:
    """A running MariaDB: TCP port on 127.0.0.1 and the root socket (for administration)."""

    port: int
    root_socket: str

    def root(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=self.root_socket, user="root", database=database, autocommit=True)

    def connect(self, user: str, password: str, database: str) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=user, password=password, database=database, autocommit=True
        )


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A real MariaDB started by scripts/services.sh in a throwaway directory; stopped at the end."""
    directory = tmp_path_factory.mktemp("deploy-services")
    env = {**os.environ, "SERVICES_DIR": str(directory), "MYSQL_PORT": str(_free_port())}
    script = REPO / "scripts" / "services.sh"
    started = subprocess.run(
        ["bash", str(script), "start", "mysql"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert started.returncode == 0, f"services.sh start mysql failed:\n{started.stderr}"
    settings: dict[str, str] = {}
    for line in (directory / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            settings[key] = shlex.split(value)[0] if value else ""
    try:
        yield MariaDB(port=int(settings["SENTIMENT_MYSQL_PORT"]), root_socket=settings["MYSQL_ROOT_SOCKET"])
    finally:
        subprocess.run(["bash", str(script), "stop", "mysql"], env=env, capture_output=True, timeout=120)
