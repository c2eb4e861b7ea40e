"""``sentiment_inference_backlog_messages``, the gauge the operator's autoscaler reads (the largest value
among the ready inference pods), on the real servers. Lease mode: the staged messages not classified yet.
Fused mode: the consumer group's Kafka lag over every partition plus the staged messages waiting for the lease
path. Once a consumer has staged everything, both modes report the same number for the same work."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition
from sentiment_workers.adapters.kafka import create_consumer
from sentiment_workers.consumer import StagingConsumer
from sentiment_workers.fused import FusedWorker
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.kafka_group import GroupLag
from sentiment_workers.model import Prediction, SentimentClassifier
from structlog.testing import capture_logs

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES
from tests.dataplane.helpers import (
    MODES,
    Running,
    RunningAll,
    WrappedClassifier,
    create_topic,
    messages,
    produce,
    sample_value,
    staging_states,
    wait_until,
    warehouse_ids,
)
from tests.dataplane.test_inference import stage

N = 24
"""Records produced to the topic."""
M = 5
"""Messages already staged and pending (a replay, a backfill by a plain consumer): lease-path work."""
CLAIM = 4
"""Batch and claim size: a worker whose model is held back holds a few batches, the rest stays in Kafka."""
BACKLOG = "sentiment_inference_backlog_messages"


async def test_the_group_lag_is_every_record_the_group_has_not_committed_on_any_partition(config):
    """No worker consuming: every record produced is lag, whichever partition it is on; a commit takes off
    what it covers."""
    await create_topic(config, partitions=3)
    # Each record acknowledged before the next is sent (one record per producer batch): Tansu's answer to
    # ListOffsets(latest), the start of the last batch + 1, is then the end of the log (see GroupLag).
    await produce(config, messages(N), concurrency=1)
    consumer = create_consumer(config, **KAFKA_TEST_OVERRIDES)  # in the group, subscribed to nothing
    await consumer.start()
    lag = GroupLag(config, consumer)
    try:
        assert await lag.read() == N
        partitions = [TopicPartition(config.kafka_topic, p) for p in range(3)]
        ends = await consumer.end_offsets(partitions)
        assert sum(ends.values()) == N
        consumer.assign(partitions)
        await consumer.commit({partitions[0]: ends[partitions[0]]})  # partition 0 done
        assert await lag.read() == N - ends[partitions[0]]
        await consumer.commit({tp: ends[tp] for tp in partitions})
        assert await lag.read() == 0
    finally:
        await lag.close()
        await consumer.stop()


class GatedClassifier(WrappedClassifier):
    """The real classifier, which waits for ``gate`` before each batch: the worker holds what it fetched."""

    def __init__(self, inner: SentimentClassifier, gate: threading.Event) -> None:
        super().__init__(inner)
        self.gate, self.entered = gate, threading.Event()

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.entered.set()
        self.gate.wait(60)
        return self.inner.predict(texts)


@pytest.mark.parametrize("mode", MODES)
async def test_the_backlog_counts_what_is_left_to_classify_until_it_is_written(
    mode, config, store, warehouse, classifier, metrics
):
    """N records in Kafka and M messages already staged, the model held back: a fused worker reports N + M
    (N records of its group not committed, fetched or not, plus M pending documents its claim loop also
    classifies); in lease mode, once the consumer has staged the N records, the inference worker reports the
    same N + M staged messages. Once everything is written: 0."""
    await create_topic(config, partitions=3)
    await produce(config, messages(N))
    await stage(store, M, "backfill")
    gate = threading.Event()
    gated = GatedClassifier(classifier, gate)
    if mode == "fused":
        fused = FusedWorker(
            config, store, warehouse, gated, metrics, batch_size=CLAIM, kafka_overrides=KAFKA_TEST_OVERRIDES
        )
        inference = fused.worker
        runs = [fused.run]
    else:
        consumer = StagingConsumer(config, store, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES)
        inference = InferenceWorker(config, store, warehouse, gated, metrics, claim_size=CLAIM)
        runs = [consumer.run, inference.run]
    inference.backlog_refresh_seconds = 0.2
    try:
        async with RunningAll(runs):
            await wait_until(lambda: _true(gated.entered.is_set()), what="the model called")
            await wait_until(lambda: _gauge_is(metrics, N + M), what=f"a backlog of {N + M}")
            assert len(await warehouse_ids(warehouse)) == 0
            if mode == "fused":  # held by the model, staged, or not fetched yet: all count until committed
                assert (await staging_states(store)).get("pending", 0) > M
                assert await store.messages.count_documents({}) < N + M
            gate.set()
            await wait_until(lambda: _rows_are(warehouse, N + M), what=f"{N + M} rows")
            await wait_until(lambda: _gauge_is(metrics, 0), what="a backlog of 0")
    finally:
        gate.set()


async def test_a_backlog_that_cannot_be_read_keeps_its_last_value_and_the_worker_goes_on(
    config, store, warehouse, classifier, metrics
):
    """The gauge is read in its own task: reads that fail leave the last value (logged once, and once when
    reads work again) while the worker classifies everything."""
    await stage(store, N)
    worker = InferenceWorker(config, store, warehouse, classifier, metrics)
    worker.backlog_refresh_seconds = 0.05
    reads: list[int] = []
    broken = asyncio.Event()
    broken.set()

    async def flaky() -> int:
        if reads and broken.is_set():
            reads.append(-1)
            raise ConnectionError("Kafka unreachable")
        reads.append(await store.count_backlog())
        return reads[-1]

    worker.backlog = flaky
    with capture_logs() as logs:
        async with Running(worker.run):
            await wait_until(lambda: _rows_are(warehouse, N), what=f"{N} rows")
            await wait_until(lambda: _true(reads.count(-1) >= 5), what="several failed reads")
            assert sample_value(metrics, BACKLOG) == reads[0] > 0
            broken.clear()
            await wait_until(lambda: _gauge_is(metrics, 0), what="the gauge read again")
    events = [entry["event"] for entry in logs if entry["event"].startswith("backlog ")]
    assert events == ["backlog not read; the gauge keeps its last value", "backlog read again"]


async def _true(value: bool) -> bool:
    return value


async def _gauge_is(metrics, value: int) -> bool:
    return sample_value(metrics, BACKLOG) == value


async def _rows_are(warehouse, n: int) -> bool:
    return len(await warehouse_ids(warehouse)) == n
