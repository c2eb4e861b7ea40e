"""Consumers in one group on a real Kafka-protocol broker: partitions move between members and nothing is
lost or staged twice, whether a member leaves gracefully or is SIGKILLed between staging and committing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sentiment_workers.adapters.kafka import connection_options
from sentiment_workers.consumer import StagingConsumer
from sentiment_workers.metrics import PipelineMetrics

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES, ROOT
from tests.dataplane.helpers import Running, create_topic, messages, produce, sample_value, wait_until

PARTITIONS = 4


async def test_a_consumer_killed_between_staging_and_committing_is_replaced_without_loss_or_duplicates(
    services, config, store
):
    n = 300
    await create_topic(config, partitions=PARTITIONS)
    sent = messages(n, "k")
    await produce(config, sent)

    # The first member stages batches but waits 30 s before committing each: killed inside that window.
    env = services.worker_env(config) | {"SLOW_COMMIT_S": "30"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.dataplane.slow_commit_consumer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_until(lambda: _staged_at_least(store, 1), timeout=60, what="a staged batch")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    # A bulk write the dead process had already sent may still be applied by the server: wait until it is.
    staged_by_the_dead = await _settled_count(store)
    committed = await _committed_offsets(config)
    assert sum(committed.values()) < staged_by_the_dead, "the kill should leave staged, uncommitted records"

    # A new member gets every partition and re-reads from the last committed offsets.
    metrics = PipelineMetrics(CollectorRegistry())
    survivor = StagingConsumer(config, store, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES)
    async with Running(survivor.run):
        await wait_until(lambda: _staged_at_least(store, n), timeout=60, what=f"{n} staged")
        await wait_until(lambda: _committed_total_is(config, n), timeout=30, what="every offset committed")

    consumed = sample_value(metrics, "sentiment_messages_consumed_total", {"topic": config.kafka_topic})
    assert consumed == n - sum(committed.values()), "exactly the uncommitted records are redelivered"
    assert sample_value(metrics, "sentiment_messages_staged_total") == n - staged_by_the_dead
    ids = [d["_id"] for d in await store.messages.find({}, {"_id": 1}).to_list(None)]
    assert sorted(ids) == sorted(m["id"] for m in sent)
    assert await store.dead_letters.count_documents({}) == 0


async def test_two_consumers_share_the_partitions_and_one_leaving_mid_stream_loses_nothing(config, store):
    await create_topic(config, partitions=PARTITIONS)
    first_metrics, second_metrics = PipelineMetrics(CollectorRegistry()), PipelineMetrics(CollectorRegistry())
    first = StagingConsumer(config, store, first_metrics, kafka_overrides=KAFKA_TEST_OVERRIDES)
    second = StagingConsumer(config, store, second_metrics, kafka_overrides=KAFKA_TEST_OVERRIDES)
    sent: list[dict] = []

    async def produce_chunk() -> None:
        chunk = messages(50, f"g{len(sent)}")
        sent.extend(chunk)
        await produce(config, chunk, rate=100)

    async with Running(first.run) as running_first, Running(second.run):
        # Traffic flows until the group has settled with partitions on both members...
        for _ in range(60):
            await produce_chunk()
            if await _both_consumed(config, first_metrics, second_metrics):
                break
        else:
            raise AssertionError("the second member never got a partition")
        # ... then one member leaves while records keep coming: its partitions move to the other.
        leaving = asyncio.create_task(running_first.stop())
        for _ in range(4):
            await produce_chunk()
        await leaving
        n = len(sent)
        await wait_until(lambda: _staged_at_least(store, n), timeout=60, what=f"{n} staged")
        await wait_until(lambda: _committed_total_is(config, n), timeout=30, what="every offset committed")

    staged = sample_value(first_metrics, "sentiment_messages_staged_total") + sample_value(
        second_metrics, "sentiment_messages_staged_total"
    )
    assert staged == n
    ids = [d["_id"] for d in await store.messages.find({}, {"_id": 1}).to_list(None)]
    assert sorted(ids) == sorted(m["id"] for m in sent)
    assert sorted(await store.messages.distinct("partition")) == list(range(PARTITIONS))


async def _committed_offsets(config) -> dict[int, int]:
    probe = AIOKafkaConsumer(
        **connection_options(config), group_id=config.kafka_group_id, enable_auto_commit=False
    )
    await probe.start()
    try:
        return {
            p: (await probe.committed(TopicPartition(config.kafka_topic, p))) or 0 for p in range(PARTITIONS)
        }
    finally:
        await probe.stop()


async def _committed_total_is(config, n: int) -> bool:
    return sum((await _committed_offsets(config)).values()) == n


async def _settled_count(store, quiet_s: float = 2.0) -> int:
    """The staged count once it has not changed for ``quiet_s`` seconds."""
    count = await store.messages.count_documents({})
    while True:
        await asyncio.sleep(quiet_s)
        now = await store.messages.count_documents({})
        if now == count:
            return count
        count = now


async def _staged_at_least(store, n: int) -> bool:
    return await store.messages.count_documents({}) >= n


async def _both_consumed(config, *metrics: PipelineMetrics) -> bool:
    topic = {"topic": config.kafka_topic}
    return all(sample_value(m, "sentiment_messages_consumed_total", topic) > 0 for m in metrics)
