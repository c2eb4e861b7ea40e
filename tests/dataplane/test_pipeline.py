"""Kafka -> MongoDB -> model -> MySQL on real servers: exactly N rows for N messages, whatever is re-sent or
replayed; poison messages dead-lettered with reasons while the rest flow through."""

from __future__ import annotations

import json

import pytest
from sentiment_workers.consumer import StagingConsumer
from sentiment_workers.fused import FusedWorker

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES
from tests.dataplane.helpers import (
    MODES,
    Running,
    RunningAll,
    create_topic,
    messages,
    pipeline_workers,
    produce,
    sample_value,
    staged_label,
    staging_states,
    wait_until,
    warehouse_ids,
)

N = 300
POISON = [
    b"\xff\xfe\x00 not utf-8",
    b"{this is not json",
    b'["an", "array"]',
    json.dumps({"id": "no-text", "user_id": 1}).encode(),
    json.dumps({"id": "huge", "comment": "x" * 70_000}).encode(),
]
POISON_REASONS = {"not_utf8": 1, "invalid_json": 1, "not_an_object": 1, "missing_text": 1, "oversized": 1}


@pytest.mark.parametrize("mode", MODES)
async def test_n_messages_make_exactly_n_rows_even_when_resent_and_replayed(
    mode, config, store, warehouse, classifier, metrics
):
    await create_topic(config, partitions=3)
    batch = messages(N)
    await produce(config, batch + POISON)

    workers = pipeline_workers(
        mode, config, store, warehouse, classifier, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
    )
    async with RunningAll(workers):
        await wait_until(lambda: _rows_equal(warehouse, N), what=f"{N} rows")
        await wait_until(lambda: _dead_letters_equal(store, len(POISON)), what="dead letters")

        # The producer sends the same messages again (new Kafka records, same message ids).
        await produce(config, batch)
        await wait_until(
            lambda: _true(
                sample_value(metrics, "sentiment_messages_consumed_total", {"topic": config.kafka_topic})
                == 2 * N + len(POISON)
            ),
            what="re-sent messages consumed",
        )
        await wait_until(lambda: _backlog_empty(store), what="empty backlog")

    # A second consumer group replays the whole topic (same offsets): nothing new anywhere.
    replay = config.model_copy(update={"kafka_group_id": config.kafka_group_id + "-replay"})
    replayer: StagingConsumer | FusedWorker = StagingConsumer(
        replay, store, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
    )
    if mode == "fused":
        replayer = FusedWorker(
            replay, store, warehouse, classifier, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
        )
    async with Running(replayer.run):
        await wait_until(
            lambda: _true(
                sample_value(metrics, "sentiment_messages_consumed_total", {"topic": config.kafka_topic})
                == 4 * N + 2 * len(POISON)
            ),
            what="replay consumed",
        )

    ids = await warehouse_ids(warehouse)
    assert len(ids) == N and set(ids) == {m["id"] for m in batch}
    assert await staging_states(store) == {"done": N}
    assert await store.dead_letters.count_documents({}) == len(POISON)
    reasons = {
        r["_id"]: r["n"]
        for r in await store.dead_letters.aggregate(
            [{"$group": {"_id": "$reason", "n": {"$sum": 1}}}]
        ).to_list(None)
    }
    assert reasons == POISON_REASONS
    raw_values = {
        bytes(d["raw"]) for d in await store.dead_letters.find({"reason": {"$ne": "oversized"}}).to_list(None)
    }
    assert raw_values == set(POISON[:4])

    # Counters tell the same story: each message staged and classified once, each poison dead-lettered once.
    assert sample_value(metrics, "sentiment_messages_staged_total") == N
    classified = sum(
        sample_value(metrics, "sentiment_texts_classified_total", {"label": label})
        for label in classifier.labels
    )
    assert classified == N
    for reason, n in POISON_REASONS.items():
        assert (
            sample_value(
                metrics, "sentiment_messages_dead_lettered_total", {"stage": "consume", "reason": reason}
            )
            == n
        )
    assert sample_value(metrics, "sentiment_end_to_end_latency_seconds_count") == N
    for partition in ("0", "1", "2"):  # the consumer caught up with every partition
        lag = metrics.registry.get_sample_value(
            "sentiment_consumer_lag_messages", {"topic": config.kafka_topic, "partition": partition}
        )
        assert lag == 0


@pytest.mark.parametrize("mode", MODES)
async def test_rows_carry_the_message_and_its_prediction(mode, config, store, warehouse, classifier, metrics):
    await create_topic(config, partitions=1)
    sent = {"id": "row-1", "user_id": 77, "comment": "I love this 😀", "created_at": "2024-01-02T03:04:05Z"}
    await produce(config, [sent])
    workers = pipeline_workers(
        mode, config, store, warehouse, classifier, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
    )
    async with RunningAll(workers):
        await wait_until(lambda: _rows_equal(warehouse, 1), what="the row")
    rows = await warehouse._execute(
        "SELECT id, user_id, comment, sentiment_label, sentiment_score, raw_json, model, ingest_ts, "
        f"processed_at FROM `{config.mysql_table}`"
    )
    (row_id, user_id, comment, label, score, raw_json, model, ingest_ts, processed_at) = rows[0]
    expected = classifier.predict([sent["comment"]])[0]
    assert (row_id, user_id, comment) == ("row-1", "77", "I love this 😀")
    assert label == expected.label and abs(score - expected.score) < 1e-5 and 0 <= score <= 1
    assert json.loads(raw_json) == sent
    assert model == classifier.model_id
    assert ingest_ts <= processed_at
    assert await staging_states(store) == {"done": 1} and await staged_label(store, "row-1") == label
    doc = await store.messages.find_one({"_id": "row-1"})
    assert "lease_token" not in doc and doc["payload"] == sent
    assert (doc["topic"], doc["partition"], doc["offset"]) == (config.kafka_topic, 0, 0)


async def test_consumer_commits_offsets_of_everything_it_staged(config, store, metrics):
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from sentiment_workers.adapters.kafka import connection_options

    await create_topic(config, partitions=2)
    await produce(config, messages(50, "c"))
    consumer = StagingConsumer(config, store, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES)
    async with Running(consumer.run):
        await wait_until(lambda: _staged_equal(store, 50), what="50 staged")
    # After a graceful stop the group's committed offset of each partition is one past the last staged record.
    probe = AIOKafkaConsumer(
        **connection_options(config), group_id=config.kafka_group_id, enable_auto_commit=False
    )
    await probe.start()
    try:
        partitions = [TopicPartition(config.kafka_topic, p) for p in (0, 1)]
        committed = {tp.partition: await probe.committed(tp) for tp in partitions}
    finally:
        await probe.stop()
    last_staged = await store.messages.aggregate(
        [{"$group": {"_id": "$partition", "last": {"$max": "$offset"}, "n": {"$sum": 1}}}]
    ).to_list(None)
    assert committed == {row["_id"]: row["last"] + 1 for row in last_staged}
    assert sum(committed.values()) == 50
    assert sample_value(metrics, "sentiment_kafka_offset_commits_total") >= 1


async def _true(value: bool) -> bool:
    return value


async def _rows_equal(warehouse, n: int) -> bool:
    return await warehouse.count() >= n


async def _staged_equal(store, n: int) -> bool:
    return await store.messages.count_documents({}) >= n


async def _dead_letters_equal(store, n: int) -> bool:
    return await store.dead_letters.count_documents({}) >= n


async def _backlog_empty(store) -> bool:
    return await store.count_backlog() == 0
