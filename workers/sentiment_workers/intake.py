"""The consume stage of one fetched Kafka batch, shared by the consumer (lease mode) and the fused worker.

The path of one record:

1. :func:`parse_batch`: :func:`~sentiment_workers.messages.parse_record` makes it a valid message (with its
   stable id) or a :class:`~sentiment_workers.messages.Rejected` with its reason;
2. :func:`stage_isolating`: the valid messages are written with the caller's Mongo write (the consumer's
   upsert, the fused worker's batch insert), bisected by :func:`~sentiment_workers.isolation.write_isolating`:
   a message Mongo refuses alone becomes a ``store_rejected`` reject with Mongo's error;
3. :func:`dead_letter`: every reject is dead-lettered (one bulk upsert keyed ``topic:partition:offset``, so a
   redelivered reject is stored once) and logged;
4. the caller commits the batch's offsets (:func:`sentiment_workers.kafka_group.commit`) once it is durable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from sentiment_workers.adapters import mongo
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.isolation import Isolated, describe, write_isolating
from sentiment_workers.logging import get_logger
from sentiment_workers.messages import DeadLetterReason, Rejected, SourceRecord, StagedMessage, parse_record
from sentiment_workers.metrics import PipelineMetrics

R = TypeVar("R")
log = get_logger("intake")
Batch = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
"""What one ``getmany`` returned: records per partition, in offset order."""


def parse_batch(
    batch: Batch, metrics: PipelineMetrics, *, max_bytes: int
) -> tuple[list[StagedMessage], list[Rejected]]:
    """Parse and validate every record: the valid messages and the rejects, in fetch order. Counts the records
    read (``sentiment_messages_consumed_total``, the ``consume`` batch size) and logs the messages altered to
    be storable (lone surrogates)."""
    good: list[StagedMessage] = []
    bad: list[Rejected] = []
    for tp, records in batch.items():
        metrics.messages_consumed.labels(tp.topic).inc(len(records))
        for rec in records:
            source = SourceRecord(tp.topic, tp.partition, rec.offset, rec.key, rec.value, rec.timestamp)
            parsed = parse_record(source, max_bytes=max_bytes)
            if isinstance(parsed, StagedMessage):
                good.append(parsed)
                if parsed.altered:
                    log.warning("message altered to be storable", id=parsed.id, altered=parsed.altered)
            else:
                bad.append(parsed)
    metrics.batch_size.labels("consume").observe(len(good) + len(bad))
    return good, bad


async def stage_isolating(
    messages: Sequence[StagedMessage],
    write: Callable[[Sequence[StagedMessage]], Awaitable[R]],
    rejects: list[Rejected],
) -> Isolated[StagedMessage, R]:
    """Stage ``messages`` with ``write`` (one call in the normal case); each message Mongo refuses alone is
    appended to ``rejects`` as ``store_rejected`` with Mongo's error."""
    staged = await write_isolating(messages, write, is_rejection=mongo.is_rejection)
    for message, exc in staged.rejected:
        rejects.append(Rejected(DeadLetterReason.STORE_REJECTED, describe("mongo", exc), message.source))
    return staged


async def dead_letter(
    store: StagingStore, rejects: Sequence[Rejected], ingest_ts: datetime, metrics: PipelineMetrics
) -> None:
    """Dead-letter a batch's rejects (retried while Mongo is unreachable); count the new ones, log each."""
    if not rejects:
        return
    result = await mongo.retrying(lambda: store.stage([], rejects, ingest_ts), metrics)
    for reason, n in result.dead_lettered.items():
        metrics.messages_dead_lettered.labels("consume", reason).inc(n)
    for r in rejects:
        log.warning(
            "message dead-lettered",
            reason=r.reason.value,
            detail=r.detail[:200],
            topic=r.source.topic,
            partition=r.source.partition,
            offset=r.source.offset,
        )
