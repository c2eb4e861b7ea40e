"""A small paged HTTP API for the poller's tests: a real server (``http.server``, threaded) on a free port.

It holds ``pages`` pages of ``per_page`` records and serves them the way a "since the last call" API does:
asking for page k (by cursor ``c<k>``, by the next link ``/links/p<k>``, or by ``?page=k``) acknowledges the
pages before it, which it then never serves again (410 Gone); the page at the end of the data is an empty
page whose cursor or link points at itself. Page k's bytes are always the same, so the test can compare
the bodies served with the bodies landed. Each page carries one record without an id (hash ids).

``faults`` scripts failures by request number (1-based): ``"500"``, ``"429"`` (``Retry-After: 1``),
``"drop"`` (the connection is closed without an answer), ``"401"``, ``"404"``, ``"garbage"`` (a 200 that is
not JSON). ``delay_s`` slows every answer (so a test can kill the poller mid-run).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

VARIANTS = ("cursor", "next_link", "page_number")


class PagedApi:
    """The API's state: what it holds, what it served, what it was asked."""

    def __init__(
        self,
        variant: str,
        pages: int,
        per_page: int = 5,
        faults: dict[int, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        assert variant in VARIANTS
        self.variant, self.pages, self.per_page = variant, pages, per_page
        self.faults = dict(faults or {})
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.requests = 0
        self.acked = 0 if variant != "page_number" else 1
        self.served: dict[str, int] = {}
        """sha256 of each body served with 200 -> page number."""
        self.served_times: Counter[int] = Counter()
        self.statuses: Counter[str] = Counter()
        self.gone = 0
        self.auth_headers: list[str | None] = []
        self.server: ThreadingHTTPServer | None = None

    # -- content ------------------------------------------------------------------------------------

    def records(self, k: int) -> list[dict[str, Any]]:
        if k >= self.last:
            return []
        rows: list[dict[str, Any]] = [
            {"id": f"{self.variant}-{k}-{i}", "text": f"page {k} record {i} is good", "user_id": f"u{i}"}
            for i in range(self.per_page - 1)
        ]
        rows.append({"text": f"page {k} has a record without an id", "user_id": "anonymous"})
        return rows

    @property
    def first(self) -> int:
        return 1 if self.variant == "page_number" else 0

    @property
    def last(self) -> int:
        """The page number just past the data (an empty page)."""
        return self.first + self.pages

    def expected_ids(self) -> set[str]:
        ids = set()
        for k in range(self.first, self.last):
            for record in self.records(k):
                if "id" in record:
                    ids.add(record["id"])
                else:
                    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                    ids.add("sha256:" + hashlib.sha256(canonical.encode()).hexdigest())
        return ids

    def body(self, k: int) -> bytes:
        records = self.records(k)
        if self.variant == "cursor":
            document: dict[str, Any] = {"records": records, "next_cursor": f"c{min(k + 1, self.last)}"}
        elif self.variant == "next_link":
            document = {"data": {"items": records}, "links": {"next": f"/links/p{min(k + 1, self.last)}"}}
        else:
            document = {"records": records, "page": k}
        return json.dumps(document).encode()

    def page_asked(self, path: str, query: dict[str, list[str]]) -> int | None:
        if self.variant == "cursor" and path == "/cursor":
            cursor = query.get("cursor", [None])[0]
            return self.acked if cursor is None else int(cursor.removeprefix("c"))
        if self.variant == "next_link" and path.startswith("/links"):
            token = path.removeprefix("/links").strip("/")
            return self.acked if not token else int(token.removeprefix("p"))
        if self.variant == "page_number" and path == "/pages":
            return int(query.get("page", ["1"])[0])
        return None

    @property
    def start_path(self) -> str:
        return {"cursor": "/cursor", "next_link": "/links", "page_number": "/pages"}[self.variant]

    # -- serving ------------------------------------------------------------------------------------

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
            fault = self.faults.get(self.requests)
            self.auth_headers.append(handler.headers.get("Authorization"))
        if self.delay_s:
            time.sleep(self.delay_s)
        if fault == "drop":
            self.statuses["drop"] += 1
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        if fault in ("500", "401", "404"):
            self._send(handler, int(fault), b'{"error": "scripted"}')
            return
        if fault == "429":
            self._send(handler, 429, b'{"error": "slow down"}', {"Retry-After": "1"})
            return
        if fault == "garbage":
            self._send(handler, 200, b"<html>maintenance</html>")
            return
        parts = urlsplit(handler.path)
        k = self.page_asked(parts.path, parse_qs(parts.query))
        if k is None:
            self._send(handler, 404, b'{"error": "no such path"}')
            return
        with self.lock:
            if k < self.acked:
                self.gone += 1
                gone = True
            else:
                gone = False
                self.acked = k
                body = self.body(min(k, self.last))
                self.served[hashlib.sha256(body).hexdigest()] = k
                self.served_times[k] += 1
        if gone:
            self._send(handler, 410, b'{"error": "page already consumed"}')
            return
        self._send(handler, 200, body, {"X-Page": str(k)})

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.statuses[str(status)] += 1
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the poller was killed while reading
            handler.close_connection = True

    def stats(self) -> dict[str, Any]:
        """What the API served so far (``GET /_stats`` when run as a program)."""
        with self.lock:
            return {
                "pages": self.pages,
                "served_pages": len(self.served_times),
                "served_twice": sorted(k for k, n in self.served_times.items() if n > 1),
                "gone": self.gone,
                "requests": self.requests,
                "at_end": self.acked >= self.last,
            }

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/_stats":
                    api._send(self, 200, json.dumps(api.stats()).encode())
                    return
                api.answer(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                api.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.start_path}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def main() -> None:
    """Serve the API in the foreground (the e2e suite runs it in a pod: tests/e2e/test_scenario.py)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="cursor")
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--per-page", type=int, default=5)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    api = PagedApi(args.variant, args.pages, per_page=args.per_page)
    api.start(args.host, args.port)
    where = f"{args.host}:{args.port}{api.start_path}"
    print(f"serving {args.pages} pages ({args.variant}) on {where}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
