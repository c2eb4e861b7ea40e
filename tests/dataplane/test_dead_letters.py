"""Dead letters are useful, and counts reconcile: ``sentiment-pipeline dead-letters list|replay`` and
``sentiment-pipeline reconcile`` on the real servers, as an operator uses them after an incident."""

from __future__ import annotations

import asyncio
import json

import pytest
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.messages import DeadLetterReason, Rejected, SourceRecord, utcnow

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES
from tests.dataplane.helpers import (
    MODES,
    RunningAll,
    create_topic,
    messages,
    pipeline_workers,
    produce,
    wait_until,
    warehouse_ids,
)
from tests.dataplane.test_cli import cli
from tests.dataplane.test_inference import RaisingOn

BIG_INT = b'{"id": "big-int", "comment": "BSON cannot hold it", "n": 123456789012345678901234567890}'
INVALID = [b"{not json", b'["an", "array"]']


async def _pipeline_with_dead_letters(mode, config, store, warehouse, classifier, metrics) -> list[str]:
    """20 good messages (one the model cannot process), 2 invalid records and one Mongo refuses."""
    await create_topic(config, partitions=2)
    good = messages(20, "d")
    good[4]["comment"] = "POISON for this model"
    await produce(config, [*good, *INVALID, BIG_INT])
    raising = RaisingOn(classifier, "POISON")
    async with RunningAll(
        pipeline_workers(
            mode, config, store, warehouse, raising, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
        )
    ):
        await wait_until(lambda: _rows(warehouse, 19), what="19 rows")
        await wait_until(lambda: _letters(store, 4), what="4 dead letters")
    return [m["id"] for m in good]


@pytest.mark.parametrize("mode", MODES)
async def test_dead_letters_are_listed_and_replayed_exactly_once_after_a_fix(
    mode, services, config, store, warehouse, classifier, metrics
):
    ids = await _pipeline_with_dead_letters(mode, config, store, warehouse, classifier, metrics)
    env = services.worker_env(config)

    listed = cli("dead-letters", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 4 and "4 dead letter(s)" in listed.stderr
    assert "model_error" in listed.stdout and "d-4" in listed.stdout
    rejected = cli("dead-letters", "list", "--reason", "store_rejected", "--json", env=env)
    (letter,) = [json.loads(line) for line in rejected.stdout.splitlines()]
    assert letter["stage"] == "consume" and "OverflowError" in letter["detail"]
    assert len(cli("dead-letters", "list", "--since", "1h", env=env).stdout.splitlines()) == 4
    assert cli("dead-letters", "list", "--since", "2999-01-01", env=env).stdout == ""

    # The model is fixed: replay the model errors, then a worker with the fixed model takes them.
    replayed = cli("dead-letters", "replay", "--reason", "model_error", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "requeued d-4" in replayed.stdout
    again = cli("dead-letters", "replay", "--id", "d-4", env=env)
    assert again.returncode == 0 and "already replayed" in again.stdout  # idempotent
    worker = InferenceWorker(config, store, warehouse, classifier, metrics)
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    rows = await warehouse_ids(warehouse)
    assert sorted(rows) == sorted(ids) and len(rows) == len(set(rows))  # d-4 once

    # A record an earlier parser refused (its bytes are kept) is parsed and staged again by the current one.
    old = SourceRecord("legacy-topic", 0, 7, None, b'{"id": "legacy-1", "comment": "refused by v0"}')
    await store.stage([], [Rejected(DeadLetterReason.INVALID_FIELD, "refused by v0", old)], utcnow())
    legacy = cli("dead-letters", "replay", "--id", "legacy-topic:0:7", env=env)
    assert legacy.returncode == 0 and "staged as legacy-1" in legacy.stdout
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert "legacy-1" in await warehouse_ids(warehouse)

    # What no fix changes stays dead-lettered, reported, and the command says so with its exit status.
    stuck = cli("dead-letters", "replay", "--stage", "consume", env=env)
    assert stuck.returncode == 1
    assert stuck.stdout.count("still invalid_json") + stuck.stdout.count("still not_an_object") == 2
    assert "still store_rejected" in stuck.stdout and "3 still refused" in stuck.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_reconcile_adds_up_after_a_clean_run_and_fails_when_a_count_is_tampered_with(
    mode, services, config, store, warehouse, classifier, metrics
):
    await _pipeline_with_dead_letters(mode, config, store, warehouse, classifier, metrics)
    env = services.worker_env(config)
    clean = cli("reconcile", "--expect-drained", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "FAIL" not in clean.stdout and "drained: yes" in clean.stdout
    assert (
        "consume: 23 records committed, 20 read into staged messages (duplicates included), 3" in clean.stdout
    )
    assert "dead letters: stage infer, reason model_error: 1" in clean.stdout
    assert "warehouse: 19 rows" in clean.stdout

    # A warehouse row lost: the warehouse no longer matches the messages marked done.
    await warehouse._execute(f"DELETE FROM `{config.mysql_table}` WHERE id = 'd-0'")
    lost_row = cli("reconcile", env=env)
    assert lost_row.returncode == 1 and "FAIL warehouse rows: 18 rows, 19 done" in lost_row.stdout

    # A staged message lost: its Kafka record is committed but accounted for nowhere.
    await store.messages.delete_one({"_id": "d-1"})
    lost_message = cli("reconcile", env=env)
    assert lost_message.returncode == 1
    assert "FAIL kafka partition" in lost_message.stdout


async def test_operator_commands_print_one_clear_line_when_a_server_is_unreachable(services, config):
    env = services.worker_env(config) | {"SENTIMENT_MONGO_URI": "mongodb://127.0.0.1:9/"}
    for args in (("dead-letters", "list"), ("reconcile",)):
        result = cli(*args, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert (
            result.stderr.startswith("error: cannot reach") and len(result.stderr.strip().splitlines()) == 1
        )
    bad = cli("dead-letters", "list", "--reason", "nope", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --reason 'nope'")


async def _rows(warehouse, n: int) -> bool:
    return await warehouse.count() >= n


async def _letters(store, n: int) -> bool:
    return await store.dead_letters.count_documents({}) >= n


async def test_a_replayed_message_that_fails_again_is_dead_lettered_again_and_open(
    config, store, warehouse, classifier, metrics
):
    from sentiment_workers.dead_letters import replay

    from tests.dataplane.helpers import sample_value
    from tests.dataplane.test_inference import stage

    await stage(store, 3, texts=["fine 0", "POISON 1", "fine 2"])
    unfixed = RaisingOn(classifier, "POISON")
    for _ in range(2):  # the first run, then a replay before the model is really fixed
        worker = InferenceWorker(config, store, warehouse, unfixed, metrics)
        await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
        (letter,) = await store.find_dead_letters(include_replayed=False)
        assert letter["_id"] == "infer:s-1" and "replayed_at" not in letter
        outcomes = await replay(store, [letter], max_bytes=config.max_message_bytes)
        assert [o.result for o in outcomes] == ["requeued s-1"]
    assert (
        sample_value(
            metrics, "sentiment_messages_dead_lettered_total", {"stage": "infer", "reason": "model_error"}
        )
        == 2
    )
    assert sorted(await warehouse_ids(warehouse)) == ["s-0", "s-2"]
