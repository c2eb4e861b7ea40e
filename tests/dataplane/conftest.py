"""Real servers for the data-plane tests: Tansu (Kafka), SecantusDB (MongoDB) and MariaDB, started once per
session by ``scripts/services.sh`` in a temporary SERVICES_DIR on free loopback ports. Every test gets its
own topic, consumer group, Mongo database and MySQL table, so tests never see each other's data."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pymongo import MongoClient
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.config import WorkerConfig
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.model import SentimentClassifier, load_classifier
from sentiment_workers.model.testing import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"
DATA_SERVERS = ("kafka", "mongo", "mysql")
# Tansu: a short session makes group joins and re-joins take ~1-3 s instead of ~10-20 s.
KAFKA_TEST_OVERRIDES = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 500, "metadata_max_age_ms": 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Services:
    """The running servers and how to reach, stop and restart them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.script_env = {
            **os.environ,
            "SERVICES_DIR": str(directory),
            "KAFKA_PORT": str(free_port()),
            "MONGO_PORT": str(free_port()),
            "MYSQL_PORT": str(free_port()),
        }
        self.env: dict[str, str] = {}

    def run(self, action: str, *names: str) -> None:
        subprocess.run(
            ["bash", str(SERVICES_SCRIPT), action, *names],
            env=self.script_env,
            check=True,
            capture_output=True,
            timeout=180,
        )

    def start(self, *names: str) -> None:
        self.run("start", *(names or DATA_SERVERS))
        self.env = _read_env_file(self.directory / "env")

    def stop(self, *names: str) -> None:
        self.run("stop", *(names or DATA_SERVERS))

    def config(self, name: str, **overrides: object) -> WorkerConfig:
        """A WorkerConfig on these servers with names unique to one test."""
        unique = f"{name}_{uuid.uuid4().hex[:8]}"
        values: dict[str, object] = {
            "kafka_bootstrap_servers": self.env["SENTIMENT_KAFKA_BOOTSTRAP_SERVERS"],
            "kafka_topic": f"t_{unique}",
            "kafka_group_id": f"g_{unique}",
            "mongo_uri": self.env["SENTIMENT_MONGO_URI"],
            "mongo_database": f"db_{unique}",
            "mysql_host": self.env["SENTIMENT_MYSQL_HOST"],
            "mysql_port": int(self.env["SENTIMENT_MYSQL_PORT"]),
            "mysql_user": self.env["SENTIMENT_MYSQL_USER"],
            "mysql_password": self.env["SENTIMENT_MYSQL_PASSWORD"],
            "mysql_database": self.env["SENTIMENT_MYSQL_DATABASE"],
            "mysql_table": f"dw_{unique}",
            "consumer_batch_size": 100,
            "model_batch_size": 16,
            "lease_seconds": 3.0,
            "poll_interval_seconds": 0.1,
            "metrics_port": 0,
        }
        values.update(overrides)
        return WorkerConfig(**values)  # type: ignore[arg-type]

    def worker_env(self, config: WorkerConfig) -> dict[str, str]:
        """Process environment that makes a ``sentiment-pipeline`` subprocess use ``config``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
        for field, value in config.model_dump().items():
            if value is None:
                continue
            plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[f"SENTIMENT_{field.upper()}"] = str(plain)
        env["PYTHONPATH"] = str(ROOT)
        return env


def _read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


class AuthMongo:
    """A second SecantusDB that requires SCRAM authentication (``--auth``), with a user ``app`` (readWrite on
    every database, password ``right``), a user ``reader`` (read on ``stage`` only) and ``admin`` (root, to
    create users while it runs)."""

    PASSWORD = "right"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _start(self, *flags: str) -> None:
        exe = Path(sys.executable).parent / "secantusd-py"
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [str(exe), *address, "--storage-path", str(self.directory), "--log-level", "WARNING", *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client: MongoClient[dict[str, object]] = MongoClient(self.uri(), serverSelectionTimeoutMS=30_000)
        try:
            client.admin.command("hello")  # answered without authentication
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def start(self) -> None:
        """Provision the users without auth (as SecantusDB documents it), then restart with ``--auth``."""
        self._start()
        client: MongoClient[dict[str, object]] = MongoClient(self.uri(), serverSelectionTimeoutMS=30_000)
        try:
            client.admin.command(
                "createUser",
                "app",
                pwd=self.PASSWORD,
                roles=[{"role": "readWriteAnyDatabase", "db": "admin"}],
            )
            client.admin.command(
                "createUser", "reader", pwd=self.PASSWORD, roles=[{"role": "read", "db": "stage"}]
            )
            client.admin.command(
                "createUser", "admin", pwd=self.PASSWORD, roles=[{"role": "root", "db": "admin"}]
            )
        finally:
            client.close()
        self.stop()
        self._start("--auth")

    def create_user(self, user: str, password: str) -> None:
        """A user with readWrite on every database, created by ``admin`` while the server requires auth."""
        client: MongoClient[dict[str, object]] = MongoClient(self.uri("admin"), serverSelectionTimeoutMS=5000)
        try:
            client.admin.command(
                "createUser", user, pwd=password, roles=[{"role": "readWriteAnyDatabase", "db": "admin"}]
            )
        finally:
            client.close()

    def uri(self, user: str | None = None, password: str = PASSWORD) -> str:
        credentials = f"{user}:{password}@" if user else ""
        return f"mongodb://{credentials}127.0.0.1:{self.port}/?directConnection=true"


@pytest.fixture(scope="session")
def auth_mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMongo]:
    server = AuthMongo(tmp_path_factory.mktemp("auth-mongo"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def classifier(tiny_model_dir: Path) -> SentimentClassifier:
    """A real (tiny, randomly initialised) BERT classifier: a real forward pass, in milliseconds."""
    return load_classifier(str(tiny_model_dir), "torch", batch_size=16, max_length=64, threads=1)


@pytest.fixture
def config(services: Services, request: pytest.FixtureRequest) -> WorkerConfig:
    return services.config(request.node.name.replace("[", "_").replace("]", "")[:20].strip("_"))


@pytest.fixture
def metrics() -> PipelineMetrics:
    return PipelineMetrics(CollectorRegistry())


@pytest.fixture
async def store(config: WorkerConfig) -> AsyncIterator[StagingStore]:
    staging = StagingStore.from_config(config)
    await staging.ensure_indexes()
    yield staging
    await staging.client.drop_database(config.mongo_database)
    staging.close()


@pytest.fixture
async def warehouse(config: WorkerConfig) -> AsyncIterator[Warehouse]:
    dw = await Warehouse.connect(config)
    await dw.ensure_schema()
    yield dw
    await dw._execute(f"DROP TABLE IF EXISTS `{config.mysql_table}`")
    await dw.close()
