"""A store refusing one message never stops a worker: the refused message is isolated by bisection and
dead-lettered alone with the store's error, the rest of its batch is written. And each store's errors are
classified explicitly (transient: retry; rejection: isolate; anything else: propagate), checked against the
real servers."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aiomysql
import pymysql
import pytest
from bson.errors import InvalidDocument
from motor.motor_asyncio import AsyncIOMotorClient
from pydantic import SecretStr
from pymongo import UpdateOne
from sentiment_workers.adapters import mongo, mysql
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.adapters.mysql import WarehouseRow
from sentiment_workers.consumer import StagingConsumer
from sentiment_workers.fused import FusedWorker
from sentiment_workers.inference import InferenceWorker
from sentiment_workers.isolation import write_isolating
from sentiment_workers.messages import SourceRecord, StagedMessage, parse_record, utcnow

from tests.dataplane.conftest import KAFKA_TEST_OVERRIDES, ROOT
from tests.dataplane.helpers import (
    MODES,
    Running,
    create_topic,
    messages,
    produce,
    sample_value,
    staging_states,
    wait_until,
    warehouse_ids,
)
from tests.dataplane.test_inference import stage


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# Valid JSON with text, refused by the Mongo client's BSON encoder.
MONGO_REFUSED = {
    "big-int": b'{"id": "big-int", "comment": "BSON cannot hold it", "n": 123456789012345678901234567890}',
    "nul-key": b'{"id": "nul-key", "comment": "a key with a NUL byte", "p": {"a\\u0000b": 1}}',
}
REFUSED = "store_rejected"
SURROGATE = b'{"id": "a1", "comment": "x \\ud800 y"}'


# -- the generic bisection -------------------------------------------------------------------------


async def test_bisection_writes_everything_but_the_refused_items_in_one_call_when_none_is_refused():
    written: list[int] = []

    async def write(part):
        if 13 in part or 40 in part:
            raise ValueError("refused")
        written.extend(part)
        return len(part)

    clean = await write_isolating(list(range(10)), write, is_rejection=lambda e: isinstance(e, ValueError))
    assert clean.calls == 1 and clean.rejected == [] and clean.results == [10]

    written.clear()
    mixed = await write_isolating(list(range(64)), write, is_rejection=lambda e: isinstance(e, ValueError))
    assert sorted(written) == sorted(set(range(64)) - {13, 40})
    assert [item for item, _ in mixed.rejected] == [13, 40]
    assert mixed.calls <= 1 + 2 * 2 * 6  # O(k log n)


async def test_bisection_propagates_errors_that_are_not_about_the_data():
    async def write(part):
        raise PermissionError("denied")

    with pytest.raises(PermissionError):
        await write_isolating([1, 2, 3], write, is_rejection=lambda e: isinstance(e, ValueError))


# -- consumer side: MongoDB ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_consumer_dead_letters_only_what_mongo_refuses_and_keeps_a_lone_surrogate_with_a_trace(
    mode, config, store, warehouse, classifier, metrics
):
    await create_topic(config, partitions=1)
    good = messages(30, "g")
    records: list[dict[str, Any] | bytes] = [*good[:10], *MONGO_REFUSED.values(), SURROGATE, *good[10:]]
    await produce(config, records)
    consumer: StagingConsumer | FusedWorker = StagingConsumer(
        config, store, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
    )
    if mode == "fused":  # stages with inserts, one batch document per part of a split batch
        consumer = FusedWorker(
            config, store, warehouse, classifier, metrics, kafka_overrides=KAFKA_TEST_OVERRIDES
        )
    async with Running(consumer.run) as running:
        await wait_until(lambda: _count(store.messages, 31), what="31 staged")
        await wait_until(lambda: _count(store.dead_letters, 2), what="2 dead letters")
        assert not running.task.done()  # the consumer never stopped
        if mode == "fused":  # and it classified them
            await wait_until(lambda: _states(store, {"done": 31}), what="31 done")
            assert await warehouse.count() == 31
    assert await store.messages.count_documents({}) == 31
    letters = {d["offset"]: d for d in await store.dead_letters.find({}).to_list(None)}
    assert {(d["stage"], d["reason"]) for d in letters.values()} == {("consume", "store_rejected")}
    assert {bytes(d["raw"]) for d in letters.values()} == set(MONGO_REFUSED.values())
    assert "OverflowError" in letters[10]["detail"] and "InvalidDocument" in letters[11]["detail"]
    kept = await store.messages.find_one({"_id": "a1"})
    assert kept["comment"] == "x \ufffd y" and bytes(kept["raw"]) == SURROGATE and "U+FFFD" in kept["altered"]
    # Every offset of the batch was committed: nothing is redelivered forever.
    assert sample_value(metrics, "sentiment_kafka_offset_commits_total") >= 1
    assert (
        sample_value(
            metrics,
            "sentiment_messages_dead_lettered_total",
            {"stage": "consume", "reason": "store_rejected"},
        )
        == 2
    )


# -- inference side: MariaDB and the mark-done step ------------------------------------------------


async def stage_payloads(store: StagingStore, payloads: list[dict[str, Any]]) -> None:
    staged = []
    for i, payload in enumerate(payloads):
        parsed = parse_record(
            SourceRecord("topic", 0, i, None, json.dumps(payload).encode()), max_bytes=10**6
        )
        assert isinstance(parsed, StagedMessage)
        staged.append(parsed)
    await store.stage(staged, [], utcnow())


@pytest.mark.parametrize("mode", MODES)
async def test_worker_dead_letters_only_the_rows_mariadb_refuses_and_writes_the_rest(
    mode, config, store, warehouse, classifier, metrics
):
    payloads = [{"id": f"w-{i}", "comment": f"text {i}"} for i in range(40)]
    payloads[5] = {"id": "too-deep", "comment": "deep", "p": nested(40)}  # MariaDB's JSON depth limit is 32
    payloads[27] = {"id": "also-deep", "comment": "deep", "p": nested(33)}
    worker: InferenceWorker | FusedWorker = InferenceWorker(
        config, store, warehouse, classifier, metrics, claim_size=40
    )
    if mode == "fused":
        await create_topic(config, partitions=1)
        await produce(config, payloads)
        worker = FusedWorker(
            config, store, warehouse, classifier, metrics, batch_size=40, kafka_overrides=KAFKA_TEST_OVERRIDES
        )
    else:
        await stage_payloads(store, payloads)
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert sorted(await warehouse_ids(warehouse)) == sorted(f"w-{i}" for i in range(40) if i not in (5, 27))
    assert await staging_states(store) == {"done": 38, "dead_lettered": 2}
    letters = await store.dead_letters.find({}).to_list(None)
    assert {d["message_id"] for d in letters} == {"too-deep", "also-deep"}
    for letter in letters:
        assert (letter["stage"], letter["reason"]) == ("infer", "store_rejected")
        assert letter["detail"].startswith("mysql: OperationalError: (4025")
        assert letter["payload"]["p"] == nested(40 if letter["message_id"] == "too-deep" else 33)
    assert (
        sample_value(metrics, "sentiment_messages_dead_lettered_total", {"stage": "infer", "reason": REFUSED})
        == 2
    )


async def test_a_prediction_mongo_refuses_to_store_still_marks_the_document_done(
    config, store, warehouse, classifier, metrics
):
    await stage_payloads(store, [{"id": f"p-{i}", "comment": f"text {i}"} for i in range(6)])

    original = store.mark_done

    async def mark_done(results):  # the store refuses one document's fields, as for an unencodable value
        if any(doc_id == "p-2" for doc_id, _ in results):
            raise InvalidDocument("refused p-2")
        await original(results)

    store.mark_done = mark_done  # type: ignore[method-assign]
    worker = InferenceWorker(config, store, warehouse, classifier, metrics)
    await asyncio.wait_for(worker.run(asyncio.Event(), exit_when_idle=0.3), 60)
    assert len(await warehouse_ids(warehouse)) == 6
    assert await staging_states(store) == {"done": 6}
    doc = await store.messages.find_one({"_id": "p-2"})
    assert "refused p-2" in doc["done_note"] and "lease_token" not in doc


# -- classification, one test per class, real servers ----------------------------------------------


async def _mongo_error(store: StagingStore, update: dict[str, Any]) -> BaseException:
    try:
        await store.messages.bulk_write([UpdateOne({"_id": "x"}, update, upsert=True)], ordered=False)
    except Exception as exc:
        return exc
    raise AssertionError("the server accepted it")


@pytest.mark.parametrize(
    ("what", "update"),
    [
        ("a lone surrogate", {"$setOnInsert": {"c": "x \ud800"}}),
        ("an integer over 64 bits", {"$setOnInsert": {"n": 10**30}}),
        ("a NUL byte in a key", {"$setOnInsert": {"p": {"a\x00b": 1}}}),
        ("a document over 16 MiB", {"$setOnInsert": {"p": "x" * (17 * 1024 * 1024)}}),
    ],
)
async def test_mongo_refusing_a_document_is_a_rejection(store, what, update):
    exc = await _mongo_error(store, update)
    assert mongo.is_rejection(exc) and not mongo.is_transient(exc), (what, exc)


async def test_mongo_unreachable_is_transient(config):
    from tests.dataplane.conftest import free_port

    client: Any = AsyncIOMotorClient(f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=500)
    client_store = StagingStore(client, config)
    try:
        with pytest.raises(Exception) as caught:
            await client_store.count_backlog()
    finally:
        client.close()
    assert mongo.is_transient(caught.value) and not mongo.is_rejection(caught.value)


async def test_mongo_command_errors_are_neither_transient_nor_a_rejection(store):
    with pytest.raises(Exception) as caught:
        await store.client["admin"].command("noSuchCommand")
    assert not mongo.is_transient(caught.value) and not mongo.is_rejection(caught.value)


def row(row_id: str, **overrides: Any) -> WarehouseRow:
    now = utcnow()
    values: dict[str, Any] = {
        "id": row_id,
        "user_id": None,
        "comment": "text",
        "ingest_ts": now,
        "sentiment_label": "positive",
        "sentiment_score": 0.5,
        "raw_json": None,
        "model": "m",
        "processed_at": now,
    }
    values.update(overrides)
    return WarehouseRow(**values)


@pytest.mark.parametrize(
    ("what", "bad_row"),
    [
        ("JSON deeper than MariaDB's limit (CHECK JSON_VALID)", row("deep", raw_json=nested(33))),
        ("data too long", row("long", user_id="u" * 300)),
        ("the score CHECK constraint", row("score", sentiment_score=1.5)),
        ("a value the connection cannot encode", row("enc", comment="x \ud800")),
    ],
)
async def test_mariadb_refusing_a_row_is_a_rejection(warehouse, what, bad_row):
    with pytest.raises(Exception) as caught:
        await warehouse.upsert([row("fine"), bad_row])
    assert mysql.is_rejection(caught.value) and not mysql.is_transient(caught.value), (what, caught.value)
    assert await warehouse.count() == 0  # the transaction is all or nothing


async def _connect(config) -> aiomysql.Connection:
    return await aiomysql.connect(
        host=config.mysql_host,
        port=config.mysql_port,
        user=config.mysql_user,
        password=config.mysql_password.get_secret_value(),
        db=config.mysql_database,
        autocommit=False,
    )


async def test_mariadb_deadlock_and_lock_wait_timeout_are_transient(config, warehouse):
    await warehouse.upsert([row("r1"), row("r2")])
    table = f"`{config.mysql_table}`"
    a, b = await _connect(config), await _connect(config)
    try:
        ca, cb = await a.cursor(), await b.cursor()
        await cb.execute("SET SESSION innodb_lock_wait_timeout = 1")
        await ca.execute(f"SELECT * FROM {table} WHERE id = 'r1' FOR UPDATE")
        with pytest.raises(pymysql.err.OperationalError) as timeout:
            await cb.execute(f"UPDATE {table} SET comment = 'b' WHERE id = 'r1'")
        assert timeout.value.args[0] == 1205
        assert mysql.is_transient(timeout.value) and not mysql.is_rejection(timeout.value)
        await b.rollback()

        # Deadlock: a holds r1 and wants r2, b holds r2 and wants r1.
        await cb.execute("SET SESSION innodb_lock_wait_timeout = 20")
        await cb.execute(f"SELECT * FROM {table} WHERE id = 'r2' FOR UPDATE")
        first = asyncio.create_task(ca.execute(f"UPDATE {table} SET comment = 'a' WHERE id = 'r2'"))
        await asyncio.sleep(0.3)
        results = await asyncio.gather(
            first, cb.execute(f"UPDATE {table} SET comment = 'b' WHERE id = 'r1'"), return_exceptions=True
        )
        deadlocks = [r for r in results if isinstance(r, BaseException)]
        assert len(deadlocks) == 1 and deadlocks[0].args[0] == 1213
        assert mysql.is_transient(deadlocks[0]) and not mysql.is_rejection(deadlocks[0])
    finally:
        a.close()
        b.close()


async def test_mariadb_connection_killed_or_unreachable_is_transient(config, warehouse):
    victim = await _connect(config)
    try:
        killer = await _connect(config)
        async with killer.cursor() as cur:
            await cur.execute("KILL %s", (victim.thread_id(),))
        killer.close()
        with pytest.raises(pymysql.err.MySQLError) as lost:
            async with victim.cursor() as cur:
                await cur.execute("SELECT 1")
        assert mysql.is_transient(lost.value) and not mysql.is_rejection(lost.value)
    finally:
        victim.close()

    from tests.dataplane.conftest import free_port

    with pytest.raises(pymysql.err.OperationalError) as refused:
        await aiomysql.connect(host="127.0.0.1", port=free_port(), user="x", password="y", connect_timeout=2)
    assert mysql.is_transient(refused.value) and not mysql.is_rejection(refused.value)


async def test_mariadb_schema_or_privilege_errors_are_neither_transient_nor_a_rejection(config, warehouse):
    with pytest.raises(pymysql.err.MySQLError) as missing:
        await warehouse._execute("SELECT * FROM `no_such_table_here`")
    assert not mysql.is_transient(missing.value) and not mysql.is_rejection(missing.value)


async def _states(store, expected: dict[str, int]) -> bool:
    return await staging_states(store) == expected


async def _count(collection, n: int) -> bool:
    return await collection.count_documents({}) >= n


# -- a document that kills its worker (OOM) ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_worker_sigkilled_on_one_text_dead_letters_only_that_text(
    mode, services, config, store, warehouse, tiny_model_dir
):
    """A text kills every worker process that holds it (SIGKILL, as the OOM killer does). Claims that did not
    finish come back halved until it is alone; only it is dead-lettered (too_many_attempts), every other
    message of its claims lands once. Fused: its Kafka batch of 8 dies, is released to the lease path after
    its lease (one attempt), and the same halving follows."""
    texts = [f"ordinary text {i}" for i in range(40)]
    texts[5] = "HUGE text that takes all the memory"
    if mode == "fused":
        await create_topic(config, partitions=1)
        await produce(config, [{"id": f"s-{i}", "comment": text} for i, text in enumerate(texts)])
        ids = [f"s-{i}" for i in range(40)]
    else:
        ids = await stage(store, 40, texts=texts)
    worker_config = config.model_copy(update={"lease_seconds": 1.0})
    env = services.worker_env(worker_config) | {
        "POISON_MARKER": "HUGE",
        "CLAIM_SIZE": "8",
        "MAX_ATTEMPTS": "1",
        "WORKER_MODE": mode,
    }
    exits: list[int] = []
    while (not exits or await store.count_backlog()) and len(
        exits
    ) < 20:  # a supervisor restarting the worker
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.dataplane.poison_worker", str(tiny_model_dir), cwd=ROOT, env=env
        )
        exits.append(await asyncio.wait_for(process.wait(), 120))
    kills = exits.count(-signal.SIGKILL)
    assert exits[-1] == 0 and kills == len(exits) - 1
    assert kills == 3 + 1  # claims of 8 -> 4 -> 2 died, then alone once; its next claim alone dead-letters it
    assert sorted(await warehouse_ids(warehouse)) == sorted(set(ids) - {"s-5"})
    assert await staging_states(store) == {"done": 39, "dead_lettered": 1}
    letters = await store.dead_letters.find({}).to_list(None)
    assert [(d["message_id"], d["reason"]) for d in letters] == [("s-5", "too_many_attempts")]


async def test_mongo_server_going_away_mid_stream_is_transient(services, config, store):
    await store.messages.insert_one({"_id": "before"})
    await asyncio.to_thread(services.stop, "mongo")
    try:
        with pytest.raises(Exception) as gone:
            await store.messages.find_one({"_id": "before"})
    finally:
        await asyncio.to_thread(services.start, "mongo")
    assert mongo.is_transient(gone.value) and not mongo.is_rejection(gone.value)


async def test_mariadb_shutting_down_under_a_running_query_is_transient(services, config, warehouse):
    connection = await _connect(config)
    try:
        async with connection.cursor() as cur:
            running = asyncio.create_task(cur.execute("SELECT SLEEP(30)"))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(services.stop, "mysql")
            try:
                with pytest.raises(pymysql.err.MySQLError) as shutdown:
                    await asyncio.wait_for(running, 30)
            finally:
                await asyncio.to_thread(services.start, "mysql")
    finally:
        connection.close()
    assert mysql.is_transient(shutdown.value) and not mysql.is_rejection(shutdown.value), shutdown.value


def test_a_bulk_error_is_a_rejection_only_when_every_write_error_is_about_a_document():
    from pymongo.errors import BulkWriteError

    def bulk_error(*codes: int) -> BulkWriteError:
        return BulkWriteError({"writeErrors": [{"index": i, "code": c} for i, c in enumerate(codes)]})

    assert mongo.is_rejection(bulk_error(17420))
    assert mongo.is_rejection(bulk_error(17420, 11000))  # a racing upsert's duplicate key comes along
    assert not mongo.is_rejection(bulk_error(11000))  # duplicates alone are success, handled by the store
    assert not mongo.is_rejection(bulk_error(17420, 13))  # unauthorized: not about the data
    assert not mongo.is_transient(bulk_error(17420))


# -- refused credentials or rights: a third class, retried slowly, never fatal ----------------------


def classes(adapter: Any, exc: BaseException) -> set[str]:
    """Which classes an adapter puts ``exc`` in (exactly one is expected)."""
    found = {
        "transient": adapter.is_transient(exc),
        "auth": adapter.is_auth_error(exc),
        "rejection": getattr(adapter, "is_rejection", lambda _: False)(exc),
    }
    return {name for name, yes in found.items() if yes}


async def test_mariadb_refusing_the_credentials_or_the_rights_is_an_auth_error(services, config, warehouse):
    """A wrong password (1045 access denied) and a user without the right to write (1142 command denied)
    are neither an outage nor a refused row: the Secret or the grants are wrong."""
    wrong = await mysql.Warehouse.connect(
        config.model_copy(update={"mysql_password": SecretStr("wrong")}), maxsize=1
    )
    try:
        with pytest.raises(pymysql.err.OperationalError) as denied:
            await wrong.ping()
    finally:
        await wrong.close()
    assert denied.value.args[0] == 1045 and "Access denied for user" in str(denied.value)
    assert classes(mysql, denied.value) == {"auth"}

    reader_config = config.model_copy(
        update={
            "mysql_user": services.env["BI_MYSQL_USER"],
            "mysql_password": SecretStr(services.env["BI_MYSQL_PASSWORD"]),
        }
    )
    reader = await mysql.Warehouse.connect(reader_config, maxsize=1)
    try:
        await reader.ping()  # a SELECT-only user: reads work
        with pytest.raises(pymysql.err.MySQLError) as no_right:
            await reader.upsert([row("r1")])
    finally:
        await reader.close()
    assert no_right.value.args[0] == 1142
    assert classes(mysql, no_right.value) == {"auth"}


async def test_mongo_refusing_the_credentials_or_the_rights_is_an_auth_error(auth_mongo, config):
    """Against a SecantusDB started with --auth: a wrong password (18 AuthenticationFailed), no credentials
    and a user without the right to write (13 Unauthorized) are auth errors; the right password works."""
    from pymongo.errors import OperationFailure

    async def error(uri: str) -> OperationFailure:
        store = StagingStore.from_config(
            config.model_copy(update={"mongo_uri": SecretStr(uri), "mongo_database": "stage"})
        )
        try:
            with pytest.raises(OperationFailure) as refused:
                await store.messages.insert_one({"_id": "x"})
        finally:
            store.close()
        return refused.value

    wrong, anonymous, reader = (
        await error(auth_mongo.uri("app", "wrong")),
        await error(auth_mongo.uri()),
        await error(auth_mongo.uri("reader")),
    )
    assert (wrong.code, anonymous.code, reader.code) == (18, 13, 13)
    assert [classes(mongo, e) for e in (wrong, anonymous, reader)] == [{"auth"}] * 3

    right = StagingStore.from_config(
        config.model_copy(update={"mongo_uri": SecretStr(auth_mongo.uri("app")), "mongo_database": "stage"})
    )
    try:
        await right.ensure_indexes()
        await right.ping()
    finally:
        right.close()


async def test_kafka_refusing_the_sasl_settings_is_an_auth_error(config):
    """The local broker has no SASL: a worker configured for SCRAM is refused (UnsupportedSaslMechanism),
    which the probe reports as refused credentials, not as an unreachable broker. aiokafka's other
    authentication/authorization errors are classified the same way."""
    from aiokafka.errors import (
        GroupAuthorizationFailedError,
        KafkaConnectionError,
        SaslAuthenticationFailed,
        TopicAuthorizationFailedError,
    )
    from sentiment_workers.adapters import kafka
    from sentiment_workers.config import KafkaSaslMechanism, KafkaSecurityProtocol

    sasl = config.model_copy(
        update={
            "kafka_security_protocol": KafkaSecurityProtocol.SASL_PLAINTEXT,
            "kafka_sasl_mechanism": KafkaSaslMechanism.SCRAM_SHA_256,
            "kafka_sasl_username": "app",
            "kafka_sasl_password": SecretStr("wrong"),
        }
    )
    with pytest.raises(Exception) as refused:
        await kafka.ping(sasl)
    assert classes(kafka, refused.value) == {"auth"}, refused.value
    for exc in (SaslAuthenticationFailed(), TopicAuthorizationFailedError(), GroupAuthorizationFailedError()):
        assert classes(kafka, exc) == {"auth"}
    assert classes(kafka, KafkaConnectionError("no broker")) == {"transient"}


async def test_refused_credentials_are_retried_slowly_forever_and_recorded_as_auth(metrics):
    """The third class: with_retries does not give up on refused credentials (a person fixes the Secret) and
    records up 0 with kind auth, in words for /readyz, until the store accepts them."""
    from sentiment_workers.retry import with_retries

    denied = pymysql.err.OperationalError(
        1045, "Access denied for user 'app'@'10.0.0.7' (using password: YES)"
    )
    outcomes: list[BaseException | None] = [denied, denied, None]
    seen: list[tuple[float | None, float | None, str | None]] = []

    async def operation() -> str:
        seen.append(
            (
                metrics.registry.get_sample_value("sentiment_store_up", {"store": "mysql"}),
                metrics.registry.get_sample_value(
                    "sentiment_store_error", {"store": "mysql", "kind": "auth"}
                ),
                metrics.store_faults.get("mysql"),
            )
        )
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "done"

    result = await with_retries(
        operation,
        store="mysql",
        is_transient=mysql.is_transient,
        is_auth_error=mysql.is_auth_error,
        metrics=metrics,
        auth_max_wait=0.01,
    )
    assert result == "done"
    assert seen[1][:2] == (0, 1) and seen[2][:2] == (0, 1)
    assert seen[1][2] == (
        "MySQL refused the credentials (OperationalError: (1045, \"Access denied for user 'app'@'10.0.0.7' "
        '(using password: YES)"))'
    )
    assert metrics.registry.get_sample_value("sentiment_store_up", {"store": "mysql"}) == 1
    assert metrics.registry.get_sample_value("sentiment_store_error", {"store": "mysql", "kind": "auth"}) == 0
    assert "mysql" not in metrics.store_faults


# -- batches and rows too large for MariaDB ---------------------------------------------------------


def _mariadb_root(services, sql: str) -> str:
    """Run ``sql`` as MariaDB's root (socket authentication)."""
    import subprocess

    socket = f"--socket={services.env['MYSQL_ROOT_SOCKET']}"
    done = subprocess.run(
        ["mariadb", "--no-defaults", socket, "-uroot", "-N", "-e", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


async def test_a_batch_over_max_allowed_packet_is_written_in_parts_and_only_a_row_over_it_is_refused(
    services, config, warehouse
):
    """MariaDB answers a statement over max_allowed_packet with 1153 (a rejection, not a connection loss that
    would be retried forever): bisection writes the batch in parts that fit, and a row that cannot fit alone
    is dead-lettered alone. Checked with the server's limit lowered to 64 KiB."""
    previous = _mariadb_root(services, "SELECT @@global.max_allowed_packet")
    _mariadb_root(services, "SET GLOBAL max_allowed_packet = 65536")
    try:
        small = await mysql.Warehouse.connect(config, maxsize=1)  # new sessions get the new limit
        rows = [row(f"r{i}", comment="x" * 20_000) for i in range(20)]
        rows.insert(7, row("too-big", comment="y" * 80_000))
        try:
            with pytest.raises(pymysql.err.OperationalError) as over:
                await small.upsert(rows)
            written = await write_isolating(rows, small.upsert, is_rejection=mysql.is_rejection)
        finally:
            await small.close()
    finally:
        _mariadb_root(services, f"SET GLOBAL max_allowed_packet = {int(previous)}")
    assert over.value.args[0] == 1153 and classes(mysql, over.value) == {"rejection"}
    assert [(r.id, e.args[0]) for r, e in written.rejected] == [("too-big", 1153)]
    assert sorted(await warehouse_ids(warehouse)) == sorted(f"r{i}" for i in range(20))


async def test_a_row_too_large_for_one_statement_is_refused_before_it_is_sent(warehouse):
    """A statement over 16 MiB (one protocol packet) can make MariaDB drop the connection mid-statement
    ("Packet sequence number wrong", seen with a 20 MB row), which looks transient: the worker would retry
    the same batch forever. Such a row (possible with a large SENTIMENT_MAX_MESSAGE_BYTES) is refused before
    it is sent (RowTooLarge, a rejection): dead-lettered alone, the others written."""
    huge = row("huge", comment="z" * 9_000_000, raw_json={"comment": "z" * 9_000_000})
    with pytest.raises(mysql.RowTooLarge) as refused:
        await warehouse.upsert([row("a"), huge, row("b")])
    assert classes(mysql, refused.value) == {"rejection"} and "'huge'" in str(refused.value)
    written = await write_isolating(
        [row("a"), huge, row("b")], warehouse.upsert, is_rejection=mysql.is_rejection
    )
    assert [r.id for r, _ in written.rejected] == ["huge"]
    assert sorted(await warehouse_ids(warehouse)) == ["a", "b"]
