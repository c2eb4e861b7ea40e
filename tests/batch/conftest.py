"""Real servers for the batch path: MariaDB (the fact table the export reads), MongoDB (staging, for a worker
serving a registered model) and an MLflow tracking server (SQLite backend store, artifacts proxied by the
server to a local folder), started once per session by ``scripts/services.sh`` in a temporary SERVICES_DIR
on free loopback ports, as the data-plane suite does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.config import WorkerConfig

from tests.dataplane.conftest import Services, free_port


@pytest.fixture(scope="session")
def data_servers(services: Services) -> Services:
    """MongoDB (staging, for the worker serving a registered model) and MariaDB (the fact table): the
    session's servers (tests/conftest.py)."""
    return services


@pytest.fixture(scope="session")
def mysql_server(data_servers: Services) -> Services:
    return data_servers


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tracking URI of a real ``mlflow server`` (its registry included)."""
    servers = Services(tmp_path_factory.mktemp("mlflow-services"))
    servers.script_env["MLFLOW_PORT"] = str(free_port())
    servers.start("mlflow")
    try:
        yield servers.env["MLFLOW_TRACKING_URI"]
    finally:
        servers.stop("mlflow")


@pytest.fixture
def tracking(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLFLOW_TRACKING_URI set for this test, with an experiment name of its own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"test-{uuid.uuid4().hex[:8]}")
    return mlflow_server


@pytest.fixture
def mysql_config(mysql_server: Services, request: pytest.FixtureRequest) -> WorkerConfig:
    return mysql_server.config(request.node.name[:20].strip("_[]"))


@pytest.fixture
async def fact_table(mysql_config: WorkerConfig) -> AsyncIterator[Warehouse]:
    """An empty ``dw_messages``-shaped table of this test's own, dropped afterwards."""
    warehouse = await Warehouse.connect(mysql_config)
    await warehouse.ensure_schema()
    yield warehouse
    await warehouse._execute(f"DROP TABLE IF EXISTS `{mysql_config.mysql_table}`")
    await warehouse.close()


@pytest.fixture
def delta_dir(tmp_path: Path) -> Path:
    return tmp_path / "curated" / "dw_messages"
