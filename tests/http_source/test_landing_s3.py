"""The HTTP source's landing store on an S3 URL, against a real S3 protocol server (moto, tests/s3_server.py),
real Kafka and real MongoDB: `SENTIMENT_HTTP_LANDING_URL=s3://bucket/prefix` plus the standard AWS_*
variables (endpoint, credentials, region) is all a poller needs; each page is one object keyed by the sha256
of its body, a page fetched again is not stored again, and the objects are read back with boto3 (not s3fs)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import PurePosixPath

import pytest
from sentiment_workers.adapters.landing import LandingStore

from tests import s3_server as s3
from tests.http_source.conftest import run_killed_at, source_config, source_env, topic_messages
from tests.http_source.test_cli import error_lines, poll

s3_server = s3.s3_server


@pytest.fixture
async def landing(config) -> AsyncIterator[LandingStore]:
    """The test's landing collection in MongoDB (read back after the poller's processes exit); the test's
    database is dropped afterwards."""
    store = LandingStore.from_config(config, collection="landing_pages")
    yield store
    await store.client.drop_database(config.mongo_database)
    store.close()


async def test_a_poller_configured_for_s3_lands_each_page_once_as_an_object_keyed_by_its_hash(
    s3_server: s3.S3Server, services, config, paged_api, topic, landing
):
    api = paged_api("cursor", pages=4)
    prefix = s3_server.prefix("landing")
    source = source_config(api, config, landing_url=f"s3://{s3_server.bucket}/{prefix}")
    env = services.worker_env(config) | source_env(source) | s3_server.env()

    first = poll("--once", env=env)
    objects = s3_server.objects(f"{prefix}/{source.source_name}")
    second = poll("--once", env=env)  # nothing new: the API serves its end page again, same bytes
    again = s3_server.objects(f"{prefix}/{source.source_name}")

    assert first.returncode == 0 and not error_lines(first.stderr), first.stderr
    assert "5 pages fetched (5 landed, 0 already landed)" in first.stdout  # four pages and the end page
    assert second.returncode == 0 and "1 pages fetched (0 landed, 1 already landed)" in second.stdout
    # One object per page served: <prefix>/<source>/<sha256 of the body>.json, nothing else.
    assert {PurePosixPath(key).name for key in objects} == {f"{digest}.json" for digest in api.served}
    assert len(objects) == len(api.served) == 5
    for key in objects:
        stored = json.loads(s3_server.read(key))
        body = base64.b64decode(stored["body_base64"])
        assert hashlib.sha256(body).hexdigest() == stored["hash"] == PurePosixPath(key).stem
        assert stored["status"] == 200 and ["X-Page", str(api.served[stored["hash"]])] in stored["headers"]
        assert (
            stored["source"] == source.source_name
            and stored["_id"] == f"{source.source_name}/{stored['hash']}"
        )
    # The page fetched again was not written again: same objects, same ETags, same modification times.
    assert {k: (v["ETag"], v["LastModified"]) for k, v in again.items()} == {
        k: (v["ETag"], v["LastModified"]) for k, v in objects.items()
    }
    # MongoDB keeps the index of the objects (no body); every record reached the topic once.
    records = [doc async for doc in landing.pages.find({"source": source.source_name})]
    assert sorted(r["object"] for r in records) == sorted(f"{s3_server.bucket}/{k}" for k in objects)
    assert all("body" not in r and r["published_at"] is not None for r in records)
    ids = [json.loads(value)["id"] for _, value in await topic_messages(config)]
    assert set(ids) == api.expected_ids() and len(ids) == 20


async def test_a_page_written_to_s3_by_a_poller_killed_before_recording_it_is_recorded_and_published(
    s3_server: s3.S3Server, config, metrics, paged_api, make_poller, monkeypatch: pytest.MonkeyPatch
):
    """The object is the durable copy: after a kill between the PUT and the MongoDB insert, the next run lists
    the source's objects on S3, records the one it does not know and publishes its records; the API is not
    asked for that page again and the object is not written twice."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    api = paged_api("cursor", pages=2)
    prefix = s3_server.prefix("orphan")
    source = source_config(api, config, landing_url=f"s3://{s3_server.bucket}/{prefix}")
    poller = await make_poller(source, metrics)
    await run_killed_at(
        poller, poller.landing.pages, "insert_one", 2, "killed after writing the object, before recording it"
    )
    written = s3_server.objects(f"{prefix}/{source.source_name}")

    summary = await poller.run_once()

    assert len(written) == 2  # the first page, recorded; the second, written but not recorded
    assert summary.republished == 1
    after = s3_server.objects(f"{prefix}/{source.source_name}")
    assert {PurePosixPath(key).stem for key in after} == set(api.served)
    assert {k: v["ETag"] for k, v in after.items() if k in written} == {
        k: v["ETag"] for k, v in written.items()
    }
    records = [doc async for doc in poller.landing.pages.find({"source": poller.name})]
    assert sorted(r["hash"] for r in records) == sorted(api.served)
    ids = {json.loads(value)["id"] for _, value in await topic_messages(config)}
    assert ids == api.expected_ids()
