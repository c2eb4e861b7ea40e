"""The MySQL fact table on a real MariaDB: idempotent schema and upserts, one transaction per batch, a
read-only BI user, validated identifiers, the dashboard numbers."""

from __future__ import annotations

from datetime import datetime

import pymysql
import pytest
from pydantic import SecretStr, ValidationError
from sentiment_workers.adapters.mysql import Warehouse, WarehouseRow, quote_identifier
from sentiment_workers.config import WorkerConfig


def row(i: int, label: str = "positive", score: float = 0.9, day: int = 1) -> WarehouseRow:
    return WarehouseRow(
        id=f"id-{i}",
        user_id=f"u{i}",
        comment=f"comment {i} ✓",
        ingest_ts=datetime(2024, 5, day, 12, 0, 0, 123000),
        sentiment_label=label,
        sentiment_score=score,
        raw_json={"id": f"id-{i}", "nested": {"n": i}},
        model="tiny@test/torch",
        processed_at=datetime(2024, 5, day, 12, 0, 1),
    )


async def test_schema_and_upserts_are_idempotent(warehouse):
    await warehouse.ensure_schema()
    await warehouse.ensure_schema()
    await warehouse.upsert([row(i) for i in range(10)])
    await warehouse.upsert([row(i, label="negative", score=0.6) for i in range(5, 15)])
    assert await warehouse.count() == 15
    labels = dict(await warehouse._execute(f"SELECT id, sentiment_label FROM `{warehouse.table}`"))
    assert labels["id-0"] == "positive" and labels["id-5"] == "negative" and labels["id-14"] == "negative"


async def test_a_batch_is_one_transaction(warehouse):
    bad = row(3, score=1.5)  # violates the 0..1 check constraint
    with pytest.raises(pymysql.err.OperationalError):
        await warehouse.upsert([row(1), row(2), bad, row(4)])
    assert await warehouse.count() == 0
    await warehouse.upsert([row(1), row(2)])  # the pool still works after the failure
    assert await warehouse.count() == 2


async def test_report_numbers(warehouse):
    await warehouse.upsert(
        [
            row(1, "positive", day=1),
            row(2, "negative", day=1),
            row(3, "negative", day=2),
            row(4, "neutral", day=3),
        ]
    )
    report = await warehouse.report()
    assert report.total == 4
    assert report.by_label == {"negative": 2, "neutral": 1, "positive": 1}
    assert [(d.isoformat(), n) for d, n in report.per_day] == [
        ("2024-05-01", 2),
        ("2024-05-02", 1),
        ("2024-05-03", 1),
    ]


async def test_bi_user_can_read_but_not_write(services, config, warehouse):
    await warehouse.upsert([row(1)])
    bi = await Warehouse.connect(
        config.model_copy(
            update={
                "mysql_user": services.env["BI_MYSQL_USER"],
                "mysql_password": SecretStr(services.env["BI_MYSQL_PASSWORD"]),
            }
        )
    )
    try:
        assert (await bi.report()).total == 1
        with pytest.raises(pymysql.err.OperationalError) as denied:
            await bi.upsert([row(2)])
        assert denied.value.args[0] == 1142  # INSERT command denied
    finally:
        await bi.close()


def test_table_names_are_validated():
    with pytest.raises(ValidationError):
        WorkerConfig(mysql_table="dw`; DROP TABLE users; --")
    with pytest.raises(ValueError):
        quote_identifier("a-b")
    assert quote_identifier("dw_messages") == "`dw_messages`"


async def test_a_table_that_vanished_is_recreated_by_the_next_batch(warehouse):
    """MySQL back without its data (an emptyDir, a restore without the table, a DROP by hand): the next upsert
    creates the table and writes the batch, instead of failing the worker (whose claim would then wait out its
    lease before anyone retried it)."""
    await warehouse.upsert([row(i) for i in range(3)])
    await warehouse._execute(f"DROP TABLE `{warehouse.table}`")
    await warehouse.upsert([row(i) for i in range(3, 8)])
    ids = {r[0] for r in await warehouse._execute(f"SELECT id FROM `{warehouse.table}`")}
    assert ids == {f"id-{i}" for i in range(3, 8)}
