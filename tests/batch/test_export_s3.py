"""The curated Delta export on an S3 URL, against a real S3 protocol server (moto, tests/s3_server.py) and the
real MariaDB fact table: `sentiment-pipeline export --to s3://bucket/table` configured the way an operator
configures it for S3 or MinIO (the standard AWS_* variables, or ``--storage-option``), read back without
delta-rs (the objects downloaded with boto3, the Delta log replayed by hand, the Parquet read by DuckDB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deltalake.exceptions import CommitFailedError
from sentiment_workers.adapters.mysql import Warehouse, WarehouseRow
from sentiment_workers.config import WorkerConfig
from sentiment_workers.export.delta import WATERMARK_APP_ID, DeltaSink, to_arrow
from sentiment_workers.export.run import export_table
from sentiment_workers.export.source import SELECTED

from tests import s3_server as s3
from tests.batch.delta_reader import read_rows, transaction_versions
from tests.batch.test_export import fact
from tests.dataplane.conftest import ROOT

s3_server = s3.s3_server


def export_cli(
    config: WorkerConfig, *args: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``sentiment-pipeline export ARGS`` in a fresh process: MySQL from SENTIMENT_MYSQL_*, plus ``env``;
    returns the process and its one-line JSON summary."""
    process_env = {"PATH": "/usr/bin:/bin", "SENTIMENT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), **env}
    for key in ("mysql_host", "mysql_port", "mysql_user", "mysql_database", "mysql_table"):
        process_env[f"SENTIMENT_{key.upper()}"] = str(getattr(config, key))
    process_env["SENTIMENT_MYSQL_PASSWORD"] = config.mysql_password.get_secret_value()
    done = subprocess.run(
        [sys.executable, "-c", "from sentiment_workers.cli import main; main()", "export", *args],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def download(server: s3.S3Server, prefix: str, into: Path) -> dict[str, dict[str, Any]]:
    """Every object of the table (log and Parquet files) copied to ``into`` by boto3; returns the listing."""
    listing = server.objects(prefix)
    for key in listing:
        target = into / key.removeprefix(f"{prefix}/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(server.read(key))
    return listing


def data_files(listing: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Parquet key -> ETag: a rewritten or added data file changes this map."""
    return {key: entry["ETag"] for key, entry in listing.items() if key.endswith(".parquet")}


async def test_export_to_an_s3_url_configured_by_the_aws_environment_writes_each_row_once(
    s3_server: s3.S3Server, fact_table: Warehouse, mysql_config: WorkerConfig, tmp_path: Path
) -> None:
    await fact_table.upsert([fact(i) for i in range(1, 121)])
    prefix = s3_server.prefix("curated")
    url = f"s3://{s3_server.bucket}/{prefix}"

    _, first = export_cli(mysql_config, "--to", url, "--batch-rows", "50", env=s3_server.env())
    after_first = download(s3_server, prefix, tmp_path / "first")
    _, second = export_cli(mysql_config, "--to", url, "--batch-rows", "50", env=s3_server.env())
    after_second = download(s3_server, prefix, tmp_path / "second")

    # First run: every row of the fact table, in three merge commits of at most 50 rows.
    assert (first["read"], first["inserted"], first["updated"], first["table_rows"]) == (120, 120, 0, 120)
    assert first["uri"] == url and first["table_version"] == 3  # 0 = create, then 1..3 = the batches
    rows = read_rows(tmp_path / "first")
    assert len(rows) == len({r["id"] for r in rows}) == 120 == await fact_table.count()
    assert {r["ingest_date"] for r in rows} == {"2024-05-01", "2024-05-02", "2024-05-03"}
    assert all(key.startswith(f"{prefix}/ingest_date=") for key in data_files(after_first))
    assert transaction_versions(tmp_path / "first")[WATERMARK_APP_ID] > 0

    # Re-run: nothing written; the same rows, no duplicate, not one data file added or rewritten.
    assert (second["inserted"], second["updated"], second["table_rows"]) == (0, 0, 120)
    again = read_rows(tmp_path / "second")
    assert len(again) == len({r["id"] for r in again}) == 120
    assert data_files(after_second) == data_files(after_first)


async def test_export_to_s3_with_storage_options_only(
    s3_server: s3.S3Server, fact_table: Warehouse, mysql_config: WorkerConfig, tmp_path: Path
) -> None:
    """No AWS_* variable in the process: endpoint, credentials, region and plain HTTP given as
    ``--storage-option`` (delta-rs keys), as for a MinIO reached from a laptop."""
    await fact_table.upsert([fact(i) for i in range(1, 31)])
    prefix = s3_server.prefix("options")
    options = [
        arg for k, v in s3_server.storage_options().items() for arg in ("--storage-option", f"{k}={v}")
    ]

    _, summary = export_cli(mysql_config, "--to", f"s3://{s3_server.bucket}/{prefix}", *options, env={})

    download(s3_server, prefix, tmp_path / "table")
    rows = read_rows(tmp_path / "table")
    assert (summary["inserted"], summary["table_rows"]) == (30, 30)
    assert len(rows) == len({r["id"] for r in rows}) == 30


async def test_a_writer_working_from_a_stale_version_never_overwrites_a_commit_on_s3(
    s3_server: s3.S3Server, fact_table: Warehouse, mysql_config: WorkerConfig, tmp_path: Path
) -> None:
    """Two exporters on one table (which docs/export.md advises against): the one that read the table before
    the other committed does not replace the other's commit file. delta-rs writes each commit with a
    conditional PUT (``If-None-Match: *``); the server refuses it when that version exists, and the late
    writer re-reads the log, finds that the other's commit added data where its merge read, and fails: the
    other's commit is never lost (the guarantee docs/export.md relies on for S3)."""
    prefix = s3_server.prefix("two-writers")
    url = f"s3://{s3_server.bucket}/{prefix}"
    options = s3_server.storage_options()
    await fact_table.upsert([fact(i) for i in range(1, 21)])
    await export_table(mysql_config, url, storage_options=options)  # version 1
    stale = DeltaSink(url, options).table()  # a second exporter reads version 1 ...

    await fact_table.upsert([fact(i) for i in range(21, 41)])
    winner = await export_table(mysql_config, url, storage_options=options, full=True)  # ... then 2
    winner_commit = s3_server.read(f"{prefix}/_delta_log/{2:020d}.json")

    late = to_arrow([selected(fact(i)) for i in range(41, 46)])  # rows the winner never saw
    merge = stale.merge(late, predicate="t.id = s.id", source_alias="s", target_alias="t")

    # The late merge read version 1: it tries version 2, is refused, sees new data where it read, and fails.
    with pytest.raises(CommitFailedError, match="concurrent"):
        merge.when_not_matched_insert_all().execute()

    assert winner.table_version == 2 and winner.inserted == 20
    assert s3_server.read(f"{prefix}/_delta_log/{2:020d}.json") == winner_commit, "commit 2 kept intact"
    assert f"{prefix}/_delta_log/{3:020d}.json" not in s3_server.objects(prefix)
    download(s3_server, prefix, tmp_path / "table")
    rows = read_rows(tmp_path / "table")
    assert len(rows) == len({r["id"] for r in rows}) == 40


def selected(row: WarehouseRow) -> tuple[Any, ...]:
    """A fact-table row as the export's MySQL scan returns it (:data:`SELECTED` order, JSON as text)."""
    values = {**row.__dict__, "raw_json": json.dumps(row.raw_json)}
    return tuple(values[name] for name in SELECTED)
