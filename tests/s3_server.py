"""A real S3 protocol server for the batch-path tests: moto's standalone server (PyPI ``moto[server]``,
``python -m moto.server``) started once per session in its own process on a free loopback port.

moto is a faithful fake of S3's documented REST API (SigV4-signed requests, ListObjectsV2, conditional
``PUT`` with ``If-None-Match: *``, ...) spoken over real HTTP: s3fs (the landing store, through fsspec) and
delta-rs' Rust object store (the Delta export) talk to it exactly as they talk to AWS S3 or MinIO. Neither
S3 nor MinIO can run on this machine, so this is the closest stand-in; the keys are dummies it accepts.

Use it from a test module with ``s3_server = tests.s3_server.s3_server`` (the fixture), then ask the
:class:`S3Server` it yields for the environment a ``sentiment-pipeline`` process needs (:meth:`S3Server.env`),
delta-rs storage options, or an independent boto3 client to read the results back. Each test works under a
prefix of its own (:meth:`S3Server.prefix`) in the one bucket.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.dataplane.conftest import free_port

BUCKET = "lake"
REGION = "us-east-1"
ACCESS_KEY = "test-access-key"  # dummies: moto accepts any pair, as a local MinIO accepts its own
SECRET_KEY = "test-secret-key"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str = BUCKET
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point both s3fs/botocore (landing) and delta-rs (export) at this
        server: endpoint, credentials, region, and plain HTTP allowed (delta-rs refuses http:// otherwise)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }

    def storage_options(self) -> dict[str, str]:
        """The same settings as delta-rs ``storage_options`` (what ``--storage-option`` passes)."""
        return {
            "aws_endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_region": self.region,
            "aws_allow_http": "true",
        }

    def prefix(self, name: str) -> str:
        """A key prefix of the caller's own (``name-<random>``), so tests never see each other's objects."""
        return f"{name}-{uuid.uuid4().hex[:10]}"

    def client(self) -> Any:
        """An independent reader: a plain boto3 S3 client (neither s3fs nor delta-rs)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def objects(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Key -> the listing's entry (ETag, Size, LastModified) of every object under ``prefix/``."""
        found: dict[str, dict[str, Any]] = {}
        pages = self.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{prefix}/"):
            for entry in page.get("Contents", []):
                found[entry["Key"]] = entry
        return found

    def read(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server in a process of its own, with the bucket :data:`BUCKET` created; stopped after."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("moto")) / "moto_server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(endpoint=f"http://127.0.0.1:{port}")
    try:
        _create_bucket_when_up(server, process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _create_bucket_when_up(server: S3Server, process: subprocess.Popen[bytes], log: Path) -> None:
    from botocore.exceptions import EndpointConnectionError

    client = server.client()
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
