"""Changed rows of the fact table, read through the MySQL adapter's connection pool in one ordered scan."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Any

from sentiment_workers.adapters.mysql import Warehouse, quote_identifier

SELECTED = (
    "id",
    "user_id",
    "comment",
    "ingest_ts",
    "sentiment_label",
    "sentiment_score",
    "model",
    "processed_at",
    "raw_json",
)


def changed_rows_sql(table: str, *, since: bool) -> str:
    """Rows written at or after ``%s`` (or all), oldest write first: the order the watermark advances in."""
    where = " WHERE processed_at >= %s" if since else ""
    return f"SELECT {', '.join(SELECTED)} FROM {quote_identifier(table)}{where} ORDER BY processed_at, id"


async def changed_rows(
    warehouse: Warehouse, since: datetime | None, batch_size: int
) -> AsyncGenerator[list[Sequence[Any]], None]:
    """Batches of rows (columns in :data:`SELECTED` order) with ``processed_at >= since``.

    One unbuffered (server-side) cursor: a single scan of a consistent InnoDB snapshot, ``batch_size`` rows in
    memory at a time, whatever the size of the table.
    """
    import aiomysql

    conn = await warehouse.pool.acquire()
    try:
        async with conn.cursor(aiomysql.SSCursor) as cur:
            await cur.execute(
                changed_rows_sql(warehouse.table, since=since is not None),
                None if since is None else (since,),
            )
            while rows := await cur.fetchmany(batch_size):
                yield list(rows)
        await conn.commit()
    except BaseException:
        conn.close()
        raise
    finally:
        warehouse.pool.release(conn)
