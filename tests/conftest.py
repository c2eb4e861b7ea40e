"""Suite-wide settings and the one set of data-plane servers. Each area (model, dataplane, operator, deploy,
http_source, batch) has its own conftest with what else it needs; servers are started through the project's
scripts on free loopback ports."""

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.dataplane.conftest import Services

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator["Services"]:
    """Kafka, MongoDB, MariaDB (and Prometheus) for the whole session: the data-plane, HTTP-source and batch
    suites share them (each test works in databases, topics and tables of its own)."""
    from tests.dataplane.conftest import Services

    servers = Services(tmp_path_factory.mktemp("services"))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
