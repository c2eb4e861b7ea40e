"""Turn one raw Kafka record into a staged document or a dead-letter reason.

Pure functions, no I/O. A message is a UTF-8 JSON object carrying the text in ``comment`` (or ``text``),
optionally ``id``, ``user_id`` and ``created_at``. Its id is stable so a replay never duplicates it: the
message's own ``id`` field, else the Kafka key, else a SHA-256 of the raw bytes (never a random id).

JSON escapes of lone UTF-16 surrogates (``"\\ud800"``) decode to strings no store can encode (BSON and
utf8mb4 both refuse them). They are replaced by U+FFFD in the text, the payload and ``user_id``; the staged
document then keeps the original bytes (``raw``) and says what was changed (``altered``). An ``id`` holding
one is replaced by ``sha256:`` of its surrogate-preserving encoding (stable, and distinct from other ids).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TEXT_FIELDS = ("comment", "text")
"""Fields that may carry the text to classify, in order of preference."""

MAX_ID_LENGTH = 128
"""Longer ids (from a field or a key) are replaced by ``sha256:<hex>`` of themselves (still stable)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
ALTERED_SURROGATES = "lone UTF-16 surrogates replaced by U+FFFD (original bytes in raw)"


class DeadLetterReason(StrEnum):
    """Why a message was set aside instead of classified (the ``reason`` metric label)."""

    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TEXT = "missing_text"
    INVALID_FIELD = "invalid_field"
    MODEL_ERROR = "model_error"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    STORE_REJECTED = "store_rejected"


@dataclass(frozen=True)
class SourceRecord:
    """Where a message came from and its bytes (what the consumer got from Kafka)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class StagedMessage:
    """A valid message, ready for the staging collection."""

    id: str
    comment: str
    user_id: str | None
    created_at: datetime | None
    payload: dict[str, Any]
    source: SourceRecord
    altered: str | None = None
    """What parsing changed to make the message storable (None: nothing); ``raw`` then keeps the bytes."""

    def to_document(self, ingest_ts: datetime) -> dict[str, Any]:
        """The raw document as stored in MongoDB (status fields are added by the store)."""
        altered = {"altered": self.altered, "raw": self.source.value} if self.altered else {}
        return {
            "_id": self.id,
            "comment": self.comment,
            "user_id": self.user_id,
            "created_at": self.created_at,
            "payload": self.payload,
            "topic": self.source.topic,
            "partition": self.source.partition,
            "offset": self.source.offset,
            "kafka_ts": _from_millis(self.source.timestamp_ms),
            "ingest_ts": ingest_ts,
            **altered,
        }


@dataclass(frozen=True)
class Rejected:
    """An invalid message and why: it goes to the dead-letter collection, raw bytes included."""

    reason: DeadLetterReason
    detail: str
    source: SourceRecord


class InvalidMessageError(ValueError):
    """Raised inside parsing; carries the dead-letter reason."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_record(record: SourceRecord, *, max_bytes: int) -> StagedMessage | Rejected:
    """Validate one record. Never raises for bad input: returns a :class:`Rejected` with the reason."""
    try:
        return _parse(record, max_bytes=max_bytes)
    except InvalidMessageError as exc:
        return Rejected(reason=exc.reason, detail=exc.detail, source=record)


def _parse(record: SourceRecord, *, max_bytes: int) -> StagedMessage:
    raw = record.value
    if raw is None or len(raw) == 0:
        raise InvalidMessageError(DeadLetterReason.MISSING_TEXT, "empty message (null or zero-length value)")
    if len(raw) > max_bytes:
        raise InvalidMessageError(
            DeadLetterReason.OVERSIZED, f"message is {len(raw)} bytes, the limit is {max_bytes}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessageError(DeadLetterReason.NOT_UTF8, f"value is not UTF-8: {exc}") from None
    try:
        payload = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(DeadLetterReason.INVALID_JSON, f"value is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidMessageError(
            DeadLetterReason.INVALID_JSON, "value is nested too deeply to parse"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidMessageError(
            DeadLetterReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(payload).__name__}"
        )
    message_id = stable_id(payload, record)  # before scrubbing: an id's surrogates make it a hash
    clean, altered = payload, None
    if "\\ud" in text.lower():  # a surrogate can only come from a \\uXXXX escape
        try:
            clean = _scrub(payload)
            altered = ALTERED_SURROGATES if clean != payload else None
        except RecursionError:
            raise InvalidMessageError(
                DeadLetterReason.INVALID_JSON, "value is nested too deeply to parse"
            ) from None
    comment = _text_of(clean)
    return StagedMessage(
        id=message_id,
        comment=comment,
        user_id=_optional_id(clean, "user_id"),
        created_at=_optional_time(clean, "created_at"),
        payload=clean,
        source=record,
        altered=altered,
    )


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON (RFC 8259); Python's parser accepts them, the warehouse does not."""
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def scrub_text(value: str) -> str:
    """``value`` with every lone surrogate replaced by U+FFFD (a surrogate in a ``str`` is always lone)."""
    return _SURROGATE.sub(REPLACEMENT, value)


def _scrub(value: Any) -> Any:
    """A copy of a parsed JSON value with lone surrogates replaced in every string and key."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_text(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def stable_id(payload: dict[str, Any], record: SourceRecord) -> str:
    """The message's own ``id``, else its Kafka key, else ``sha256:`` of the raw value."""
    own = payload.get("id")
    if own is not None:
        if isinstance(own, bool) or not isinstance(own, str | int):
            raise InvalidMessageError(DeadLetterReason.INVALID_FIELD, "'id' must be a string or an integer")
        if str(own).strip():
            text = str(own).strip()
            if _SURROGATE.search(text):
                return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            return _bounded(text)
    if record.key:
        try:
            return _bounded(record.key.decode("utf-8"))
        except UnicodeDecodeError:
            return "sha256:" + hashlib.sha256(record.key).hexdigest()
    return "sha256:" + hashlib.sha256(record.value or b"").hexdigest()


def _bounded(value: str) -> str:
    if len(value) <= MAX_ID_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _text_of(payload: dict[str, Any]) -> str:
    for name in TEXT_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidMessageError(
                DeadLetterReason.INVALID_FIELD, f"{name!r} must be a string, got {type(value).__name__}"
            )
        if value.strip():
            return value
    raise InvalidMessageError(
        DeadLetterReason.MISSING_TEXT, f"no non-empty text in any of the fields {', '.join(TEXT_FIELDS)}"
    )


def _optional_id(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidMessageError(DeadLetterReason.INVALID_FIELD, f"{name!r} must be a string or an integer")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidMessageError(DeadLetterReason.INVALID_FIELD, f"{name!r} is longer than {MAX_ID_LENGTH}")
    return text


def _optional_time(payload: dict[str, Any], name: str) -> datetime | None:
    """ISO-8601 text (naive means UTC) or epoch seconds/milliseconds; returned as naive UTC."""
    value = payload.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            seconds = value / 1000 if value > 10**11 else value
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
            return parsed
        raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidMessageError(
            DeadLetterReason.INVALID_FIELD,
            f"{name!r} must be ISO-8601 text or epoch seconds/milliseconds, got {value!r:.80}",
        ) from None


def _from_millis(ms: int | None) -> datetime | None:
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def utcnow() -> datetime:
    """Naive UTC now with millisecond precision (what BSON and DATETIME(6) both keep)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
