"""The curated Delta export against a real MariaDB: read back by an independent reader (the Delta log replayed
by hand, Parquet read by DuckDB), partitioned by day, cleaned text next to the original, incremental by
watermark, and idempotent across re-runs, replays and late commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

from sentiment_workers.adapters.mysql import Warehouse, WarehouseRow
from sentiment_workers.config import WorkerConfig
from sentiment_workers.export.delta import WATERMARK_APP_ID, to_micros
from sentiment_workers.export.run import export_table
from sentiment_workers.export.schema import COLUMNS, markdown_table

from tests.batch.delta_reader import live_files, read_rows, transaction_versions

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 9, 0, 0)
# "doesn't" with a curly apostrophe, mis-decoded as cp1252 twice (what ftfy's own docs show), and entities.
MOJIBAKE = "The Mona Lisa doesn\u2019t".encode().decode("cp1252").encode().decode("cp1252")
MOJIBAKE += " have eyebrows &amp; I &lt;3 it"


def fact(
    i: int, *, label: str = "positive", processed: datetime | None = None, comment: str = ""
) -> WarehouseRow:
    """Row ``i``: ingested on one of three days, processed a minute after its ingestion unless told."""
    ingest = T0 + timedelta(days=i % 3, minutes=i)
    return WarehouseRow(
        id=f"msg-{i:04d}",
        user_id=None if i % 5 == 0 else f"user-{i % 7}",
        comment=comment or f"message {i} &quot;quoted&quot; café",
        ingest_ts=ingest,
        sentiment_label=label,
        sentiment_score=0.75,
        raw_json={"id": f"msg-{i:04d}", "text": comment or f"message {i}"},
        model="tiny@00000000/torch",
        processed_at=processed or ingest + timedelta(minutes=1),
    )


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


async def test_first_export_writes_every_row_partitioned_by_day_with_clean_text(
    fact_table: Warehouse, mysql_config: WorkerConfig, delta_dir: Path
) -> None:
    await fact_table.upsert([fact(i) for i in range(1, 60)] + [fact(60, comment=MOJIBAKE)])

    summary = await export_table(mysql_config, str(delta_dir), batch_rows=25)

    rows = read_rows(delta_dir)
    assert summary.read == summary.inserted == len(rows) == 60
    assert summary.updated == 0 and summary.table_rows == 60
    assert len({r["id"] for r in rows}) == 60
    # One folder per UTC ingest day; the partition value is the day of ingest_ts.
    days = Counter(r["ingest_date"] for r in rows)
    assert days == {"2024-05-01": 20, "2024-05-02": 20, "2024-05-03": 20}
    assert {Path(p).parts[0] for p in live_files(delta_dir)} == {
        "ingest_date=2024-05-01",
        "ingest_date=2024-05-02",
        "ingest_date=2024-05-03",
    }
    for r in rows:
        assert date.fromisoformat(r["ingest_date"]) == r["ingest_ts"].date()
    # The original text is kept; the clean one has mojibake repaired and HTML entities unescaped.
    row = by_id(rows)["msg-0060"]
    assert row["comment"] == MOJIBAKE
    assert row["comment_clean"] == "The Mona Lisa doesn't have eyebrows & I <3 it"
    assert by_id(rows)["msg-0001"]["comment_clean"] == 'message 1 "quoted" café'
    assert by_id(rows)["msg-0005"]["user_id"] is None
    assert json.loads(by_id(rows)["msg-0007"]["raw_json"]) == {"id": "msg-0007", "text": "message 7"}
    # Columns in the documented order; the watermark is the newest processed_at, in the log's txn action.
    assert list(rows[0]) == [c.name for c in COLUMNS if c.name != "ingest_date"] + ["ingest_date"]
    newest = max(fact(i).processed_at for i in range(1, 61))
    assert summary.watermark == newest
    assert transaction_versions(delta_dir) == {WATERMARK_APP_ID: to_micros(newest)}


async def test_re_running_the_export_changes_nothing(
    fact_table: Warehouse, mysql_config: WorkerConfig, delta_dir: Path
) -> None:
    await fact_table.upsert([fact(i) for i in range(1, 91)])
    first = await export_table(mysql_config, str(delta_dir))
    files = live_files(delta_dir)

    second = await export_table(mysql_config, str(delta_dir))
    third = await export_table(mysql_config, str(delta_dir), full=True)

    assert first.inserted == 90
    # Incremental: only the overlap window before the watermark is read again (rows of the last 10 minutes).
    assert 0 < second.read < 90 and third.read == 90
    assert second.inserted == second.updated == third.inserted == third.updated == 0
    rows = read_rows(delta_dir)
    assert len(rows) == len({r["id"] for r in rows}) == 90
    assert live_files(delta_dir) == files  # not one file rewritten


async def test_a_replay_updates_rows_in_place_and_only_changed_rows_are_read(
    fact_table: Warehouse, mysql_config: WorkerConfig, delta_dir: Path
) -> None:
    await fact_table.upsert([fact(i) for i in range(1, 101)])
    await export_table(mysql_config, str(delta_dir), overlap=timedelta(0))

    # Dead letters replayed: ten messages classified again (a new label, a later processed_at), five new ones.
    later = T0 + timedelta(days=10)
    replayed = [fact(i, label="negative", processed=later) for i in range(1, 11)]
    fresh = [fact(i, processed=later) for i in range(101, 106)]
    await fact_table.upsert(replayed + fresh)
    summary = await export_table(mysql_config, str(delta_dir), overlap=timedelta(0))

    # Read: the 15 changed rows and the one at the watermark itself (``>=``: ties are never skipped).
    assert (summary.read, summary.inserted, summary.updated, summary.unchanged) == (16, 5, 10, 1)
    rows = read_rows(delta_dir)
    assert len(rows) == len({r["id"] for r in rows}) == 105 == await fact_table.count()
    labels = Counter(r["sentiment_label"] for r in rows)
    assert labels == {"positive": 95, "negative": 10}
    assert by_id(rows)["msg-0003"]["processed_at"].replace(tzinfo=None) == later

    # The same replay again (the worker re-processed the same batch): still no duplicate.
    again_later = later + timedelta(seconds=1)
    await fact_table.upsert([fact(i, label="negative", processed=again_later) for i in range(1, 11)])
    again = await export_table(mysql_config, str(delta_dir), overlap=timedelta(0))
    assert (again.inserted, again.updated) == (0, 10)
    assert len(read_rows(delta_dir)) == 105


async def test_a_row_committed_late_within_the_overlap_is_not_missed(
    fact_table: Warehouse, mysql_config: WorkerConfig, delta_dir: Path
) -> None:
    await fact_table.upsert([fact(i) for i in range(1, 21)])
    first = await export_table(mysql_config, str(delta_dir))
    assert first.watermark is not None
    # A worker stamped processed_at before the export ran, but its transaction committed after it.
    late = fact(500, processed=first.watermark - timedelta(minutes=3))
    await fact_table.upsert([late])

    summary = await export_table(mysql_config, str(delta_dir))

    assert summary.inserted == 1
    assert summary.watermark == first.watermark  # never moves backwards
    assert {r["id"] for r in read_rows(delta_dir)} == {f"msg-{i:04d}" for i in (*range(1, 21), 500)}


async def test_an_empty_fact_table_exports_an_empty_readable_table(
    fact_table: Warehouse, mysql_config: WorkerConfig, delta_dir: Path
) -> None:
    summary = await export_table(mysql_config, str(delta_dir))
    assert (summary.read, summary.table_rows, summary.watermark) == (0, 0, None)
    assert read_rows(delta_dir) == []
    # the schema is there for readers even before the first row
    schema = json.loads(
        next(
            line
            for line in (delta_dir / "_delta_log" / "00000000000000000000.json").read_text().splitlines()
            if '"metaData"' in line
        )
    )["metaData"]
    assert schema["partitionColumns"] == ["ingest_date"]
    assert [f["name"] for f in json.loads(schema["schemaString"])["fields"]] == [c.name for c in COLUMNS]


def _cli(config: WorkerConfig, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    for key in ("mysql_host", "mysql_port", "mysql_user", "mysql_database", "mysql_table"):
        env[f"SENTIMENT_{key.upper()}"] = str(getattr(config, key))
    env["SENTIMENT_MYSQL_PASSWORD"] = config.mysql_password.get_secret_value()
    env["SENTIMENT_LOG_LEVEL"] = "WARNING"
    return subprocess.run(
        [sys.executable, "-c", "from sentiment_workers.cli import main; main()", "export", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_exports_to_a_file_url_and_prints_a_summary(
    fact_table: Warehouse, mysql_config: WorkerConfig, delta_dir: Path
) -> None:
    await fact_table.upsert([fact(i) for i in range(1, 31)])

    done = _cli(mysql_config, "--to", delta_dir.as_uri())

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["read"], summary["inserted"], summary["table_rows"]) == (30, 30, 30)
    assert len(read_rows(delta_dir)) == 30


async def test_cli_errors_are_one_line(mysql_config: WorkerConfig, delta_dir: Path) -> None:
    bad_option = _cli(mysql_config, "--to", str(delta_dir), "--storage-option", "no-equals-sign")
    assert bad_option.returncode == 2
    assert bad_option.stderr.strip().count("\n") == 0 and "KEY=VALUE" in bad_option.stderr

    a_file = delta_dir.parent / "not-a-directory"
    a_file.parent.mkdir(parents=True, exist_ok=True)
    a_file.write_text("")
    unwritable = _cli(mysql_config, "--to", str(a_file / "table"))
    assert unwritable.returncode == 1
    assert unwritable.stderr.startswith("error: ") and unwritable.stderr.strip().count("\n") == 0

    unreachable = _cli(mysql_config.model_copy(update={"mysql_port": 1}), "--to", str(delta_dir))
    assert unreachable.returncode == 1
    assert unreachable.stderr.strip().startswith("error: cannot reach MySQL")
    assert "Traceback" not in unreachable.stderr


def test_the_documented_schema_is_the_schema_written() -> None:
    assert markdown_table() in (ROOT / "docs" / "export.md").read_text()
