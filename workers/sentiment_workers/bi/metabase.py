"""A small client for Metabase's documented REST API (v0.47 or newer), over httpx.

Only the endpoints the provisioner needs: health, session properties, first-user setup, login,
databases, tables, cards and dashboards. Authenticated calls carry the ``X-Metabase-Session`` header.
Errors become :class:`MetabaseError` with Metabase's own message.

It also knows the two shapes of a saved native query (``dataset_query``), which changed in v0.57
(docs/developers-guide/api-changelog.md, "Metabase 0.57.0": queries are serialized as MBQL 5 in the
application database and in REST API responses):

- legacy (MBQL 4, up to v0.56): ``{"type": "native", "database": 1, "native": {"query": "SELECT ..."}}``;
- MBQL 5 (v0.57 on): ``{"lib/type": "mbql/query", "database": 1, "stages": [{"lib/type":
  "mbql.stage/native", "native": "SELECT ...", "template-tags": {}}]}``.

Requests may carry either shape from v0.57 on (``normalize-dataset-query`` in
src/metabase/queries/models/card/metadata.clj "handles both (legacy) MBQL and pMBQL queries").
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

SESSION_HEADER = "X-Metabase-Session"
MBQL5_SINCE = 57
"""First Metabase major version that stores and returns queries as MBQL 5."""


def major_version(properties: dict[str, Any]) -> int | None:
    """Metabase's major version from ``/api/session/properties`` ``version.tag`` (``v0.58.3`` -> 58)."""
    version = properties.get("version")
    tag = version.get("tag") if isinstance(version, dict) else None
    if not isinstance(tag, str):
        return None
    parts = tag.lstrip("v").split(".")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def native_dataset_query(database_id: int, sql: str, *, mbql5: bool) -> dict[str, Any]:
    """A native SQL ``dataset_query`` in the shape the server stores (MBQL 5 or legacy)."""
    if mbql5:
        return {
            "lib/type": "mbql/query",
            "database": database_id,
            "stages": [{"lib/type": "mbql.stage/native", "native": sql, "template-tags": {}}],
        }
    return {"type": "native", "database": database_id, "native": {"query": sql, "template-tags": {}}}


def native_query_of(dataset_query: Any) -> tuple[int | None, str | None]:
    """``(database id, SQL)`` of a saved query in either shape; SQL is None when it is not native SQL."""
    if not isinstance(dataset_query, dict):
        return None, None
    database = dataset_query.get("database")
    database_id = database if isinstance(database, int) else None
    if "stages" in dataset_query or dataset_query.get("lib/type") == "mbql/query":
        stages = dataset_query.get("stages")
        if isinstance(stages, list) and len(stages) == 1 and isinstance(stages[0], dict):
            stage = stages[0]
            if stage.get("lib/type") == "mbql.stage/native" and isinstance(stage.get("native"), str):
                return database_id, stage["native"]
        return database_id, None
    native = dataset_query.get("native")
    if dataset_query.get("type") == "native" and isinstance(native, dict):
        query = native.get("query")
        return database_id, query if isinstance(query, str) else None
    return database_id, None


class MetabaseError(RuntimeError):
    """Metabase answered a request with an error status."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class MetabaseNotReady(RuntimeError):
    """Metabase is not (yet) answering /api/health with status ok."""


def _error_detail(response: httpx.Response) -> str:
    """Metabase's error text: ``message``, ``errors`` (per field) or the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        parts = []
        if body.get("message"):
            parts.append(str(body["message"]))
        if isinstance(body.get("errors"), dict):
            parts.extend(f"{k}: {v}" for k, v in body["errors"].items())
        if parts:
            return "; ".join(parts)
    return str(body)[:500]


def _as_list(body: Any) -> list[dict[str, Any]]:
    """Collections come as a list, or (newer versions) as ``{"data": [...], "total": n}``."""
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return list(body["data"])
    if isinstance(body, list):
        return body
    raise ValueError(f"expected a list of items from Metabase, got {type(body).__name__}")


class MetabaseClient:
    """Synchronous client; use as a context manager. ``transport`` is for tests and proxies."""

    def __init__(
        self, base_url: str, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    def __enter__(self) -> MetabaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def authenticated(self) -> bool:
        return SESSION_HEADER in self._http.headers

    def use_session(self, session_id: str) -> None:
        """Send ``session_id`` with every later request."""
        self._http.headers[SESSION_HEADER] = session_id

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise MetabaseError(method, path, response.status_code, _error_detail(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # ------------------------------------------------------------------ public endpoints
    def health(self) -> bool:
        """``GET /api/health``: true once Metabase has finished starting (``{"status": "ok"}``)."""
        try:
            body = self._request("GET", "/api/health")
        except MetabaseError:
            return False
        return isinstance(body, dict) and body.get("status") == "ok"

    def wait_until_healthy(self, timeout: float, interval: float = 2.0) -> None:
        """Poll ``/api/health`` until it says ok; raise :class:`MetabaseNotReady` after ``timeout``."""

        def probe() -> None:
            if not self.health():
                raise MetabaseNotReady("Metabase /api/health is not ok yet")

        retrying = Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(interval),
            retry=retry_if_exception_type((MetabaseNotReady, httpx.TransportError)),
            reraise=True,
        )
        try:
            retrying(probe)
        except httpx.TransportError as exc:
            raise MetabaseNotReady(f"Metabase unreachable after {timeout:.0f}s: {exc}") from exc

    def session_properties(self) -> dict[str, Any]:
        """``GET /api/session/properties``: public settings incl. ``setup-token`` and ``has-user-setup``."""
        body = self._request("GET", "/api/session/properties")
        if not isinstance(body, dict):
            raise ValueError("unexpected /api/session/properties body")
        return body

    def setup(self, token: str, user: dict[str, str], prefs: dict[str, Any]) -> str:
        """``POST /api/setup``: create the first administrator; returns (and uses) the new session id."""
        body = self._request("POST", "/api/setup", json={"token": token, "user": user, "prefs": prefs})
        session_id = str(body["id"])
        self.use_session(session_id)
        return session_id

    def login(self, email: str, password: str) -> str:
        """``POST /api/session``: log in; returns (and uses) the session id."""
        body = self._request("POST", "/api/session", json={"username": email, "password": password})
        session_id = str(body["id"])
        self.use_session(session_id)
        return session_id

    # ------------------------------------------------------------------ databases and tables
    def list_databases(self) -> list[dict[str, Any]]:
        return _as_list(self._request("GET", "/api/database"))

    def create_database(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/database", json=payload)
        return result

    def update_database(self, database_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("PUT", f"/api/database/{database_id}", json=payload)
        return result

    def sync_schema(self, database_id: int) -> None:
        """``POST /api/database/:id/sync_schema``: start a metadata sync (asynchronous in Metabase)."""
        self._request("POST", f"/api/database/{database_id}/sync_schema")

    def list_tables(self) -> list[dict[str, Any]]:
        return _as_list(self._request("GET", "/api/table"))

    # ------------------------------------------------------------------ cards (questions)
    def list_cards(self) -> list[dict[str, Any]]:
        return _as_list(self._request("GET", "/api/card", params={"f": "all"}))

    def create_card(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/card", json=payload)
        return result

    def update_card(self, card_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("PUT", f"/api/card/{card_id}", json=payload)
        return result

    # ------------------------------------------------------------------ dashboards
    def list_dashboards(self) -> list[dict[str, Any]]:
        return _as_list(self._request("GET", "/api/dashboard", params={"f": "all"}))

    def get_dashboard(self, dashboard_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/dashboard/{dashboard_id}")
        return result

    def create_dashboard(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/dashboard", json=payload)
        return result

    def update_dashboard(self, dashboard_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        """``PUT /api/dashboard/:id``; ``dashcards`` replaces the dashboard's cards (ids < 0 are new)."""
        result: dict[str, Any] = self._request("PUT", f"/api/dashboard/{dashboard_id}", json=payload)
        return result
