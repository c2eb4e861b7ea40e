"""The Delta side: create the partitioned table, merge batches on id, keep the watermark in the same commit.

The watermark is a Delta *application transaction* (``txn`` action, app id :data:`WATERMARK_APP_ID`, version =
the newest ``processed_at`` exported, in microseconds since the epoch): it is written atomically with the rows
it covers, so a crash between two batches never advances it past rows that did not land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sentiment_workers.export.clean import clean_text
from sentiment_workers.export.schema import MERGE_KEY, PARTITION_COLUMN, arrow_schema
from sentiment_workers.export.source import SELECTED

WATERMARK_APP_ID = "sentiment-pipeline-export"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    unchanged: int


def to_micros(moment: datetime) -> int:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """Naive UTC, as MySQL DATETIME values are."""
    return (_EPOCH + timedelta(microseconds=micros)).replace(tzinfo=None)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_arrow(rows: Sequence[Sequence[Any]]) -> Any:
    """Fact-table rows (:data:`SELECTED` order) -> an Arrow table of the curated schema."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in arrow_schema().names}
    for row in rows:
        record = dict(zip(SELECTED, row, strict=True))
        ingest = _utc(record["ingest_ts"])
        raw = record["raw_json"]
        columns["id"].append(record["id"])
        columns["user_id"].append(record["user_id"])
        columns["comment"].append(record["comment"])
        columns["comment_clean"].append(clean_text(record["comment"]))
        columns["ingest_ts"].append(ingest)
        columns[PARTITION_COLUMN].append(ingest.date())
        columns["sentiment_label"].append(record["sentiment_label"])
        columns["sentiment_score"].append(float(record["sentiment_score"]))
        columns["model"].append(record["model"])
        columns["processed_at"].append(_utc(record["processed_at"]))
        columns["raw_json"].append(raw.decode() if isinstance(raw, bytes) else raw)
    return pa.Table.from_pydict(columns, schema=arrow_schema())


class DeltaSink:
    """One curated Delta table at ``uri`` (a local path or an object-store URL: s3://, az://, gs://, ...)."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options or None

    def table(self) -> Any:
        """The table, created (empty, partitioned by day) when missing."""
        from deltalake import DeltaTable

        if DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options):
            return DeltaTable(self.uri, storage_options=self.storage_options)
        return DeltaTable.create(
            self.uri,
            arrow_schema(),
            mode="ignore",  # another exporter created it first: use theirs
            partition_by=[PARTITION_COLUMN],
            name="dw_messages_curated",
            description="Curated sentiment fact table (sentiment-pipeline export)",
            storage_options=self.storage_options,
        )

    def watermark(self) -> datetime | None:
        """The newest ``processed_at`` already exported (naive UTC), or None before the first export."""
        version = self.table().transaction_version(WATERMARK_APP_ID)
        return None if version is None else from_micros(int(version))

    def merge(self, rows: Sequence[Sequence[Any]]) -> MergeCounts:
        """Upsert ``rows`` by id and advance the watermark to their newest ``processed_at``, in one commit.

        A row already there is rewritten only when its ``processed_at`` differs (it was re-processed or
        replayed); an identical re-export changes nothing.
        """
        from deltalake import CommitProperties, Transaction

        source = to_arrow(rows)
        newest = max(_utc(r[SELECTED.index("processed_at")]) for r in rows)
        table = self.table()
        previous = table.transaction_version(WATERMARK_APP_ID)
        watermark = max(to_micros(newest), int(previous or 0))
        commit = CommitProperties(
            custom_metadata={"exporter": WATERMARK_APP_ID, "watermark": from_micros(watermark).isoformat()},
            app_transactions=[Transaction(WATERMARK_APP_ID, watermark)],
        )
        result = (
            table.merge(
                source,
                predicate=f"t.{MERGE_KEY} = s.{MERGE_KEY}",
                source_alias="s",
                target_alias="t",
                commit_properties=commit,
            )
            .when_matched_update_all(predicate="s.processed_at <> t.processed_at")
            .when_not_matched_insert_all()
            .execute()
        )
        inserted = int(result.get("num_target_rows_inserted", 0))
        updated = int(result.get("num_target_rows_updated", 0))
        return MergeCounts(inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated)
