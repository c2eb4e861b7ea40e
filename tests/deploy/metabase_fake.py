"""A faithful fake of Metabase's documented REST API, served over real HTTP on loopback.

No Metabase jar can be had on these machines (docs/metabase.md), so the provisioner is tested against
this stand-in. It implements the endpoints the provisioner uses with Metabase's request/response shapes
and validation rules (v0.47+):

- ``GET /api/health``: ``{"status": "initializing"}`` with 503 while "starting", then ``{"status": "ok"}``.
- ``GET /api/session/properties``: ``setup-token`` and ``has-user-setup``.
- ``POST /api/setup``: 403 on a wrong token or when a user exists; 400 ``{"errors": {...}}`` for a
  missing field or a weak password (Metabase's default "normal" complexity: 6+ characters, a digit,
  not a common password); returns ``{"id": <session>}``.
- ``POST /api/session``: 401 ``{"errors": {"password": "did not match stored password"}}``.
- Every other endpoint: 401 ``Unauthenticated`` without a valid ``X-Metabase-Session`` header.
- ``GET/POST /api/database``, ``PUT /api/database/:id``: like Metabase, the connection details are
  tested by really connecting to the MySQL server (here MariaDB, with pymysql) before saving; a failure is
  a 400 with ``message``. The listing is ``{"data": [...], "total": n}`` with passwords obfuscated and
  includes the bundled "Sample Database".
- ``POST /api/database/:id/sync_schema`` reads the real server's tables into ``GET /api/table``.
- ``GET/POST /api/card``, ``PUT /api/card/:id``: required ``name``, ``display``, ``dataset_query`` and
  ``visualization_settings`` (a map); a native query must name an existing database. As Metabase does
  to compute ``result_metadata``, saving runs the query (with the database's stored credentials).
- ``POST /api/card/:id/query``: runs the card (202, ``{"status": "completed", "data": {...}}``).
- ``GET/POST /api/dashboard``, ``GET/PUT /api/dashboard/:id``: ``dashcards`` replace the dashboard's
  cards; negative ids are new dashcards, dashcards left out are removed, layouts must fit the 24-column
  grid and reference existing cards.

It also counts requests per (method, route) so tests can check what a re-run did.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pymysql

GRID_WIDTH = 24
COMMON_PASSWORDS = {"password", "123456", "12345678", "qwerty", "letmein", "password1", "metabase1"}
OBFUSCATED = "**MetabasePass**"
SUPPORTED_ENGINES = {"mysql", "postgres", "h2", "mongo"}


def _json_value(value: Any) -> Any:
    """Query results as Metabase serializes them: dates/times as ISO strings, decimals as numbers."""
    if isinstance(value, datetime.date | datetime.datetime | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _field_errors(**errors: str) -> ApiError:
    return ApiError(400, {"errors": errors, "specific-errors": {k: [v] for k, v in errors.items()}})


def _non_blank(body: dict[str, Any], key: str, where: str = "") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _field_errors(**{f"{where}{key}": "value must be a non-blank string."})
    return value


@dataclass
class FakeMetabaseState:
    """Everything the fake stores, inspectable by tests."""

    setup_token: str = field(default_factory=lambda: secrets.token_hex(16))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # email -> user
    sessions: dict[str, str] = field(default_factory=dict)  # session id -> email
    databases: dict[int, dict[str, Any]] = field(default_factory=dict)
    tables: dict[int, dict[str, Any]] = field(default_factory=dict)
    cards: dict[int, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[int, dict[str, Any]] = field(default_factory=dict)
    dashcards: dict[int, dict[str, Any]] = field(default_factory=dict)
    site_name: str | None = None
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    health_checks_before_ready: int = 0
    _ids: Counter[str] = field(default_factory=Counter)

    def next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def live(self, items: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items.values() if not i.get("archived")]


def _connect(details: dict[str, Any]) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=details["host"],
        port=int(details.get("port") or 3306),
        user=details["user"],
        password=details.get("password") or "",
        database=details["dbname"],
        connect_timeout=5,
        autocommit=True,
    )


class FakeMetabase:
    """Start with :meth:`start` (or as a context manager); ``url`` is the base URL."""

    def __init__(self, *, health_checks_before_ready: int = 0) -> None:
        self.state = FakeMetabaseState(health_checks_before_ready=health_checks_before_ready)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        sample_id = self.state.next_id("database")
        self.state.databases[sample_id] = {
            "id": sample_id,
            "name": "Sample Database",
            "engine": "h2",
            "is_sample": True,
            "details": {"db": "zip:/app/metabase.jar!/sample-database.db"},
        }

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeMetabase:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeMetabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ routing
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self, method: str) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status: int
                payload: Any
                try:
                    body = json.loads(raw) if raw else {}
                    with fake._lock:
                        status, payload = fake.dispatch(
                            method,
                            parsed.path.rstrip("/") or "/",
                            parse_qs(parsed.query),
                            body,
                            self.headers.get("X-Metabase-Session"),
                        )
                except ApiError as exc:
                    status, payload = exc.status, exc.body
                except json.JSONDecodeError:
                    status, payload = 400, {"message": "Malformed JSON in request body."}
                data = (
                    payload.encode()
                    if isinstance(payload, str)
                    else json.dumps(payload, default=_json_value).encode()
                )
                self.send_response(status)
                content_type = "text/plain" if isinstance(payload, str) else "application/json"
                self.send_header("Content-Type", f"{content_type};charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        return Handler

    ROUTES: tuple[tuple[str, str, str], ...] = (
        ("GET", r"/api/health", "health"),
        ("GET", r"/api/session/properties", "properties"),
        ("POST", r"/api/setup", "setup"),
        ("POST", r"/api/session", "login"),
        ("GET", r"/api/database", "list_databases"),
        ("POST", r"/api/database", "create_database"),
        ("PUT", r"/api/database/(\d+)", "update_database"),
        ("POST", r"/api/database/(\d+)/sync_schema", "sync_schema"),
        ("GET", r"/api/table", "list_tables"),
        ("GET", r"/api/card", "list_cards"),
        ("POST", r"/api/card", "create_card"),
        ("PUT", r"/api/card/(\d+)", "update_card"),
        ("POST", r"/api/card/(\d+)/query", "query_card"),
        ("GET", r"/api/dashboard", "list_dashboards"),
        ("POST", r"/api/dashboard", "create_dashboard"),
        ("GET", r"/api/dashboard/(\d+)", "get_dashboard"),
        ("PUT", r"/api/dashboard/(\d+)", "update_dashboard"),
    )
    PUBLIC = frozenset({"health", "properties", "setup", "login"})

    def dispatch(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, session: str | None
    ) -> tuple[int, Any]:
        for route_method, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                self.state.requests[(method, pattern)] += 1
                if name not in self.PUBLIC and session not in self.state.sessions:
                    return 401, "Unauthenticated"
                if not isinstance(body, dict):
                    raise ApiError(400, {"message": "request body must be a JSON object"})
                args = [int(g) for g in match.groups()]
                result: tuple[int, Any] = getattr(self, f"_{name}")(*args, body=body, query=query)
                return result
        return 404, "API endpoint does not exist."

    # ------------------------------------------------------------------ endpoints
    def _health(self, **_: Any) -> tuple[int, Any]:
        if self.state.health_checks_before_ready > 0:
            self.state.health_checks_before_ready -= 1
            return 503, {"status": "initializing", "progress": 0.5}
        return 200, {"status": "ok"}

    def _properties(self, **_: Any) -> tuple[int, Any]:
        return 200, {
            "setup-token": None if self.state.users else self.state.setup_token,
            "has-user-setup": bool(self.state.users),
            "site-name": self.state.site_name,
            "version": {"tag": "v0.52.4-fake"},
        }

    def _setup(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        if body.get("token") != self.state.setup_token:
            raise ApiError(403, {"message": "Token does not match the setup token."})
        if self.state.users:
            raise ApiError(
                403,
                {
                    "message": "The /api/setup route can only be used to create the first user, "
                    "however a user currently exists."
                },
            )
        user = body.get("user")
        prefs = body.get("prefs")
        if not isinstance(user, dict):
            raise _field_errors(user="value must be a map.")
        if not isinstance(prefs, dict):
            raise _field_errors(prefs="value must be a map.")
        email = _non_blank(user, "email", "user.")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise _field_errors(**{"user.email": "value must be a valid email address."})
        password = _non_blank(user, "password", "user.")
        if len(password) < 6 or not re.search(r"\d", password) or password.lower() in COMMON_PASSWORDS:
            raise _field_errors(**{"user.password": "password is too common."})
        self.state.site_name = _non_blank(prefs, "site_name", "prefs.")
        self.state.users[email] = {
            "id": self.state.next_id("user"),
            "email": email,
            "first_name": user.get("first_name"),
            "last_name": user.get("last_name"),
            "password": password,
            "is_superuser": True,
        }
        return 200, {"id": self._new_session(email)}

    def _new_session(self, email: str) -> str:
        session_id = secrets.token_hex(16)
        self.state.sessions[session_id] = email
        return session_id

    def _login(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        username = _non_blank(body, "username")
        password = _non_blank(body, "password")
        user = self.state.users.get(username)
        if user is None or user["password"] != password:
            raise ApiError(401, {"errors": {"password": "did not match stored password"}})
        return 200, {"id": self._new_session(username)}

    # databases
    def _public_database(self, db: dict[str, Any]) -> dict[str, Any]:
        details = dict(db["details"])
        if "password" in details:
            details["password"] = OBFUSCATED
        return {**db, "details": details}

    def _list_databases(self, **_: Any) -> tuple[int, Any]:
        dbs = [self._public_database(d) for d in self.state.databases.values()]
        return 200, {"data": dbs, "total": len(dbs)}

    def _check_connection(self, engine: str, details: dict[str, Any]) -> None:
        if engine != "mysql":
            return
        for key in ("host", "dbname", "user"):
            if not details.get(key):
                raise ApiError(400, {"message": f"details.{key} is required", "errors": {key: "required"}})
        try:
            with _connect(details) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        except pymysql.MySQLError as exc:
            raise ApiError(
                400, {"message": f"Couldn't connect to the database: {exc}", "errors": {"host": str(exc)}}
            ) from None

    def _validated_database(self, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        name = _non_blank(body, "name")
        engine = _non_blank(body, "engine")
        if engine not in SUPPORTED_ENGINES:
            raise _field_errors(engine="value must be a valid database engine.")
        details = body.get("details")
        if not isinstance(details, dict):
            raise _field_errors(details="value must be a map.")
        self._check_connection(engine, details)
        return name, engine, details

    def _create_database(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        name, engine, details = self._validated_database(body)
        db_id = self.state.next_id("database")
        self.state.databases[db_id] = {
            "id": db_id,
            "name": name,
            "engine": engine,
            "details": dict(details),
            "is_sample": False,
            "is_full_sync": body.get("is_full_sync", True),
        }
        return 200, self._public_database(self.state.databases[db_id])

    def _update_database(self, db_id: int, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        db = self.state.databases.get(db_id)
        if db is None:
            raise ApiError(404, "Not found.")
        details = body.get("details", db["details"])
        if isinstance(details, dict) and details.get("password") == OBFUSCATED:
            details = {**details, "password": db["details"].get("password")}
        name, engine, details = self._validated_database(
            {
                "name": body.get("name", db["name"]),
                "engine": body.get("engine", db["engine"]),
                "details": details,
            }
        )
        db.update(name=name, engine=engine, details=dict(details))
        return 200, self._public_database(db)

    def _sync_schema(self, db_id: int, **_: Any) -> tuple[int, Any]:
        db = self.state.databases.get(db_id)
        if db is None:
            raise ApiError(404, "Not found.")
        if db["engine"] == "mysql":
            with _connect(db["details"]) as conn, conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                names = [row[0] for row in cur.fetchall()]
            known = {(t["db_id"], t["name"]) for t in self.state.tables.values()}
            for table in names:
                if (db_id, table) not in known:
                    table_id = self.state.next_id("table")
                    self.state.tables[table_id] = {
                        "id": table_id,
                        "db_id": db_id,
                        "name": table,
                        "active": True,
                    }
        return 200, {"status": "ok"}

    def _list_tables(self, **_: Any) -> tuple[int, Any]:
        return 200, list(self.state.tables.values())

    # cards
    def _run_native(self, dataset_query: dict[str, Any]) -> dict[str, Any]:
        db = self.state.databases[dataset_query["database"]]
        sql = dataset_query["native"]["query"]
        try:
            with _connect(db["details"]) as conn, conn.cursor() as cur:
                cur.execute(sql)
                cols = [{"name": d[0]} for d in cur.description or ()]
                rows = [list(r) for r in cur.fetchall()]
        except pymysql.MySQLError as exc:
            return {"status": "failed", "error": str(exc), "data": {"rows": [], "cols": []}}
        return {"status": "completed", "row_count": len(rows), "data": {"rows": rows, "cols": cols}}

    def _validated_card(self, body: dict[str, Any], partial: bool = False) -> dict[str, Any]:
        if not partial or "name" in body:
            _non_blank(body, "name")
        if not partial or "display" in body:
            _non_blank(body, "display")
        if (not partial or "visualization_settings" in body) and not isinstance(
            body.get("visualization_settings"), dict
        ):
            raise _field_errors(visualization_settings="value must be a map.")
        if not partial or "dataset_query" in body:
            query = body.get("dataset_query")
            if not isinstance(query, dict):
                raise _field_errors(dataset_query="value must be a map.")
            if query.get("type") != "native" or not isinstance(query.get("native"), dict):
                raise _field_errors(dataset_query="only native queries are supported by this fake.")
            if query.get("database") not in self.state.databases:
                raise ApiError(400, {"message": f"Database {query.get('database')} does not exist."})
            _non_blank(query["native"], "query", "dataset_query.native.")
        return body

    def _list_cards(self, *, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        f = (query.get("f") or ["all"])[0]
        if f not in {"all", "mine", "archived", "database", "table", "using_model", "bookmarked"}:
            raise _field_errors(f="value must be one of the card filter options.")
        cards = [c for c in self.state.cards.values() if bool(c.get("archived")) == (f == "archived")]
        return 200, cards

    def _create_card(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        self._validated_card(body)
        result = self._run_native(body["dataset_query"])  # Metabase runs it to get result_metadata
        card_id = self.state.next_id("card")
        self.state.cards[card_id] = {
            "id": card_id,
            "name": body["name"],
            "description": body.get("description"),
            "display": body["display"],
            "type": body.get("type", "question"),
            "visualization_settings": body["visualization_settings"],
            "dataset_query": body["dataset_query"],
            "collection_id": body.get("collection_id"),
            "archived": False,
            "result_metadata": result["data"]["cols"],
        }
        return 200, self.state.cards[card_id]

    def _update_card(self, card_id: int, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        card = self.state.cards.get(card_id)
        if card is None:
            raise ApiError(404, "Not found.")
        self._validated_card(body, partial=True)
        allowed = {
            "name",
            "description",
            "display",
            "type",
            "visualization_settings",
            "dataset_query",
            "archived",
        }
        card.update({k: v for k, v in body.items() if k in allowed})
        return 200, card

    def _query_card(self, card_id: int, **_: Any) -> tuple[int, Any]:
        card = self.state.cards.get(card_id)
        if card is None:
            raise ApiError(404, "Not found.")
        return 202, self._run_native(card["dataset_query"])

    # dashboards
    def _dashboard_view(self, dashboard: dict[str, Any]) -> dict[str, Any]:
        dashcards = [
            {**d, "card": self.state.cards.get(d["card_id"])}
            for d in self.state.dashcards.values()
            if d["dashboard_id"] == dashboard["id"]
        ]
        return {**dashboard, "dashcards": sorted(dashcards, key=lambda d: d["id"]), "tabs": []}

    def _list_dashboards(self, *, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        f = (query.get("f") or ["all"])[0]
        archived = f == "archived"
        return 200, [d for d in self.state.dashboards.values() if bool(d.get("archived")) == archived]

    def _create_dashboard(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        name = _non_blank(body, "name")
        dashboard_id = self.state.next_id("dashboard")
        self.state.dashboards[dashboard_id] = {
            "id": dashboard_id,
            "name": name,
            "description": body.get("description"),
            "collection_id": body.get("collection_id"),
            "archived": False,
            "parameters": body.get("parameters", []),
        }
        return 200, self.state.dashboards[dashboard_id]

    def _get_dashboard(self, dashboard_id: int, **_: Any) -> tuple[int, Any]:
        dashboard = self.state.dashboards.get(dashboard_id)
        if dashboard is None:
            raise ApiError(404, "Not found.")
        return 200, self._dashboard_view(dashboard)

    def _update_dashboard(self, dashboard_id: int, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        dashboard = self.state.dashboards.get(dashboard_id)
        if dashboard is None:
            raise ApiError(404, "Not found.")
        for key in ("name", "description", "archived"):
            if key in body:
                dashboard[key] = body[key]
        if "dashcards" in body:
            self._replace_dashcards(dashboard_id, body["dashcards"])
        return 200, self._dashboard_view(dashboard)

    def _replace_dashcards(self, dashboard_id: int, dashcards: Any) -> None:
        if not isinstance(dashcards, list):
            raise _field_errors(dashcards="value must be an array.")
        mine = {i for i, d in self.state.dashcards.items() if d["dashboard_id"] == dashboard_id}
        staged: list[dict[str, Any]] = []
        for d in dashcards:
            if not isinstance(d, dict):
                raise _field_errors(dashcards="value must be an array of maps.")
            for key in ("id", "row", "col", "size_x", "size_y"):
                if not isinstance(d.get(key), int):
                    raise _field_errors(**{f"dashcards.{key}": "value must be an integer."})
            if d["row"] < 0 or d["col"] < 0 or d["size_x"] < 1 or d["size_y"] < 1:
                raise _field_errors(dashcards="row/col must be >= 0 and sizes >= 1.")
            if d["col"] + d["size_x"] > GRID_WIDTH:
                raise _field_errors(dashcards=f"dashcard does not fit the {GRID_WIDTH}-column grid.")
            if d["id"] > 0 and d["id"] not in mine:
                raise ApiError(400, {"message": f"Dashcard {d['id']} is not on dashboard {dashboard_id}."})
            if d.get("card_id") is not None and d["card_id"] not in self.state.cards:
                raise ApiError(400, {"message": f"Card {d['card_id']} does not exist."})
            staged.append(d)
        for dashcard_id in mine - {d["id"] for d in staged}:
            del self.state.dashcards[dashcard_id]
        for d in staged:
            dashcard_id = d["id"] if d["id"] > 0 else self.state.next_id("dashcard")
            self.state.dashcards[dashcard_id] = {
                "id": dashcard_id,
                "dashboard_id": dashboard_id,
                "card_id": d.get("card_id"),
                "row": d["row"],
                "col": d["col"],
                "size_x": d["size_x"],
                "size_y": d["size_y"],
                "parameter_mappings": d.get("parameter_mappings", []),
                "series": d.get("series", []),
                "visualization_settings": d.get("visualization_settings", {}),
            }
