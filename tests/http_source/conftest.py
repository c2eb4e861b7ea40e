"""Fixtures of the HTTP source's tests: the real Kafka and MongoDB of the data-plane tests (started once per
session by ``scripts/services.sh``), a paged API server per test (:mod:`tests.http_source.paged_api`), and the
poller wired to them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sentiment_workers.adapters.kafka import connection_options, create_producer
from sentiment_workers.adapters.landing import LandingStore
from sentiment_workers.config import WorkerConfig
from sentiment_workers.http_source.client import PageClient
from sentiment_workers.http_source.poller import HttpPoller
from sentiment_workers.http_source.settings import HttpPaging, HttpSourceConfig
from sentiment_workers.metrics import PipelineMetrics

from tests.dataplane import conftest as dataplane
from tests.dataplane.helpers import create_topic
from tests.http_source.paged_api import PagedApi

# The data-plane fixtures, reused as they are (the servers are the session's, tests/conftest.py): a
# WorkerConfig unique to the test, metrics.
config = dataplane.config
metrics = dataplane.metrics

PAGING_OF_VARIANT = {
    "cursor": {"paging": HttpPaging.CURSOR},
    "next_link": {
        "paging": HttpPaging.NEXT_LINK,
        "records_path": "data.items",
        "next_link_field": "links.next",
    },
    "page_number": {"paging": HttpPaging.PAGE_NUMBER},
}


@pytest.fixture
def paged_api() -> Iterator[Callable[..., PagedApi]]:
    """``paged_api(variant, pages, ...)``: a started :class:`PagedApi`, stopped after the test."""
    started: list[PagedApi] = []

    def start(variant: str, pages: int, **options: Any) -> PagedApi:
        api = PagedApi(variant, pages, **options)
        api.start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


def source_config(api: PagedApi, config: WorkerConfig, **overrides: Any) -> HttpSourceConfig:
    """The poller's settings for ``api`` (source name unique to the test: its Mongo database's)."""
    values: dict[str, Any] = {
        "url": api.url,
        "source_name": config.mongo_database.replace("_", "-").lower(),
        "interval_seconds": 0.2,
        "timeout_seconds": 5,
        "max_pages_per_run": 1000,
        **PAGING_OF_VARIANT[api.variant],
    }
    values.update(overrides)
    return HttpSourceConfig(**values)


def source_env(source: HttpSourceConfig) -> dict[str, str]:
    """``SENTIMENT_HTTP_*`` variables that make a ``sentiment-pipeline poll`` subprocess use ``source``."""
    import json

    env = {}
    for field, value in source.model_dump().items():
        env[f"SENTIMENT_HTTP_{field.upper()}"] = json.dumps(value) if isinstance(value, dict) else str(value)
    return env


@pytest.fixture
async def topic(config: WorkerConfig) -> str:
    await create_topic(config, partitions=3)
    return config.kafka_topic


@pytest.fixture
async def make_poller(config: WorkerConfig, topic: str) -> AsyncIterator[Callable[..., Any]]:
    """``await make_poller(source, metrics, **options)``: an :class:`HttpPoller` with a started producer."""
    opened: list[tuple[HttpPoller, LandingStore, PageClient]] = []

    async def make(source: HttpSourceConfig, metrics: PipelineMetrics, **options: Any) -> HttpPoller:
        landing = LandingStore.from_config(
            config, collection=source.landing_collection, landing_url=source.landing_url
        )
        await landing.ensure_indexes()
        client = PageClient(source.headers, source.timeout_seconds, backoff_s=0.05)
        producer = create_producer(config)
        await producer.start()
        poller = HttpPoller(config, source, landing, producer, client, metrics, **options)
        opened.append((poller, landing, client))
        return poller

    yield make
    for poller, landing, client in opened:
        await poller.producer.stop()
        await client.close()
        with contextlib.suppress(Exception):
            await landing.client.drop_database(config.mongo_database)
        landing.close()


async def topic_messages(config: WorkerConfig) -> list[tuple[bytes | None, bytes]]:
    """Every record on the test's topic, read from the beginning to the end (no consumer group). The end is
    each partition's high watermark as fetch responses report it (Tansu's ListOffsets may lag)."""
    consumer = AIOKafkaConsumer(**connection_options(config), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(config.kafka_topic, p)
            for p in consumer.partitions_for_topic(config.kafka_topic) or ()
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        out: list[tuple[bytes | None, bytes]] = []
        for _ in range(400):
            batches = await consumer.getmany(*partitions, timeout_ms=250)
            for records in batches.values():
                out.extend((r.key, r.value) for r in records)
            marks = [consumer.highwater(tp) for tp in partitions]
            if not batches and all(m is not None for m in marks):
                positions = [await consumer.position(tp) for tp in partitions]
                if all(p >= m for p, m in zip(positions, marks, strict=True)):
                    break
        return out
    finally:
        await consumer.stop()


async def run_killed_at(poller: HttpPoller, target: Any, attribute: str, call: int, why: str) -> None:
    """One ``run_once`` of ``poller`` killed at the ``call``-th call of ``target.attribute``: that call raises
    KeyboardInterrupt instead of running, which, like SIGKILL, leaves nothing of the run after that point. The
    attribute is restored afterwards, so the next run is a clean restart."""
    real = getattr(target, attribute)
    calls = 0

    async def killed(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt(why)
        return await real(*args, **kwargs)

    setattr(target, attribute, killed)
    try:
        assert await poller.acquire(asyncio.Event())
        with pytest.raises(KeyboardInterrupt):
            await poller.run_once()
    finally:
        setattr(target, attribute, real)
