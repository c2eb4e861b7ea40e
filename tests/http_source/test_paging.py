"""The pure rules of the HTTP source: requests per paging, what a page says, the message each record becomes
(exactly what the consumer reads), and the HTTP details (Retry-After, URLs without secrets)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sentiment_workers.http_source import paging
from sentiment_workers.http_source.client import redact_url, retry_after_seconds
from sentiment_workers.http_source.paging import Position, Request, UnreadablePageError
from sentiment_workers.http_source.settings import HttpPaging, HttpSourceConfig, env_name
from sentiment_workers.messages import SourceRecord, StagedMessage, parse_record


def settings(**values: object) -> HttpSourceConfig:
    return HttpSourceConfig(url="https://api.example.com/v1/events", source_name="demo", **values)  # type: ignore[arg-type]


def test_settings_are_read_from_sentiment_http_variables(monkeypatch):
    monkeypatch.setenv("SENTIMENT_HTTP_URL", "https://api.example.com/feed")
    monkeypatch.setenv("SENTIMENT_HTTP_SOURCE_NAME", "shop-reviews")
    monkeypatch.setenv("SENTIMENT_HTTP_HEADERS", '{"Authorization": "Bearer s3cret"}')
    monkeypatch.setenv("SENTIMENT_HTTP_PAGING", "next_link")
    source = HttpSourceConfig()  # type: ignore[call-arg]
    assert source.paging is HttpPaging.NEXT_LINK
    assert source.headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(source)
    assert env_name("landing_url") == "SENTIMENT_HTTP_LANDING_URL"
    with pytest.raises(KeyError):
        env_name("nope")


def test_cursor_paging_sends_the_cursor_back_and_stops_when_it_no_longer_moves():
    source = settings()
    first = paging.request_for(source, Position())
    assert first == Request("GET", source.url, {})
    page = paging.read_page(source, Position(), first, b'{"records": [{"id": 1}], "next_cursor": "abc"}')
    assert page.next == Position(cursor="abc") and page.more
    assert paging.request_for(source, page.next).params == {"cursor": "abc"}
    same = paging.read_page(source, page.next, first, b'{"records": [{"id": 2}], "next_cursor": "abc"}')
    assert same.records == [{"id": 2}] and not same.more
    missing = paging.read_page(source, page.next, first, b'{"records": []}')
    assert missing.next == Position(cursor="abc") and not missing.more  # no cursor: keep the last one


def test_next_link_paging_follows_relative_links_and_restarts_from_the_url_without_one():
    source = settings(paging="next_link", records_path="data.items", next_link_field="links.next")
    request = paging.request_for(source, Position())
    assert request.url == source.url
    body = json.dumps({"data": {"items": [{"id": "a"}]}, "links": {"next": "/v1/events?after=a"}}).encode()
    page = paging.read_page(source, Position(), request, body)
    assert page.next.link == "https://api.example.com/v1/events?after=a" and page.more
    last = paging.read_page(source, page.next, request, b'{"data": {"items": [{"id": "b"}]}, "links": {}}')
    assert last.next == Position() and not last.more


def test_page_number_paging_asks_again_for_the_first_empty_page():
    source = settings(paging="page_number", page_param="p")
    assert paging.request_for(source, Position()).params == {"p": "1"}
    full = paging.read_page(source, Position(page=3), Request("GET", source.url), b'{"records": [1]}')
    assert full.next == Position(page=4) and full.more
    empty = paging.read_page(source, Position(page=4), Request("GET", source.url), b'{"records": []}')
    assert empty.next == Position(page=4) and not empty.more


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"<html>", "not JSON"), (b'{"records": {"id": 1}}', "not a list"), (b"\xff\xfe", "not JSON")],
)
def test_a_page_the_configuration_cannot_read_is_refused_with_the_reason(body, problem):
    with pytest.raises(UnreadablePageError, match=problem):
        paging.read_page(settings(), Position(), Request("GET", "https://x"), body)


def test_positions_survive_their_stored_form():
    for position in (Position(), Position(cursor="c9"), Position(link="https://x/p2"), Position(page=7)):
        assert Position.from_dict(position.to_dict()) == position
    assert Position.from_dict(None) == Position()


def _consumed(key: bytes, value: bytes) -> StagedMessage:
    parsed = parse_record(SourceRecord("t", 0, 0, key, value), max_bytes=65536)
    assert isinstance(parsed, StagedMessage), parsed
    return parsed


def test_each_record_becomes_a_message_the_consumer_stages_under_the_record_id():
    source = settings(id_field="review_id", text_field="body")
    key, value = paging.message_for(source, {"review_id": 42, "body": "great shop", "stars": 5}, "demo/ab")
    staged = _consumed(key, value)
    assert (staged.id, staged.comment) == ("42", "great shop")
    assert staged.payload["stars"] == 5 and staged.payload["landing_page"] == "demo/ab"


def test_a_record_without_id_gets_the_hash_of_its_content_the_same_every_time():
    source = settings()
    one = paging.message_for(source, {"text": "ok", "b": 1}, "demo/1")
    again = paging.message_for(source, {"b": 1, "text": "ok"}, "demo/2")  # same record, keys reordered
    other = paging.message_for(source, {"text": "ok", "b": 2}, "demo/1")
    assert one[0] == again[0] != other[0]
    assert one[0].startswith(b"sha256:")
    assert _consumed(*one).id == one[0].decode()


def test_a_record_that_is_not_an_object_is_published_as_is_for_the_consumer_to_dead_letter():
    key, value = paging.message_for(settings(), "just text", "demo/1")
    rejected = parse_record(SourceRecord("t", 0, 0, key, value), max_bytes=65536)
    assert not isinstance(rejected, StagedMessage)
    assert rejected.reason == "not_an_object"


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_urls_in_errors_carry_neither_query_strings_nor_credentials():
    assert (
        redact_url("https://user:pw@api.example.com:8443/v1/x?token=abc")
        == "https://api.example.com:8443/v1/x"
    )
