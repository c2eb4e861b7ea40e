"""Any labelled text-classification data set: read from a path or URL, split per label, reproducibly."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from sentiment_workers.training.dataset import Example, Split

_SPACES = re.compile(r"\s+")
FORMATS = ("csv", "tsv", "jsonl", "parquet")


class DataError(ValueError):
    """The data set cannot be used: unreadable, a column missing, too few examples of a label."""


def data_format(location: str) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet``, from the name's extension (``.gz`` etc. not supported)."""
    name = location.split("?", 1)[0].lower()
    for ext, fmt in (
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".parquet", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    raise DataError(f"{location}: unknown data format (use one of .csv, .tsv, .jsonl, .parquet)")


def _read_bytes(location: str) -> bytes:
    """A local path, or any URL fsspec opens (file://, s3://, gs://, az://, http(s)://)."""
    if "://" not in location:
        try:
            return Path(location).expanduser().read_bytes()
        except OSError as exc:
            raise DataError(f"{location}: {exc.strerror or exc}") from None
    import fsspec

    try:
        with fsspec.open(location, "rb") as handle:
            return bytes(handle.read())
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"{location}: {type(exc).__name__}: {exc}") from None


def _records(raw: bytes, fmt: str, location: str) -> Iterable[dict[str, object]]:
    if fmt in ("csv", "tsv"):
        text = raw.decode("utf-8-sig", errors="replace")
        return csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t")
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataError(f"{location} line {number}: not JSON ({exc})") from None
        return rows
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(raw)).to_pylist()


def load_labelled(location: str, text_column: str, label_column: str) -> list[Example]:
    """Non-empty (text, label) pairs, whitespace-normalised; a text seen with several labels keeps the
    commonest (the same rule as the default corpus), so no text is in both train and validation."""
    fmt = data_format(location)
    votes: dict[str, Counter[str]] = {}
    seen_columns = False
    for record in _records(_read_bytes(location), fmt, location):
        if not seen_columns:
            missing = [c for c in (text_column, label_column) if c not in record]
            if missing:
                raise DataError(
                    f"{location}: no column {missing[0]!r} (columns: {', '.join(map(str, record))})"
                )
            seen_columns = True
        text = _SPACES.sub(" ", str(record.get(text_column) or "")).strip()
        label = str(record.get(label_column) or "").strip()
        if text and label:
            votes.setdefault(text, Counter())[label] += 1
    examples = [Example(text, counts.most_common(1)[0][0], 1.0) for text, counts in votes.items()]
    if not examples:
        raise DataError(f"{location}: no labelled rows")
    return examples


def label_names(examples: Iterable[Example]) -> list[str]:
    """The labels, sorted: class id order of every model trained on them."""
    return sorted({e.label for e in examples})


def split_by_label(examples: list[Example], validation_fraction: float, seed: int) -> Split:
    """Hold out ``validation_fraction`` of each label (at least one), shuffled with ``seed``."""
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {validation_fraction}")
    labels = label_names(examples)
    if len(labels) < 2:
        raise DataError(f"a classifier needs at least two labels, the data has {labels}")
    rng = random.Random(seed)  # noqa: S311 - seeded for reproducibility, not security
    train: list[Example] = []
    validation: list[Example] = []
    for label in labels:
        group = sorted((e for e in examples if e.label == label), key=lambda e: e.text)
        if len(group) < 2:
            raise DataError(
                f"label {label!r} has {len(group)} example: at least 2 are needed to hold one out"
            )
        rng.shuffle(group)
        cut = min(len(group) - 1, max(1, round(len(group) * validation_fraction)))
        validation.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    rng.shuffle(validation)
    return Split(train, validation)
