"""Replaying dead letters after a fix: each dead letter goes back where its stage left it, idempotently.

* ``consume`` dead letters (invalid records, ``store_rejected`` at staging) keep the raw bytes: they are
  parsed again by the current code and staged (an upsert by message id, so a message already staged is not
  staged twice). One still refused stays a dead letter, with the new outcome reported.
* ``infer`` dead letters (``model_error``, ``too_many_attempts``, ``store_rejected`` by the warehouse) point
  at a staged document: it is put back in the queue with fresh attempts, and the inference worker writes it
  (an upsert by message id: still one row).

A replayed dead letter is kept with ``replayed_at`` and ``replay_result`` (the audit trail) and is no longer
open: replaying it again changes nothing. If it fails again it is dead-lettered again (open, new reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sentiment_workers.adapters import mongo
from sentiment_workers.adapters.mongo import StagingStore
from sentiment_workers.isolation import describe
from sentiment_workers.messages import Rejected, SourceRecord, parse_record, utcnow


@dataclass(frozen=True)
class ReplayOutcome:
    """What replaying one dead letter did."""

    letter_id: str
    stage: str
    reason: str
    result: str
    replayed: bool
    """True when the dead letter is now closed (its message is back in the pipeline or already through)."""


async def replay(
    store: StagingStore, letters: Sequence[dict[str, Any]], *, max_bytes: int
) -> list[ReplayOutcome]:
    """Replay each dead letter (see the module docstring); never raises for a message that fails again."""
    outcomes = []
    for letter in letters:
        stage, reason, letter_id = str(letter.get("stage")), str(letter.get("reason")), str(letter["_id"])
        if letter.get("replayed_at") is not None:
            result, replayed = f"already replayed ({letter.get('replay_result')})", False
        elif stage == "consume":
            result, replayed = await _restage(store, letter, max_bytes)
        elif stage == "infer":
            result, replayed = await _requeue(store, letter)
        else:
            result, replayed = f"unknown stage {stage!r}: left as is", False
        outcomes.append(ReplayOutcome(letter_id, stage, reason, result, replayed))
    return outcomes


async def _restage(store: StagingStore, letter: dict[str, Any], max_bytes: int) -> tuple[str, bool]:
    if letter.get("raw_truncated"):
        return "raw bytes were truncated when dead-lettered: re-send it from the source", False
    key = letter.get("key")
    source = SourceRecord(
        topic=str(letter["topic"]),
        partition=int(letter["partition"]),
        offset=int(letter["offset"]),
        key=bytes(key) if key is not None else None,
        value=bytes(letter.get("raw") or b""),
    )
    parsed = parse_record(source, max_bytes=max_bytes)
    if isinstance(parsed, Rejected):
        return f"still {parsed.reason.value}: {parsed.detail[:200]}", False
    try:
        await store.stage([parsed], [], utcnow())
    except Exception as exc:
        if not mongo.is_rejection(exc):
            raise
        return f"still store_rejected: {describe('mongo', exc, 200)}", False
    await store.mark_replayed(str(letter["_id"]), f"staged as {parsed.id}", utcnow())
    return f"staged as {parsed.id}", True


async def _requeue(store: StagingStore, letter: dict[str, Any]) -> tuple[str, bool]:
    message_id = str(letter["message_id"])
    if await store.requeue_dead_lettered(message_id):
        result = f"requeued {message_id}"
    else:
        status = await store.status_of(message_id)
        if status is None:
            return f"staged message {message_id} not found: left as is", False
        result = f"{message_id} is already {status}"
    await store.mark_replayed(str(letter["_id"]), result, utcnow())
    return result, True
