"""Pure paging rules of the HTTP source: which request comes next, what a page says, what a record becomes.

No I/O. The poller's position in the API is a :class:`Position` (the cursor, the next link or the page
number, whichever the paging uses), persisted as a plain dict. A page is read into a :class:`Page`: its
records, the position after it, and whether the API has more right now (else the run ends).

Rules, per :class:`~sentiment_workers.http_source.settings.HttpPaging`:

* ``cursor``: the request sends ``cursor_param=<cursor>`` (nothing the first time); the page's
  ``cursor_field`` is the next cursor. No cursor in the page keeps the current one; an empty page, or a cursor
  equal to the one sent, ends the run.
* ``next_link``: the request is the previous page's ``next_link_field`` (relative links are resolved
  against the request URL), the configured ``url`` the first time. No link ends the run and the next run
  starts again from ``url``; an empty page ends the run but keeps its link.
* ``page_number``: the request sends ``page_param=<n>`` from 1; a page with records moves to ``n + 1``, an
  empty page ends the run and is asked for again next run.

Each record is published as a JSON object with a stable ``id`` (the record's ``id_field``, else
``sha256:`` of its canonical JSON) and its text under ``comment`` (what the consumer reads first).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from sentiment_workers.http_source.settings import HttpPaging, HttpSourceConfig


class UnreadablePageError(ValueError):
    """The API answered 2xx with a body the configuration cannot read (not JSON, no records list)."""


@dataclass(frozen=True)
class Position:
    """Where the poller stands in the API: the next request is derived from it."""

    cursor: str | None = None
    link: str | None = None
    page: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "link": self.link, "page": self.page}

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> Position:
        value = value or {}
        return cls(cursor=value.get("cursor"), link=value.get("link"), page=int(value.get("page") or 1))


@dataclass(frozen=True)
class Request:
    """One HTTP request of the poller (the configured headers are added by the client)."""

    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """What one page says."""

    records: list[Any]
    next: Position
    more: bool
    """True when the API has more right now: the run asks for the next page at once."""


def request_for(config: HttpSourceConfig, position: Position) -> Request:
    """The request that fetches the page at ``position``."""
    if config.paging is HttpPaging.CURSOR:
        params = {config.cursor_param: position.cursor} if position.cursor else {}
        return Request(config.method, config.url, params)
    if config.paging is HttpPaging.NEXT_LINK:
        return Request(config.method, position.link or config.url)
    return Request(config.method, config.url, {config.page_param: str(position.page)})


def dotted(document: Any, path: str) -> Any:
    """The value at ``a.b.c`` in nested objects (``''``: the document itself); None when absent."""
    value = document
    for part in path.split(".") if path else ():
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def read_page(config: HttpSourceConfig, position: Position, request: Request, body: bytes) -> Page:
    """Parse a 2xx body; raises :class:`UnreadablePageError` when it is not what the configuration says."""
    document, records = _parse(config, body)
    if config.paging is HttpPaging.CURSOR:
        found = dotted(document, config.cursor_field)
        cursor = str(found) if found not in (None, "") else None
        if cursor is None or cursor == position.cursor:
            return Page(records, Position(cursor=position.cursor), more=False)
        return Page(records, Position(cursor=cursor), more=bool(records))
    if config.paging is HttpPaging.NEXT_LINK:
        found = dotted(document, config.next_link_field)
        link = urljoin(request.url, str(found)) if found not in (None, "") else None
        return Page(records, Position(link=link), more=bool(records) and link is not None)
    if not records:
        return Page(records, position, more=False)
    return Page(records, Position(page=position.page + 1), more=True)


def records_of(config: HttpSourceConfig, body: bytes) -> list[Any]:
    """The records of a landed page (what is republished after a restart)."""
    return _parse(config, body)[1]


def _parse(config: HttpSourceConfig, body: bytes) -> tuple[Any, list[Any]]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UnreadablePageError(f"the page is not JSON: {exc}") from None
    records = dotted(document, config.records_path)
    if records is None:
        records = []
    if not isinstance(records, list):
        path = config.records_path or "(the body)"
        raise UnreadablePageError(f"{path!r} is a {type(records).__name__}, not a list of records")
    return document, records


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """``value`` as compact JSON with sorted keys (the same record always gives the same bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_id(config: HttpSourceConfig, record: Any) -> str:
    """The record's ``id_field`` (non-empty string or integer), else ``sha256:`` of its canonical JSON."""
    own = record.get(config.id_field) if isinstance(record, dict) else None
    if isinstance(own, str | int) and not isinstance(own, bool) and str(own).strip():
        return str(own).strip()
    return "sha256:" + content_hash(canonical_json(record))


def message_for(config: HttpSourceConfig, record: Any, page_id: str) -> tuple[bytes, bytes]:
    """The Kafka key and value that carry ``record``: the record with its stable ``id``, its text in
    ``comment`` and the landing page it came from (``landing_page``). A record that is not a JSON object is
    sent as it is (keyed by its hash): the consumer dead-letters it, visibly."""
    message_id = record_id(config, record)
    if not isinstance(record, dict):
        return message_id.encode(), canonical_json(record)
    message = dict(record)
    message["id"] = message_id
    if config.text_field != "comment" and config.text_field in record:
        message["comment"] = record[config.text_field]
    message["landing_page"] = page_id
    return message_id.encode(), json.dumps(message, ensure_ascii=False).encode("utf-8")
