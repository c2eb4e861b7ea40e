"""The curated table's columns: one table of truth for the Arrow schema, the Delta table, docs/export.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARTITION_COLUMN = "ingest_date"
MERGE_KEY = "id"


@dataclass(frozen=True)
class Column:
    name: str
    arrow_type: str
    nullable: bool
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("id", "string", False, "Message id (the fact table's primary key); the merge key."),
    Column("user_id", "string", True, "Author id, when the message had one."),
    Column("comment", "string", False, "The text exactly as it landed in the fact table (original)."),
    Column(
        "comment_clean",
        "string",
        False,
        "The text with mojibake repaired (ftfy) and HTML entities unescaped.",
    ),
    Column("ingest_ts", "timestamp[us, UTC]", False, "When the consumer staged the message (UTC)."),
    Column(PARTITION_COLUMN, "date32", False, "UTC day of ingest_ts: the partition column."),
    Column("sentiment_label", "string", False, "Predicted label (from the model's own label names)."),
    Column("sentiment_score", "double", False, "Probability of the predicted label, 0..1."),
    Column("model", "string", False, "Model id that classified it: name@weights-hash/backend."),
    Column("processed_at", "timestamp[us, UTC]", False, "When the row was (last) written to the fact table."),
    Column("raw_json", "string", True, "The original message as JSON text."),
)


def arrow_schema() -> Any:
    """The pyarrow schema of the curated table."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "double": pa.float64(),
        "date32": pa.date32(),
        "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(c.name, types[c.arrow_type], nullable=c.nullable) for c in COLUMNS])


def markdown_table() -> str:
    """The columns as a Markdown table (docs/export.md carries a copy; a test keeps the two equal)."""
    lines = ["| column | type | null | meaning |", "| --- | --- | --- | --- |"]
    for c in COLUMNS:
        lines.append(f"| `{c.name}` | {c.arrow_type} | {'yes' if c.nullable else 'no'} | {c.description} |")
    return "\n".join(lines)
