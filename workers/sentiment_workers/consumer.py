"""The consumer worker: Kafka -> MongoDB staging, at-least-once delivery made exactly-once by stable ids.

Two tasks joined by a bounded queue (``consumer_max_in_flight`` batches, the back-pressure):

* fetch: ``getmany`` a batch, update the per-partition lag gauge, put it on the queue;
* store: parse and validate every record, bulk-upsert valid messages (keyed by their stable id) and the
  rejects (dead letters keyed by topic/partition/offset) with retries while Mongo is down, and only then
  commit the batch's exact offsets. No offset is ever committed for data that is not durable in Mongo.
  A bulk upsert Mongo refuses because of the data (``mongo.is_rejection``) is bisected
  (:mod:`sentiment_workers.isolation`): each refused message is dead-lettered alone (``store_rejected``,
  with Mongo's error and the raw bytes), the others are staged, and the batch is committed.

SIGTERM: stop fetching, store and commit what was fetched, leave the group. On a rebalance the revoked
partitions' batches are stored and committed before the partitions are given up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer

from sentiment_workers import intake, kafka_group
from sentiment_workers.adapters import mongo
from sentiment_workers.adapters.kafka import create_consumer
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.config import WorkerConfig
from sentiment_workers.intake import Batch
from sentiment_workers.kafka_group import DrainOnRevoke
from sentiment_workers.logging import get_logger
from sentiment_workers.messages import utcnow
from sentiment_workers.metrics import PipelineMetrics

T = TypeVar("T")
log = get_logger("consumer")


class StagingConsumer:
    """Consume ``kafka_topic`` into the staging collection until ``stop`` is set."""

    def __init__(
        self,
        config: WorkerConfig,
        store: StagingStore,
        metrics: PipelineMetrics,
        *,
        kafka_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.kafka_overrides = kafka_overrides or {}
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=config.consumer_max_in_flight)
        self.last_record_at = time.monotonic()
        self.committed_batches = 0

    async def run(self, stop: asyncio.Event, *, exit_when_idle: float | None = None) -> None:
        """Run until ``stop`` is set (or, with ``exit_when_idle``, until no record came for that long)."""
        await self._mongo(self.store.ensure_indexes)
        consumer = create_consumer(self.config, **self.kafka_overrides)
        consumer.subscribe([self.config.kafka_topic], listener=DrainOnRevoke(self.queue.join))
        await consumer.start()
        log.info("consumer started", topic=self.config.kafka_topic, group=self.config.kafka_group_id)
        fetcher = asyncio.create_task(self._fetch_loop(consumer, stop, exit_when_idle), name="fetch")
        storer = asyncio.create_task(self._store_loop(consumer), name="store")
        try:
            await asyncio.wait({fetcher, storer}, return_when=asyncio.FIRST_COMPLETED)
            if storer.done():  # the store task only ends early by failing: stop fetching, re-raise
                fetcher.cancel()
                storer.result()
            await fetcher  # stopped (or failed): no more batches will be queued
            await self.queue.put(None)
            await storer  # drain: store and commit everything fetched
        finally:
            for task in (fetcher, storer):
                task.cancel()
            await consumer.stop()  # leaves the group
            log.info("consumer stopped", batches=self.committed_batches)

    async def _fetch_loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event, idle: float | None) -> None:
        self.last_record_at = time.monotonic()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=self.config.consumer_batch_size)
            await kafka_group.observe_lag(consumer, self.metrics)
            if batch:
                self.last_record_at = time.monotonic()
                await self.queue.put(batch)
            elif idle is not None and time.monotonic() - self.last_record_at > idle and self.queue.empty():
                log.info("idle, exiting", idle_s=idle)
                return

    async def _store_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await self.queue.get()
            try:
                if batch is None:
                    return
                await self.store_batch(batch)
                await self._commit(consumer, batch)
            finally:
                self.queue.task_done()

    async def store_batch(self, batch: Batch) -> None:
        """Validate and durably stage one fetched batch (retrying while Mongo is unreachable)."""
        good, bad = intake.parse_batch(batch, self.metrics, max_bytes=self.config.max_message_bytes)
        ingest_ts = utcnow()
        staged = await intake.stage_isolating(
            good, lambda part: self._mongo(lambda: self.store.stage(part, [], ingest_ts)), bad
        )
        await intake.dead_letter(self.store, bad, ingest_ts, self.metrics)
        self.metrics.messages_staged.inc(sum(r.staged for r in staged.results))
        log.debug("batch staged", records=len(good) + len(bad), writes=staged.calls, rejected=len(bad))

    async def _mongo(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await mongo.retrying(operation, self.metrics)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        if await kafka_group.commit(consumer, kafka_group.batch_offsets(batch), self.metrics):
            self.committed_batches += 1


async def run_consumer(
    config: WorkerConfig,
    stop: asyncio.Event,
    metrics: PipelineMetrics,
    *,
    exit_when_idle: float | None = None,
    kafka_overrides: dict[str, Any] | None = None,
) -> None:
    """Connect to Mongo and Kafka from ``config`` and consume until stopped."""
    store = StagingStore.from_config(config)
    try:
        await StagingConsumer(config, store, metrics, kafka_overrides=kafka_overrides).run(
            stop, exit_when_idle=exit_when_idle
        )
    finally:
        store.close()
