"""One export run: read the watermark, scan the fact table's changed rows, merge them batch by batch."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from sentiment_workers.config import WorkerConfig
from sentiment_workers.export.delta import DeltaSink

log = structlog.get_logger("sentiment_workers.export")

DEFAULT_OVERLAP = timedelta(minutes=10)
"""How far before the watermark each run re-reads. A worker stamps ``processed_at`` before its transaction
commits, so a row can become visible after newer rows were exported; re-reading a window is free of
duplicates (merge on id) and catches it."""
DEFAULT_BATCH_ROWS = 20_000


@dataclass(frozen=True)
class ExportSummary:
    uri: str
    since: datetime | None
    watermark: datetime | None
    read: int
    inserted: int
    updated: int
    unchanged: int
    table_version: int
    table_rows: int


async def export_table(
    config: WorkerConfig,
    uri: str,
    *,
    storage_options: dict[str, str] | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    full: bool = False,
) -> ExportSummary:
    """Export rows new or changed since the last run (every row with ``full``) to the Delta table ``uri``."""
    import asyncio

    from sentiment_workers.adapters.mysql import Warehouse
    from sentiment_workers.export.source import changed_rows

    sink = DeltaSink(uri, storage_options)
    watermark = await asyncio.to_thread(sink.watermark)
    since = None if full or watermark is None else watermark - overlap
    log.info("export_start", uri=uri, watermark=watermark, since=since)
    read = inserted = updated = unchanged = 0
    warehouse = await Warehouse.connect(config, maxsize=1)
    try:
        # aclosing: a failed merge closes the scan (and its connection) now, before the pool is closed.
        async with aclosing(changed_rows(warehouse, since, batch_rows)) as batches:
            async for rows in batches:
                counts = await asyncio.to_thread(sink.merge, rows)
                read += len(rows)
                inserted += counts.inserted
                updated += counts.updated
                unchanged += counts.unchanged
                log.info("export_batch", rows=len(rows), inserted=counts.inserted, updated=counts.updated)
    finally:
        await warehouse.close()
    table = await asyncio.to_thread(sink.table)
    summary = ExportSummary(
        uri=uri,
        since=since,
        watermark=await asyncio.to_thread(sink.watermark),
        read=read,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        table_version=int(table.version()),
        table_rows=int(table.count()),
    )
    log.info("export_done", **{k: str(v) for k, v in summary.__dict__.items()})
    return summary
