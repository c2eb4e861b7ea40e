"""Fetch one page from the API (httpx), retrying what a retry can fix and naming what it cannot.

* 5xx, 408, timeouts, refused or dropped connections: retried with capped exponential backoff and full
  jitter (``backoff_s`` doubling to ``max_backoff_s``, each wait drawn uniformly between half and all of it),
  at most ``attempts`` times, then :class:`SourceError` of kind ``unreachable``;
* 429: retried after the ``Retry-After`` the API asks for (seconds or an HTTP date, capped at
  ``max_retry_after_s``), else the backoff;
* 401/403: :class:`SourceError` of kind ``auth`` at once (a wrong Secret: no retry fixes it); any other 4xx:
  kind ``rejected`` (a bad URL or request).

The poller records the kind in ``sentiment_store_error{store="http"}`` and waits for the next run: an API
that fails never makes the process exit (no crash loop).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import httpx

from sentiment_workers.config import AUTH, REJECTED, UNREACHABLE
from sentiment_workers.http_source.paging import Request
from sentiment_workers.logging import get_logger

log = get_logger("http_source.client")


class SourceError(Exception):
    """The API could not give a page: ``kind`` is ``auth``, ``rejected`` or ``unreachable``."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class Response:
    """A 2xx answer, exactly as received."""

    request: Request
    url: str
    """The URL finally requested (query string included, after redirects)."""
    status: int
    headers: list[tuple[str, str]]
    """Every header line as received (names in their case, in order, duplicates kept)."""
    body: bytes
    requested_at: datetime
    received_at: datetime
    attempts: int


def redact_url(url: str) -> str:
    """``url`` without its query string and credentials (what the status and logs may show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (delta-seconds or an HTTP date); None when absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class PageClient:
    """One httpx client for the poller's requests; the configured headers go on every request."""

    def __init__(
        self,
        headers: dict[str, str],
        timeout_s: float,
        *,
        attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.http = httpx.AsyncClient(
            headers=headers, timeout=timeout_s, follow_redirects=True, transport=transport
        )

    async def close(self) -> None:
        await self.http.aclose()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    async def fetch(self, request: Request) -> Response:
        """The page ``request`` asks for, retried as the module says; raises :class:`SourceError`."""
        where = redact_url(request.url)
        for attempt in range(1, self.attempts + 1):
            requested_at = datetime.now(UTC)
            try:
                answer = await self.http.request(request.method, request.url, params=request.params or None)
            except httpx.TransportError as exc:  # timeouts, refused, reset, dropped mid-response
                problem, wait, status = f"{type(exc).__name__}: {exc}", self._backoff(attempt), None
            else:
                status = answer.status_code
                if 200 <= status < 300:
                    return Response(
                        request=request,
                        url=str(answer.url),
                        status=status,
                        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw],
                        body=answer.content,
                        requested_at=requested_at,
                        received_at=datetime.now(UTC),
                        attempts=attempt,
                    )
                if status in (401, 403):
                    raise SourceError(AUTH, f"{where} refused the credentials: HTTP {status}", status)
                if status == 429:
                    asked = retry_after_seconds(answer.headers.get("retry-after"))
                    wait = min(asked, self.max_retry_after_s) if asked is not None else self._backoff(attempt)
                    problem = f"HTTP 429 (Retry-After: {answer.headers.get('retry-after')})"
                elif status == 408 or status >= 500:
                    problem, wait = f"HTTP {status}", self._backoff(attempt)
                else:
                    raise SourceError(REJECTED, f"{where} rejected the request: HTTP {status}", status)
            if attempt == self.attempts:
                raise SourceError(
                    UNREACHABLE, f"{where} unreachable after {attempt} attempts: {problem}", status
                )
            log.warning(
                "page request failed, retrying",
                url=where,
                attempt=attempt,
                wait_s=round(wait, 2),
                error=problem[:300],
            )
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
