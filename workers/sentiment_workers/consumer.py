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
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from sentiment_workers.adapters import mongo
from sentiment_workers.adapters.kafka import create_consumer
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.config import WorkerConfig
from sentiment_workers.isolation import describe, write_isolating
from sentiment_workers.logging import get_logger
from sentiment_workers.messages import (
    DeadLetterReason,
    Rejected,
    SourceRecord,
    StagedMessage,
    parse_record,
    utcnow,
)
from sentiment_workers.metrics import PipelineMetrics

T = TypeVar("T")
log = get_logger("consumer")
Batch = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
REVOKE_DRAIN_TIMEOUT_S = 30.0


class _DrainOnRevoke(ConsumerRebalanceListener):
    """Before partitions are taken away, store and commit every batch already fetched."""

    def __init__(self, queue: asyncio.Queue[Batch | None]) -> None:
        self.queue = queue

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), REVOKE_DRAIN_TIMEOUT_S)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


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
        consumer.subscribe([self.config.kafka_topic], listener=_DrainOnRevoke(self.queue))
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
            await self._observe_lag(consumer)
            if batch:
                self.last_record_at = time.monotonic()
                await self.queue.put(batch)
            elif idle is not None and time.monotonic() - self.last_record_at > idle and self.queue.empty():
                log.info("idle, exiting", idle_s=idle)
                return

    async def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                position = await consumer.position(tp)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(highwater - position, 0)
                )

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
        good: list[StagedMessage] = []
        bad: list[Rejected] = []
        for tp, records in batch.items():
            self.metrics.messages_consumed.labels(tp.topic).inc(len(records))
            for rec in records:
                source = SourceRecord(tp.topic, tp.partition, rec.offset, rec.key, rec.value, rec.timestamp)
                parsed = parse_record(source, max_bytes=self.config.max_message_bytes)
                (good if isinstance(parsed, StagedMessage) else bad).append(parsed)  # type: ignore[arg-type]
        received = len(good) + len(bad)
        self.metrics.batch_size.labels("consume").observe(received)
        ingest_ts = utcnow()
        staged = await write_isolating(
            good,
            lambda part: self._mongo(lambda: self.store.stage(part, [], ingest_ts)),
            is_rejection=mongo.is_rejection,
        )
        for message, exc in staged.rejected:
            bad.append(Rejected(DeadLetterReason.STORE_REJECTED, describe("mongo", exc), message.source))
        result = await self._mongo(lambda: self.store.stage([], bad, ingest_ts))
        self.metrics.messages_staged.inc(sum(r.staged for r in staged.results))
        for reason, n in result.dead_lettered.items():
            self.metrics.messages_dead_lettered.labels("consume", reason).inc(n)
        for r in bad:
            log.warning(
                "message dead-lettered",
                reason=r.reason.value,
                detail=r.detail[:200],
                topic=r.source.topic,
                partition=r.source.partition,
                offset=r.source.offset,
            )
        for message in good:
            if message.altered:
                log.warning("message altered to be storable", id=message.id, altered=message.altered)
        log.debug("batch staged", records=received, writes=staged.calls, rejected=len(bad))

    async def _mongo(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await mongo.retrying(operation, self.metrics)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Partitions moved to another member: it re-reads from the last commit; staging is idempotent.
            log.warning("offset commit failed; records will be redelivered", error=str(exc)[:300])
            return
        self.committed_batches += 1
        self.metrics.offsets_committed.inc()


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
