"""Property: whatever a producer sends (arbitrary bytes, arbitrary JSON values with any nesting, numbers,
unicode including lone surrogates, and keys), through the REAL consumer, the REAL inference worker and the
real servers, the workers never exit and every record ends exactly once: its message in ``dw_messages``, or
the record or its message in the dead letters with a reason."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sentiment_workers.adapters.kafka import create_producer
from sentiment_workers.messages import SourceRecord, StagedMessage, parse_record

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES
from tests.dataplane.helpers import MODES, RunningAll, create_topic, pipeline_workers, warehouse_ids

TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # every code point, lone surrogates too
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


MESSAGES = st.fixed_dictionaries(
    {"comment": TEXT},
    optional={
        "id": st.integers() | TEXT | JSON_VALUES,
        "user_id": st.integers() | TEXT | JSON_VALUES,
        "created_at": st.integers() | st.floats() | TEXT,
        "text": TEXT,
        "payload": JSON_VALUES,
        "deep": st.integers(0, 40).map(_nested),  # MariaDB's JSON depth limit is 32
    },
)

# Messages that pass parsing (text, a well-typed id), with arbitrary extra fields: what reaches the stores.
VALID_MESSAGES = st.builds(
    lambda text, own_id, extra, deep: {**extra, "id": own_id, "comment": "t " + text, "deep": deep},
    TEXT,
    st.integers(0, 2**62) | TEXT.filter(str.strip),
    st.dictionaries(TEXT, JSON_VALUES, max_size=3),
    st.integers(0, 40).map(_nested),
)


def _encode(value: Any, ascii_only: bool) -> bytes:
    # ensure_ascii escapes lone surrogates (\ud800); without it they become bytes that are not UTF-8.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


VALUES = st.one_of(
    st.binary(max_size=40),
    st.builds(_encode, JSON_VALUES, st.booleans()),
    st.builds(_encode, MESSAGES, st.booleans()),
    st.builds(_encode, VALID_MESSAGES, st.just(True)),
    st.builds(_encode, VALID_MESSAGES, st.just(True)),
)
RECORDS = st.lists(st.tuples(st.none() | st.binary(min_size=1, max_size=6), VALUES), min_size=1, max_size=8)


@pytest.mark.parametrize("mode", MODES)
async def test_any_records_end_exactly_once_in_the_warehouse_or_the_dead_letters(
    mode, config, store, warehouse, classifier, metrics
):
    await create_topic(config, partitions=2)
    loop = asyncio.get_running_loop()
    producer = create_producer(config)
    await producer.start()
    workers = pipeline_workers(
        mode,
        config,
        store,
        warehouse,
        classifier,
        metrics,
        claim_size=16,
        kafka_overrides=KAFKA_TEST_OVERRIDES,
    )
    checked = 0
    try:
        async with RunningAll(workers) as running:

            async def send_and_check(records: list[tuple[bytes | None, bytes]]) -> None:
                nonlocal checked
                sent = [await producer.send(config.kafka_topic, value, key=key) for key, value in records]
                positions = [await future for future in sent]
                expected = []
                for (key, value), meta in zip(records, positions, strict=True):
                    source = SourceRecord(config.kafka_topic, meta.partition, meta.offset, key, value)
                    expected.append((source, parse_record(source, max_bytes=config.max_message_bytes)))
                deadline = loop.time() + 60
                while not await _accounted(store, warehouse, expected):
                    assert not running.any_exited(), "a worker exited"
                    assert loop.time() < deadline, f"records not accounted for: {records!r:.2000}"
                    await asyncio.sleep(0.1)
                checked += len(records)

            @settings(
                max_examples=30,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(RECORDS)
            def property_holds(records: list[tuple[bytes | None, bytes]]) -> None:
                asyncio.run_coroutine_threadsafe(send_and_check(records), loop).result(timeout=120)

            await asyncio.to_thread(property_holds)
            assert not running.any_exited()
    finally:
        await producer.stop()
    assert checked >= 30
    assert await store.count_backlog() == 0


async def _accounted(store, warehouse, expected: list[tuple[SourceRecord, Any]]) -> bool:
    """Each record exactly once: a consume dead letter for its position, else its message id in exactly one
    of dw_messages and the inference dead letters."""
    rows = set(await warehouse_ids(warehouse))
    letters = await store.dead_letters.find({}, {"reason": 1, "message_id": 1, "stage": 1}).to_list(None)
    consumed = {d["_id"]: d["reason"] for d in letters if d["stage"] == "consume"}
    inferred = {d["message_id"]: d["reason"] for d in letters if d["stage"] == "infer"}
    assert not rows & set(inferred), "a message both in the warehouse and dead-lettered"
    for source, parsed in expected:
        position = f"{source.topic}:{source.partition}:{source.offset}"
        if not isinstance(parsed, StagedMessage):
            if position not in consumed:
                return False
            assert consumed[position] == parsed.reason.value, (source, consumed[position], parsed)
            continue
        if position in consumed:
            assert consumed[position] == "store_rejected", (source, consumed[position])
            continue
        if parsed.id not in rows and parsed.id not in inferred:
            return False
    return True
