"""Parsing and validation of one raw record: stable ids and dead-letter reasons (no servers needed)."""

import json

import pytest
from sentiment_workers.messages import (
    DeadLetterReason,
    Rejected,
    SourceRecord,
    StagedMessage,
    parse_record,
    utcnow,
)

LIMIT = 1024


def record(value: bytes | None, key: bytes | None = None, offset: int = 7) -> SourceRecord:
    return SourceRecord("topic", 1, offset, key, value, 1_700_000_000_000)


def parse(value: bytes | None, key: bytes | None = None) -> StagedMessage | Rejected:
    return parse_record(record(value, key), max_bytes=LIMIT)


def test_valid_message_keeps_its_fields_and_own_id():
    msg = parse(
        json.dumps({"id": 42, "user_id": 9, "comment": "hi", "created_at": "2024-05-01T10:00:00Z"}).encode()
    )
    assert isinstance(msg, StagedMessage)
    assert (msg.id, msg.user_id, msg.comment) == ("42", "9", "hi")
    assert msg.created_at is not None and msg.created_at.isoformat() == "2024-05-01T10:00:00"
    doc = msg.to_document(msg.created_at)
    assert doc["_id"] == "42" and doc["payload"]["id"] == 42 and (doc["partition"], doc["offset"]) == (1, 7)


def test_id_falls_back_to_kafka_key_then_content_hash():
    body = json.dumps({"text": "no id here"}).encode()
    keyed = parse(body, key=b"k-1")
    hashed_once, hashed_again = parse(body), parse(body)
    assert isinstance(keyed, StagedMessage) and keyed.id == "k-1"
    assert isinstance(hashed_once, StagedMessage) and isinstance(hashed_again, StagedMessage)
    assert hashed_once.id.startswith("sha256:") and hashed_once.id == hashed_again.id
    other = parse(json.dumps({"text": "different"}).encode())
    assert isinstance(other, StagedMessage) and other.id != hashed_once.id


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, DeadLetterReason.MISSING_TEXT),
        (b"\xff\xfe not utf-8", DeadLetterReason.NOT_UTF8),
        (b"{not json", DeadLetterReason.INVALID_JSON),
        (b"[1, 2]", DeadLetterReason.NOT_AN_OBJECT),
        (b'{"comment": "   "}', DeadLetterReason.MISSING_TEXT),
        (b'{"user_id": 1}', DeadLetterReason.MISSING_TEXT),
        (b'{"comment": 5}', DeadLetterReason.INVALID_FIELD),
        (b'{"comment": "x", "created_at": "yesterday"}', DeadLetterReason.INVALID_FIELD),
        (b'{"comment": "x", "id": {"a": 1}}', DeadLetterReason.INVALID_FIELD),
        (json.dumps({"comment": "x" * LIMIT}).encode(), DeadLetterReason.OVERSIZED),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(value, reason):
    result = parse(value)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert result.detail
    assert result.source.value == value


def test_epoch_created_at_in_seconds_or_milliseconds():
    secs = parse(b'{"comment": "x", "created_at": 1700000000}')
    millis = parse(b'{"comment": "x", "created_at": 1700000000000}')
    assert isinstance(secs, StagedMessage) and isinstance(millis, StagedMessage)
    assert secs.created_at == millis.created_at


def test_very_long_ids_are_hashed_stably():
    long_id = "x" * 500
    a, b = (
        parse(json.dumps({"id": long_id, "comment": "x"}).encode()),
        parse(json.dumps({"id": long_id, "comment": "y"}).encode()),
    )
    assert isinstance(a, StagedMessage) and isinstance(b, StagedMessage)
    assert a.id == b.id and a.id.startswith("sha256:") and len(a.id) < 100


def test_lone_surrogates_are_replaced_and_the_change_is_recorded_with_the_original_bytes():
    raw = b'{"id": "a1", "comment": "x \\ud800 y", "k\\udc00": ["\\ud83d\\ude00", "\\udfff"]}'
    msg = parse(raw)
    assert isinstance(msg, StagedMessage)
    assert msg.comment == "x \ufffd y"
    assert msg.payload == {"id": "a1", "comment": "x \ufffd y", "k\ufffd": ["😀", "\ufffd"]}  # pairs kept
    assert msg.altered and "U+FFFD" in msg.altered
    doc = msg.to_document(utcnow())
    assert doc["raw"] == raw and doc["altered"] == msg.altered
    plain = parse(b'{"id": "a2", "comment": "an escaped pair \\ud83d\\ude00 is fine"}')
    assert isinstance(plain, StagedMessage) and plain.altered is None
    assert "raw" not in plain.to_document(utcnow())


def test_an_id_with_a_lone_surrogate_becomes_a_stable_distinct_hash():
    first = parse(b'{"id": "a\\ud800", "comment": "x"}')
    again = parse(b'{"id": "a\\ud800", "comment": "y"}')
    other = parse(b'{"id": "a\\ud801", "comment": "x"}')
    assert isinstance(first, StagedMessage) and isinstance(again, StagedMessage)
    assert isinstance(other, StagedMessage)
    assert first.id == again.id and first.id.startswith("sha256:") and first.id != other.id


@pytest.mark.parametrize(
    "value",
    [
        b'{"comment": "x", "n": NaN}',
        b'{"comment": "x", "n": -Infinity}',
        b'{"comment": "x", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_nan_infinity_and_unparseably_deep_json_are_invalid_json(value):
    result = parse_record(record(value), max_bytes=len(value))
    assert isinstance(result, Rejected) and result.reason is DeadLetterReason.INVALID_JSON
