"""The incident of issue 10, replayed on the real servers with real worker processes: a stream with
duplicates, malformed records, records a store refuses (Mongo at staging, MariaDB in the warehouse), a text
that kills every worker holding it (SIGKILL, as the OOM killer does), the consumer and a worker SIGKILLed
mid-stream, MariaDB and the Mongo server restarted mid-stream. Every valid message lands exactly once, every
bad one is dead-lettered alone with its reason, nothing is pending, the counts reconcile, and the only worker
exits are the ones the test caused."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections import Counter
from typing import Any

import pytest
from sentiment_workers.reconcile import reconcile

from tests.dataplane.conftest import ROOT
from tests.dataplane.helpers import MODES, create_topic, produce, staging_states, wait_until, warehouse_ids
from tests.dataplane.test_cli import cli

VALID = int(os.environ.get("INCIDENT_VALID_MESSAGES", "1500"))  # the run: 4500
DUPLICATES = VALID // 7
CLI = "from sentiment_workers.cli import main; main()"


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def stream() -> tuple[list[bytes], set[str], Counter[tuple[str, str]]]:
    """The records in production order, the ids that must land, and the dead letters expected by
    (stage, reason)."""
    rng = random.Random(10)
    valid = [
        json.dumps(
            {"id": f"v-{i}", "user_id": i % 13, "comment": f"message {i} is {rng.choice(['good', 'bad'])}"}
        )
        for i in range(VALID)
    ]
    for i in range(0, VALID, 150):  # lone surrogates: kept, with U+FFFD, the bytes in staging
        valid[i] = '{"id": "v-' + str(i) + '", "comment": "odd \\ud800 text ' + str(i) + '"}'
    malformed = (
        [b"\xff\xfe not utf-8 %d" % i for i in range(20)]
        + [b"{not json %d" % i for i in range(20)]
        + [b'["an", "array", %d]' % i for i in range(10)]
        + [json.dumps({"id": f"no-text-{i}", "comment": "  "}).encode() for i in range(10)]
    )
    mongo_refused = [
        json.dumps({"id": f"bigint-{i}", "comment": "fine text", "n": 10**25 + i}).encode() for i in range(10)
    ]
    mariadb_refused = [
        json.dumps({"id": f"deep-{i}", "comment": "fine text", "p": _deep(40)}).encode() for i in range(10)
    ]
    poison = [json.dumps({"id": "poison", "comment": "HUGE text that takes all the memory"}).encode()]
    records = [v.encode() for v in valid] + malformed + mongo_refused + mariadb_refused + poison
    rng.shuffle(records)
    records += [v.encode() for v in rng.sample(valid, DUPLICATES)]  # re-sent: same ids, new offsets
    expected = Counter(
        {
            ("consume", "not_utf8"): 20,
            ("consume", "invalid_json"): 20,
            ("consume", "not_an_object"): 10,
            ("consume", "missing_text"): 10,
            ("consume", "store_rejected"): 10,
            ("infer", "store_rejected"): 10,
            ("infer", "too_many_attempts"): 1,
        }
    )
    return records, {f"v-{i}" for i in range(VALID)}, expected


class Supervised:
    """A worker process restarted whenever it dies, as a Deployment would; records every exit status."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.exits: list[int] = []
        self.process: asyncio.subprocess.Process | None = None
        self.done = False
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while not self.done:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *self.args, cwd=ROOT, env=self.env, stderr=asyncio.subprocess.DEVNULL
            )
            self.exits.append(await self.process.wait())

    def kill(self) -> None:
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        self.done = True
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.task, 120)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
async def test_the_incident_ends_with_every_message_once_and_every_bad_one_alone_in_the_dead_letters(
    mode, services, config, store, warehouse, tiny_model_dir
):
    records, valid_ids, expected_letters = stream()
    await create_topic(config, partitions=3)
    worker_config = config.model_copy(update={"lease_seconds": 2.0})
    env = services.worker_env(worker_config)
    inference_env = env | {
        "POISON_MARKER": "HUGE",
        "CLAIM_SIZE": "16",
        "MAX_ATTEMPTS": "1",
        "IDLE_EXIT_S": "never",
        "WORKER_MODE": mode,
    }
    workers = [
        Supervised(f"worker-{i}", ["-m", "tests.dataplane.poison_worker", str(tiny_model_dir)], inference_env)
        for i in range(2)
    ]
    # Lease mode: a consumer process stages for the workers. Fused: the workers consume; the one killed as
    # "the consumer" is the second worker.
    consumer = (
        Supervised("consumer", ["-c", CLI, "consume", "--session-timeout-ms", "1500"], env)
        if mode == "lease"
        else workers[1]
    )
    killed = Counter[str]()
    try:
        producing = asyncio.create_task(produce(config, records, rate=VALID / 12))  # ~15 s of traffic
        await wait_until(lambda: _rows_at_least(warehouse, 50), timeout=120, what="first rows")

        consumer.kill()  # mid-stream, mid-batch: uncommitted records are redelivered
        killed["consumer" if mode == "lease" else "worker"] += 1
        await asyncio.sleep(1)
        workers[0].kill()
        killed["worker"] += 1

        await asyncio.to_thread(services.stop, "mysql")
        await asyncio.sleep(3)
        await asyncio.to_thread(services.start, "mysql")

        await asyncio.to_thread(services.stop, "mongo")
        await asyncio.sleep(3)
        await asyncio.to_thread(services.start, "mongo")

        await producing
        await wait_until(
            lambda: _settled(config, store, warehouse, len(valid_ids), sum(expected_letters.values())),
            timeout=400,
            what="every message in the warehouse or the dead letters, and the topic drained",
        )
    finally:
        for process in {consumer, *workers}:
            await process.stop()

    rows = await warehouse_ids(warehouse)
    assert len(rows) == len(set(rows)) and set(rows) == valid_ids
    letters = await store.dead_letters.find({}).to_list(None)
    assert Counter((d["stage"], d["reason"]) for d in letters) == expected_letters
    infer_letters = [d for d in letters if d["stage"] == "infer"]
    assert {d["message_id"] for d in infer_letters if d["reason"] == "too_many_attempts"} == {"poison"}
    assert {d["message_id"] for d in infer_letters if d["reason"] == "store_rejected"} == {
        f"deep-{i}" for i in range(10)
    }
    consume_refused = [d for d in letters if d["reason"] == "store_rejected" and d["stage"] == "consume"]
    assert {json.loads(bytes(d["raw"]))["id"] for d in consume_refused} == {f"bigint-{i}" for i in range(10)}
    assert await staging_states(store) == {"done": VALID, "dead_lettered": 11}
    kept = await store.messages.find_one({"_id": "v-0"})
    assert kept["comment"] == "odd \ufffd text 0" and "altered" in kept

    # The only exits: the SIGKILLs the test sent or the poison caused, then the final SIGTERM (a clean 0, or
    # the default action when it lands while a restarted worker is still loading its model).
    if mode == "lease":
        assert consumer.exits == [-signal.SIGKILL] * killed["consumer"] + [0]
    for worker in workers:
        assert set(worker.exits[:-1]) <= {-signal.SIGKILL} and worker.exits[-1] in (0, -signal.SIGTERM)
    worker_exits = [code for w in workers for code in w.exits[:-1]]
    poison_kills = len(worker_exits) - killed["worker"]
    assert poison_kills >= 2  # claims of 16 halved down to the poison alone

    reconciled = cli("reconcile", "--expect-drained", env=env)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert f"staging: {len(range(0, VALID, 150))} messages altered to be storable" in reconciled.stdout
    by_reason = dict(sorted(Counter(d["stage"] + "/" + d["reason"] for d in letters).items()))
    print(
        f"\nincident: {len(records)} records sent, {len(rows)} rows, dead letters {by_reason}, "
        f"consumer exits {consumer.exits}, worker exits {[w.exits for w in workers]}, "
        f"poison kills {poison_kills}\n{reconciled.stdout}"
    )


async def _rows_at_least(warehouse, n: int) -> bool:
    try:
        return await warehouse.count() >= n
    except Exception:
        return False


async def _settled(config, store, warehouse, rows: int, letters: int) -> bool:
    """Every message landed or set aside, and drained as `reconcile` means it: no Kafka lag either. (A worker
    whose offset commit was refused by a rebalance leaves its last records to the partition's next owner,
    which re-reads them, finds them staged and commits: until then they are in flight.)"""
    try:
        return (
            await warehouse.count() >= rows
            and await store.dead_letters.count_documents({}) >= letters
            and await store.count_backlog() == 0
            and (await reconcile(config, store, warehouse)).drained
        )
    except Exception:
        return False
