"""An independent reader of a Delta table for the tests: replays the JSON commits of ``_delta_log`` (add and
remove actions) and reads the live Parquet files with DuckDB's own Parquet reader; partition values come from
the log, as the Delta protocol says. Nothing of delta-rs is used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb


def live_files(table: Path) -> dict[str, dict[str, str | None]]:
    """Relative path -> partition values of every file the latest version holds."""
    files: dict[str, dict[str, str | None]] = {}
    log = sorted((table / "_delta_log").glob("*.json"))
    assert log, f"no Delta log in {table}"
    assert not list((table / "_delta_log").glob("*.checkpoint*.parquet")), "checkpoints are not read here"
    for commit in log:
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                files[unquote(action["add"]["path"])] = action["add"]["partitionValues"]
            elif "remove" in action:
                files.pop(unquote(action["remove"]["path"]), None)
    return files


def read_rows(table: Path) -> list[dict[str, Any]]:
    """Every row of the latest version, partition columns included, as dicts."""
    rows: list[dict[str, Any]] = []
    con = duckdb.connect()
    try:
        for path, partition in live_files(table).items():
            result = con.execute("SELECT * FROM read_parquet(?)", [str(table / path)])
            names = [d[0] for d in result.description]
            for values in result.fetchall():
                rows.append({**dict(zip(names, values, strict=True)), **partition})
    finally:
        con.close()
    return rows


def transaction_versions(table: Path) -> dict[str, int]:
    """The ``txn`` actions of the log: app id -> latest version."""
    versions: dict[str, int] = {}
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                versions[action["txn"]["appId"]] = int(action["txn"]["version"])
    return versions
