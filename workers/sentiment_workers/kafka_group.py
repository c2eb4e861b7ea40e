"""A worker's membership of the Kafka consumer group, shared by the consumer and the fused worker: draining
before partitions are revoked, the per-partition lag gauge, committing a batch's offsets once it is durable,
and the group's total lag (:class:`GroupLag`, the fused worker's backlog)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from sentiment_workers.adapters.kafka import connection_options
from sentiment_workers.config import WorkerConfig
from sentiment_workers.intake import Batch
from sentiment_workers.logging import get_logger
from sentiment_workers.metrics import PipelineMetrics

log = get_logger("kafka_group")
REVOKE_DRAIN_TIMEOUT_S = 30.0


class DrainOnRevoke(ConsumerRebalanceListener):
    """Before partitions are taken away, wait (at most ``REVOKE_DRAIN_TIMEOUT_S``) until ``drained()``
    returns: every batch already fetched is durable and committed, so the next owner does not redo it."""

    def __init__(self, drained: Callable[[], Awaitable[Any]]) -> None:
        self.drained = drained

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained(), REVOKE_DRAIN_TIMEOUT_S)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


def batch_offsets(batch: Batch) -> dict[TopicPartition, int]:
    """The offsets that commit a batch: one past its last record, per partition."""
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}


async def observe_lag(consumer: AIOKafkaConsumer, metrics: PipelineMetrics) -> None:
    """``sentiment_consumer_lag_messages``: high watermark minus position, per assigned partition."""
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        with contextlib.suppress(KafkaError, AssertionError):
            position = await consumer.position(tp)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))


async def commit(
    consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], metrics: PipelineMetrics
) -> bool:
    """Commit ``offsets``; False when Kafka refused (partitions moved to another member: it re-reads them
    from the last commit, and staging by message id makes that harmless)."""
    try:
        await consumer.commit(offsets)
    except KafkaError as exc:
        log.warning("offset commit failed; records will be redelivered", error=str(exc)[:300])
        return False
    metrics.offsets_committed.inc()
    return True


class GroupLag:
    """The consumer group's lag on its topic: over *every* partition (not only the ones this member holds),
    the end of the log minus the group's committed offset (the log start where the group never committed).
    Records fetched but not committed yet count, as do records no member has fetched; every member reads the
    same number.

    One read costs one ListOffsets(latest) request per partition leader (the consumer's ``end_offsets``), one
    OffsetFetch for all partitions (an admin client, started on the first read: the consumer's ``committed``
    asks one partition per request), and a ListOffsets(earliest) only while some partition has no commit.

    Tansu (the local broker) answers ListOffsets(latest) with the start of the partition's last record batch
    plus one, not the end of the log. For the partitions this member fetches, the high watermark of the fetch
    responses (exact) is taken when larger; on Tansu the lag of partitions other members hold can therefore be
    short by up to one producer batch each. Kafka answers exactly.
    """

    def __init__(self, config: WorkerConfig, consumer: AIOKafkaConsumer) -> None:
        self.topic, self.group = config.kafka_topic, config.kafka_group_id
        self.consumer = consumer
        self._options = connection_options(config)
        self._admin: AIOKafkaAdminClient | None = None
        self._coordinator: int | None = None

    async def read(self) -> int:
        """The total lag now (raises when Kafka does not answer: the caller keeps its last value)."""
        tps = await self._partitions()
        if not tps:
            return 0
        committed = await self._committed(tps)
        end = await self.consumer.end_offsets(tps)
        never = [tp for tp in tps if committed.get(tp) is None]
        start = await self.consumer.beginning_offsets(never) if never else {}
        assigned = self.consumer.assignment()
        total = 0
        for tp in tps:
            fetched = self.consumer.highwater(tp) if tp in assigned else None
            log_end = max(end[tp], fetched or 0)
            done = committed.get(tp)
            total += max(log_end - (start[tp] if done is None else done), 0)
        return total

    async def _partitions(self) -> list[TopicPartition]:
        partitions = self.consumer.partitions_for_topic(self.topic)
        if partitions is None:  # no metadata for the topic yet (a member that has not subscribed)
            await self.consumer.topics()
            partitions = self.consumer.partitions_for_topic(self.topic)
        return [TopicPartition(self.topic, p) for p in sorted(partitions or ())]

    async def _committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset per partition (None: never committed), in one OffsetFetch."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self._options)
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        try:
            if self._coordinator is None:
                self._coordinator = await self._admin.find_coordinator(self.group)
            found = await self._admin.list_consumer_group_offsets(self.group, self._coordinator, tps)
        except BaseException:
            self._coordinator = None  # it may have moved: asked again on the next read
            raise
        return {tp: found[tp].offset if tp in found and found[tp].offset >= 0 else None for tp in tps}

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
