"""Helpers for the data-plane tests: produce to a real topic, wait for conditions, inspect the stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sentiment_workers.adapters.kafka import connection_options, create_producer
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.config import WorkerConfig
from sentiment_workers.consumer import StagingConsumer
from sentiment_workers.fused import FusedWorker
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.model import Prediction, SentimentClassifier
from sentiment_workers.traffic import send_messages


async def create_topic(config: WorkerConfig, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(**connection_options(config))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(config.kafka_topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(
    config: WorkerConfig,
    messages: Iterable[dict[str, Any] | bytes],
    rate: float = 0,
    *,
    concurrency: int = 32,
) -> int:
    """Send ``messages`` to the config's topic; ``concurrency=1`` waits for each acknowledgement before the
    next send (one record per producer batch)."""
    producer = create_producer(config)
    await producer.start()
    try:
        return await send_messages(
            producer, config.kafka_topic, list(messages), rate=rate, concurrency=concurrency
        )
    finally:
        await producer.stop()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 60, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


async def warehouse_ids(warehouse: Warehouse) -> list[str]:
    rows = await warehouse._execute(f"SELECT id FROM `{warehouse.table}`")
    return [r[0] for r in rows]


async def staging_states(store: StagingStore) -> dict[str, int]:
    return await store.count_by_status()


async def leased_count(store: StagingStore) -> int:
    return await store.messages.count_documents({"lease_token": {"$exists": True}})


def messages(n: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-{i}", "user_id": f"u{i % 7}", "comment": f"this is good message number {i}"}
        for i in range(n)
    ]


class WrappedClassifier(SentimentClassifier):
    """The real classifier behind a test's twist: subclasses override ``predict`` or ``predict_proba``."""

    def __init__(self, inner: SentimentClassifier) -> None:
        self.inner = inner
        self.model_id, self.labels, self.backend = inner.model_id, inner.labels, inner.backend
        self.batch_size, self.max_length = inner.batch_size, inner.max_length

    def predict_proba(self, texts: Sequence[str]) -> list[list[float]]:
        return self.inner.predict_proba(texts)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self.inner.predict(texts)


class Running:
    """Run a worker coroutine as a task with its own stop event; ``await stop()`` ends it gracefully."""

    def __init__(self, factory: Callable[[asyncio.Event], Awaitable[Any]]) -> None:
        self.event = asyncio.Event()
        self.task = asyncio.create_task(factory(self.event))

    async def stop(self, timeout: float = 30) -> Any:
        self.event.set()
        return await asyncio.wait_for(self.task, timeout)

    async def __aenter__(self) -> Running:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.task.done():
            await self.stop()
        elif self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]


def sample_value(metrics: Any, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


MODES = ("lease", "fused")
"""The two ways the data plane runs: a consumer staging into Mongo and inference workers claiming leases
from it, or fused workers that consume, stage, classify and write per Kafka batch. Fault tests run both."""


def pipeline_workers(
    mode: str,
    config: WorkerConfig,
    store: StagingStore,
    warehouse: Warehouse,
    classifier: SentimentClassifier,
    metrics: PipelineMetrics,
    *,
    claim_size: int | None = None,
    kafka_overrides: dict[str, Any] | None = None,
) -> list[Callable[[asyncio.Event], Awaitable[Any]]]:
    """The ``run`` methods of the workers that make a pipeline in ``mode``."""
    if mode == "fused":
        fused = FusedWorker(
            config,
            store,
            warehouse,
            classifier,
            metrics,
            batch_size=claim_size,
            kafka_overrides=kafka_overrides,
        )
        return [fused.run]
    consumer = StagingConsumer(config, store, metrics, kafka_overrides=kafka_overrides)
    worker = InferenceWorker(config, store, warehouse, classifier, metrics, claim_size=claim_size)
    return [consumer.run, worker.run]


class RunningAll:
    """Several :class:`Running` workers at once (a pipeline in either mode)."""

    def __init__(self, factories: Sequence[Callable[[asyncio.Event], Awaitable[Any]]]) -> None:
        self.running = [Running(factory) for factory in factories]

    def any_exited(self) -> bool:
        return any(r.task.done() for r in self.running)

    async def __aenter__(self) -> RunningAll:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for running in reversed(self.running):
            await running.__aexit__(*exc)


async def staged_label(store: StagingStore, message_id: str) -> str | None:
    """The prediction staging holds for a done message: on its document (lease mode) or in its fused
    batch."""
    doc = await store.messages.find_one({"_id": message_id})
    if doc is not None and doc.get("status") == "done":
        return doc.get("sentiment_label")
    result = await store.batch_results(message_id)
    return None if result is None else result.get("sentiment_label")
