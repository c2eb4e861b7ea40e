"""Test and demo traffic: synthetic bursts, CSV/JSONL dataset loading, and a paced concurrent sender."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

_SUBJECTS = [
    "the new update",
    "this phone",
    "the service",
    "my order",
    "the team",
    "the weather",
    "the movie",
]
_VERBS = ["is", "was", "seems", "looks", "feels"]
_OPINIONS = [
    "absolutely great",
    "really good",
    "okay I guess",
    "not bad",
    "pretty awful",
    "terrible",
    "just fine",
    "amazing",
    "disappointing",
]


def synthetic_messages(count: int, run_id: str, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` tweet-like messages with ids ``burst-<run_id>-<i>`` (same run id -> same messages)."""
    rng = random.Random(f"{run_id}:{seed}")  # noqa: S311 - test data, not security
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(count):
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OPINIONS)}"
        yield {
            "id": f"burst-{run_id}-{i}",
            "user_id": f"user-{rng.randrange(1000)}",
            "comment": text,
            "created_at": now.isoformat(),
        }


def dataset_messages(
    path: Path,
    *,
    text_column: str = "comment",
    id_column: str | None = "id",
    encoding: str = "utf-8",
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of a ``.csv`` or ``.jsonl`` file as messages: the whole row, text under ``comment``.

    A row without ``id_column`` gets ``<file stem>-<row number>`` (stable across loads).
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ValueError(f"{path}: expected a .csv or .jsonl file")
    with path.open(encoding=encoding, newline="") as handle:
        rows: Iterable[dict[str, Any]]
        if suffix == ".csv":
            rows = csv.DictReader(handle)
        else:
            rows = (json.loads(line) for line in handle if line.strip())
        for n, row in enumerate(rows, start=1):
            if limit is not None and n > limit:
                return
            if text_column not in row:
                raise ValueError(f"{path}: row {n} has no column {text_column!r} (columns: {sorted(row)})")
            message = dict(row)
            message["comment"] = message.pop(text_column)
            if not (id_column and message.get(id_column) not in (None, "")):
                message["id"] = f"{path.stem}-{n}"
            elif id_column != "id":
                message["id"] = str(message[id_column])
            yield message


def encode(message: dict[str, Any] | bytes) -> tuple[bytes | None, bytes]:
    """Kafka key (the message id, for per-id partitioning) and JSON value; raw bytes pass through."""
    if isinstance(message, bytes):
        return None, message
    key = str(message["id"]).encode() if message.get("id") is not None else None
    return key, json.dumps(message, ensure_ascii=False).encode("utf-8")


async def send_messages(
    producer: AIOKafkaProducer,
    topic: str,
    messages: Iterable[dict[str, Any] | bytes],
    *,
    rate: float = 0.0,
    concurrency: int = 64,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send with ``concurrency`` tasks (each waits for its acks), paced to ``rate`` msg/s (0 = unpaced).

    Returns the number of messages acknowledged by the broker.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    iterator = iter(messages)
    started = time.monotonic()
    sent = 0
    index = 0

    async def worker() -> None:
        nonlocal sent, index
        while True:
            try:
                message = next(iterator)
            except StopIteration:
                return
            slot = index
            index += 1
            if rate > 0:
                delay = started + slot / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            key, value = encode(message)
            await producer.send_and_wait(topic, value=value, key=key)
            sent += 1
            if on_sent is not None:
                on_sent(1)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent
