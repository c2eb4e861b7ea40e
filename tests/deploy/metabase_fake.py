"""A faithful fake of Metabase's documented REST API, served over real HTTP on loopback.

No Metabase jar can be had on these machines (docs/metabase.md), so the provisioner is tested against
this stand-in. It implements the endpoints the provisioner uses with Metabase's request/response shapes
and validation rules, in two versions (:data:`VERSIONS`): the v0.52 line and the current LTS line, v0.58
(:data:`CURRENT`, the chart's default image). Every rule names the Metabase source it follows (repository
metabase/metabase; "v0.52" = the compojure-era files under src/metabase/api/, "current" = the files
named, read on master):

- ``GET /api/health``: ``{"status": "initializing"}`` with 503 while "starting", then ``{"status": "ok"}``.
- ``GET /api/session/properties``: ``setup-token``, ``has-user-setup`` and ``version.tag``. The token is
  never cleared (src/metabase/setup/settings.clj: a public setting nothing resets).
- ``POST /api/setup`` (src/metabase/setup/api.clj; v0.52 src/metabase/api/setup.clj): the body is
  validated first, every problem a 400 ``{"errors": {...}}`` - a wrong or missing token is
  ``{"errors": {"token": "Token does not match the setup token."}}`` (a malli schema error, not a 403),
  a weak password ``"password is too common."``, a blank ``site_name``; only then does an existing user
  give 403 ("... can only be used to create the first user, however a user currently exists.").
- ``POST /api/session``: 401 ``{"errors": {"password": "did not match stored password"}}``.
- Every other endpoint: 401 ``Unauthenticated`` without a valid ``X-Metabase-Session`` header.
- ``GET/POST /api/database``, ``PUT /api/database/:id``: the listing is ``{"data": [...], "total": n}``
  with passwords obfuscated (``**MetabasePass**``) and the bundled "Sample Database". POST tests the
  connection by really connecting to the MySQL server (here MariaDB, with pymysql); PUT first puts the
  stored secret back for an obfuscated one (``upsert-sensitive-fields``) and tests the connection ONLY when
  the details or the engine changed (``details-changed?``/``engine-changed?`` in
  src/metabase/warehouses_rest/api.clj, the same in v0.52's src/metabase/api/database.clj). A failure is a
  400 with ``message``; :attr:`FakeMetabaseState.connection_tests` counts the tests.
- ``POST /api/database/:id/sync_schema`` reads the real server's tables into ``GET /api/table``.
- ``GET/POST /api/card``, ``PUT /api/card/:id`` (src/metabase/queries/api/card.clj; v0.52
  src/metabase/api/card.clj): POST requires ``name``, ``display`` (non-blank), ``dataset_query`` and
  ``visualization_settings`` (maps) and a ``description`` that is absent, null or NON-BLANK
  (``[:maybe ms/NonBlankString]``: ``""`` is a 400 "nullable value must be a non-blank string."); PUT takes
  any string as description (``[:maybe :string]``). A native query must name an existing database; as
  Metabase does to compute ``result_metadata``, saving runs the query (with the stored credentials).
  Queries are stored and returned in the version's shape: legacy MBQL 4 on v0.52, MBQL 5 from v0.57 on
  (docs/developers-guide/api-changelog.md, "Metabase 0.57.0"; requests may use either shape there,
  ``normalize-dataset-query`` "handles both (legacy) MBQL and pMBQL queries").
- Revisions (``push-revision!`` of Metabase's revision model, src/metabase/models/revision.clj in the
  v0.4x-v0.52 tree: "Record a new Revision ... if it's changed compared to the last revision"): one on
  creation and one per update whose serialized card or dashboard differs from the last revision.
- ``POST /api/card/:id/query``: runs the card (202, ``{"status": "completed", "data": {...}}``).
- ``GET/POST /api/dashboard``, ``GET/PUT /api/dashboard/:id``: ``GET`` returns ``dashcards`` and ``tabs``.
  A PUT with ``dashcards`` REBUILDS the tabs from the request (``update-dashcards-and-tabs!``: current
  src/metabase/dashboards_rest/api.clj, v0.52 src/metabase/api/dashboard.clj): request tabs whose ids are
  not on the dashboard (negative ones) are created, tabs left out are deleted together with their
  dashcards, a request without ``tabs`` deletes them all. Before that, a 400 "This dashboard has tab, makes
  sure every card has a tab" when some dashcard has no ``dashboard_tab_id`` while the dashboard already has
  tabs (v0.52) / while the request has tabs (current, which first puts dashcards without a tab on the only
  tab when the request has exactly one).
  Dashcards are then diffed by id (``u/row-diff``): ids not on the dashboard are created, those left out
  are deleted; a dashcard naming a tab that no longer exists breaks the foreign key and the whole update
  is rolled back (500). Layouts must fit the 24-column grid and reference existing cards.

It also counts requests per (method, route) so tests can check what a re-run did.
"""

from __future__ import annotations

import copy
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
TAB_ERROR = "This dashboard has tab, makes sure every card has a tab"


@dataclass(frozen=True)
class MetabaseVersion:
    """The behaviour that differs between the Metabase versions the provisioner must work with."""

    tag: str
    mbql5: bool
    """Card queries stored and returned as MBQL 5 (v0.57+), else legacy MBQL 4."""
    tab_check_on_request: bool
    """The every-card-has-a-tab check looks at the request's tabs (current) or the stored ones (v0.52)."""
    single_tab_fills_in: bool
    """A request with exactly one tab puts dashcards without a tab on it (current)."""

    @property
    def id(self) -> str:
        return self.tag


V0_52 = MetabaseVersion("v0.52.4", mbql5=False, tab_check_on_request=False, single_tab_fills_in=False)
CURRENT = MetabaseVersion("v0.58.39", mbql5=True, tab_check_on_request=True, single_tab_fills_in=True)
VERSIONS: tuple[MetabaseVersion, ...] = (V0_52, CURRENT)


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


def native_parts(dataset_query: Any) -> tuple[Any, str, dict[str, Any]] | None:
    """``(database, sql, template-tags)`` of a native query in the legacy or the MBQL 5 shape."""
    if not isinstance(dataset_query, dict):
        return None
    if dataset_query.get("lib/type") == "mbql/query":
        stages = dataset_query.get("stages")
        if not (isinstance(stages, list) and len(stages) == 1 and isinstance(stages[0], dict)):
            return None
        stage = stages[0]
        if stage.get("lib/type") != "mbql.stage/native" or not isinstance(stage.get("native"), str):
            return None
        return dataset_query.get("database"), stage["native"], dict(stage.get("template-tags") or {})
    native = dataset_query.get("native")
    if dataset_query.get("type") != "native" or not isinstance(native, dict):
        return None
    if not isinstance(native.get("query"), str):
        return None
    return dataset_query.get("database"), native["query"], dict(native.get("template-tags") or {})


def stored_query(version: MetabaseVersion, database: int, sql: str, tags: dict[str, Any]) -> dict[str, Any]:
    """A native query in the shape ``version`` stores and returns."""
    if version.mbql5:
        return {
            "lib/type": "mbql/query",
            "database": database,
            "stages": [{"lib/type": "mbql.stage/native", "native": sql, "template-tags": tags}],
        }
    return {"type": "native", "database": database, "native": {"query": sql, "template-tags": tags}}


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
    tabs: dict[int, dict[str, Any]] = field(default_factory=dict)
    revisions: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    connection_tests: int = 0
    site_name: str | None = None
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    health_checks_before_ready: int = 0
    _ids: Counter[str] = field(default_factory=Counter)

    def next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def live(self, items: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items.values() if not i.get("archived")]

    def revisions_of(self, model: str, model_id: int) -> int:
        return sum(1 for m, i, _ in self.revisions if (m, i) == (model, model_id))

    def push_revision(self, model: str, model_id: int, serialized: dict[str, Any]) -> None:
        last = next((o for m, i, o in reversed(self.revisions) if (m, i) == (model, model_id)), None)
        if serialized != last:
            self.revisions.append((model, model_id, copy.deepcopy(serialized)))


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

    def __init__(self, *, version: MetabaseVersion = CURRENT, health_checks_before_ready: int = 0) -> None:
        self.version = version
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

    def upgrade(self, version: MetabaseVersion) -> None:
        """Restart as ``version`` on the same application database; from v0.57 on the saved queries are MBQL 5
        (api-changelog.md, 0.57.0: "serialized as MBQL 5 ... in the application database")."""
        with self._lock:
            self.version = version
            for card in self.state.cards.values():
                parts = native_parts(card["dataset_query"])
                if parts is not None:
                    card["dataset_query"] = stored_query(version, *parts)

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
            "setup-token": self.state.setup_token,
            "has-user-setup": bool(self.state.users),
            "site-name": self.state.site_name,
            "version": {"tag": self.version.tag},
        }

    def _setup(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        # The endpoint's schema is checked first and reports every bad field at once (400).
        user = body.get("user") if isinstance(body.get("user"), dict) else {}
        prefs = body.get("prefs") if isinstance(body.get("prefs"), dict) else {}
        errors: dict[str, str] = {}
        if body.get("token") != self.state.setup_token:
            errors["token"] = "Token does not match the setup token."
        email = user.get("email")
        if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            errors["email"] = "value must be a valid email address."
        password = user.get("password")
        if (
            not isinstance(password, str)
            or len(password) < 6
            or not re.search(r"\d", password)
            or password.lower() in COMMON_PASSWORDS
        ):
            errors["password"] = "password is too common."
        site_name = prefs.get("site_name")
        if not isinstance(site_name, str) or not site_name.strip():
            errors["site_name"] = "value must be a non-blank string."
        if errors:
            raise _field_errors(**errors)
        assert isinstance(email, str) and isinstance(password, str) and isinstance(site_name, str)
        if self.state.users:
            raise ApiError(
                403,
                {
                    "message": "The /api/setup route can only be used to create the first user, "
                    "however a user currently exists."
                },
            )
        self.state.site_name = site_name
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
        self.state.connection_tests += 1
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
        return name, engine, details

    def _create_database(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        name, engine, details = self._validated_database(body)
        self._check_connection(engine, details)
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
        if isinstance(details, dict):  # upsert-sensitive-fields: the placeholder means "keep the stored one"
            details = {k: (db["details"].get(k) if v == OBFUSCATED else v) for k, v in details.items()}
        name, engine, details = self._validated_database(
            {
                "name": body.get("name", db["name"]),
                "engine": body.get("engine", db["engine"]),
                "details": details,
            }
        )
        if details != db["details"] or engine != db["engine"]:  # details-changed? / engine-changed?
            self._check_connection(engine, details)
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
        parts = native_parts(dataset_query)
        assert parts is not None
        database, sql, _ = parts
        db = self.state.databases[database]
        try:
            with _connect(db["details"]) as conn, conn.cursor() as cur:
                cur.execute(sql)
                cols = [{"name": d[0]} for d in cur.description or ()]
                rows = [list(r) for r in cur.fetchall()]
        except pymysql.MySQLError as exc:
            return {"status": "failed", "error": str(exc), "data": {"rows": [], "cols": []}}
        return {"status": "completed", "row_count": len(rows), "data": {"rows": rows, "cols": cols}}

    def _normalized_query(self, query: Any) -> dict[str, Any]:
        """The request's ``dataset_query`` as this version stores it (or a 400)."""
        if not isinstance(query, dict):
            raise _field_errors(dataset_query="value must be a map.")
        if query.get("lib/type") == "mbql/query" and not self.version.mbql5:
            raise _field_errors(dataset_query="this fake's v0.52 takes legacy (MBQL 4) queries only.")
        parts = native_parts(query)
        if parts is None:
            raise _field_errors(dataset_query="only native SQL queries are supported by this fake.")
        database, sql, tags = parts
        if database not in self.state.databases:
            raise ApiError(400, {"message": f"Database {database} does not exist."})
        if not sql.strip():
            raise _field_errors(**{"dataset_query.native.query": "value must be a non-blank string."})
        return stored_query(self.version, database, sql, tags)

    def _validated_card(self, body: dict[str, Any], partial: bool = False) -> dict[str, Any]:
        """CardCreateSchema (POST) / CardUpdateSchema (PUT, ``partial``); returns the fields to store."""
        fields: dict[str, Any] = {}
        if not partial or "name" in body:
            fields["name"] = _non_blank(body, "name")
        if not partial or "display" in body:
            fields["display"] = _non_blank(body, "display")
        if "description" in body:
            description = body["description"]
            if description is not None and not isinstance(description, str):
                raise _field_errors(description="nullable value must be a string.")
            if not partial and description is not None and not description.strip():
                raise _field_errors(description="nullable value must be a non-blank string.")
            fields["description"] = description
        if not partial or "visualization_settings" in body:
            if not isinstance(body.get("visualization_settings"), dict):
                raise _field_errors(visualization_settings="value must be a map.")
            fields["visualization_settings"] = body["visualization_settings"]
        if not partial or "dataset_query" in body:
            fields["dataset_query"] = self._normalized_query(body.get("dataset_query"))
        for key in ("type", "archived", "collection_id"):
            if key in body:
                fields[key] = body[key]
        return fields

    @staticmethod
    def _card_revision(card: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "name",
            "description",
            "display",
            "type",
            "visualization_settings",
            "dataset_query",
            "archived",
        )
        return {k: card.get(k) for k in keys}

    def _list_cards(self, *, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        f = (query.get("f") or ["all"])[0]
        if f not in {"all", "mine", "archived", "database", "table", "using_model", "bookmarked"}:
            raise _field_errors(f="value must be one of the card filter options.")
        cards = [c for c in self.state.cards.values() if bool(c.get("archived")) == (f == "archived")]
        return 200, cards

    def _create_card(self, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        fields = self._validated_card(body)
        result = self._run_native(fields["dataset_query"])  # Metabase runs it to get result_metadata
        card_id = self.state.next_id("card")
        self.state.cards[card_id] = {
            "id": card_id,
            "description": None,
            "type": "question",
            "collection_id": None,
            "archived": False,
            **fields,
            "result_metadata": result["data"]["cols"],
        }
        self.state.push_revision("card", card_id, self._card_revision(self.state.cards[card_id]))
        return 200, self.state.cards[card_id]

    def _update_card(self, card_id: int, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        card = self.state.cards.get(card_id)
        if card is None:
            raise ApiError(404, "Not found.")
        card.update(self._validated_card(body, partial=True))
        self.state.push_revision("card", card_id, self._card_revision(card))
        return 200, card

    def _query_card(self, card_id: int, **_: Any) -> tuple[int, Any]:
        card = self.state.cards.get(card_id)
        if card is None:
            raise ApiError(404, "Not found.")
        return 202, self._run_native(card["dataset_query"])

    # dashboards
    def _tabs_of(self, dashboard_id: int) -> list[dict[str, Any]]:
        tabs = [t for t in self.state.tabs.values() if t["dashboard_id"] == dashboard_id]
        return sorted(tabs, key=lambda t: (t["position"], t["id"]))

    def _dashcards_of(self, dashboard_id: int) -> list[dict[str, Any]]:
        found = [d for d in self.state.dashcards.values() if d["dashboard_id"] == dashboard_id]
        return sorted(found, key=lambda d: d["id"])

    def _dashboard_view(self, dashboard: dict[str, Any]) -> dict[str, Any]:
        dashcards = [
            {**d, "card": self.state.cards.get(d["card_id"])} for d in self._dashcards_of(dashboard["id"])
        ]
        return {
            **dashboard,
            "dashcards": dashcards,
            "tabs": [dict(t) for t in self._tabs_of(dashboard["id"])],
        }

    def _dashboard_revision(self, dashboard: dict[str, Any]) -> dict[str, Any]:
        layout = ("card_id", "row", "col", "size_x", "size_y", "dashboard_tab_id", "visualization_settings")
        return {
            "name": dashboard["name"],
            "description": dashboard.get("description"),
            "archived": dashboard.get("archived"),
            "cards": [{k: d.get(k) for k in ("id", *layout)} for d in self._dashcards_of(dashboard["id"])],
            "tabs": [{"id": t["id"], "name": t["name"]} for t in self._tabs_of(dashboard["id"])],
        }

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
        self.state.push_revision(
            "dashboard", dashboard_id, self._dashboard_revision(self.state.dashboards[dashboard_id])
        )
        return 200, self._dashboard_view(self.state.dashboards[dashboard_id])

    def _get_dashboard(self, dashboard_id: int, **_: Any) -> tuple[int, Any]:
        dashboard = self.state.dashboards.get(dashboard_id)
        if dashboard is None:
            raise ApiError(404, "Not found.")
        return 200, self._dashboard_view(dashboard)

    def _update_dashboard(self, dashboard_id: int, *, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        dashboard = self.state.dashboards.get(dashboard_id)
        if dashboard is None:
            raise ApiError(404, "Not found.")
        if "name" in body:
            _non_blank(body, "name")
        plan = self._plan_dashcards_and_tabs(dashboard_id, body) if "dashcards" in body else None
        # Everything validated: apply (one transaction in Metabase).
        for key in ("name", "description", "archived"):
            if key in body:
                dashboard[key] = body[key]
        if plan is not None:
            self._apply_plan(dashboard_id, plan)
        self.state.push_revision("dashboard", dashboard_id, self._dashboard_revision(dashboard))
        return 200, self._dashboard_view(dashboard)

    def _plan_dashcards_and_tabs(self, dashboard_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """``update-dashcards-and-tabs!`` as a plan: validated, nothing stored yet."""
        dashcards = body.get("dashcards")
        if not isinstance(dashcards, list) or not all(isinstance(d, dict) for d in dashcards):
            raise _field_errors(dashcards="value must be an array of maps.")
        tabs = body.get("tabs") or []  # absent or null: the dashboard is to have no tabs
        if not isinstance(tabs, list) or not all(isinstance(t, dict) for t in tabs):
            raise _field_errors(tabs="value must be an array of maps.")
        dashcards = [dict(d) for d in dashcards]
        current_tabs = {t["id"]: t for t in self._tabs_of(dashboard_id)}
        for t in tabs:
            if not isinstance(t.get("id"), int):
                raise _field_errors(**{"tabs.id": "value must be an integer."})
            _non_blank(t, "name", "tabs.")
        if self.version.single_tab_fills_in and len(tabs) == 1:
            for d in dashcards:
                if d.get("dashboard_tab_id") is None:
                    d["dashboard_tab_id"] = tabs[0]["id"]
        tabs_to_check = tabs if self.version.tab_check_on_request else list(current_tabs.values())
        if tabs_to_check and not all(d.get("dashboard_tab_id") is not None for d in dashcards):
            raise ApiError(400, {"message": TAB_ERROR})
        # do-update-tabs! diffs by id like the dashcards: ids not on the dashboard are created.
        kept_tabs = {t["id"] for t in tabs if t["id"] in current_tabs}
        deleted_tabs = set(current_tabs) - kept_tabs
        new_tab_ids = {t["id"]: self.state.next_id("tab") for t in tabs if t["id"] not in current_tabs}
        final_tabs = kept_tabs | set(new_tab_ids.values())
        # Dashcards on deleted tabs go with them (foreign key, on delete cascade).
        current = {
            d["id"]: d
            for d in self._dashcards_of(dashboard_id)
            if d.get("dashboard_tab_id") not in deleted_tabs
        }
        staged: list[dict[str, Any]] = []
        for d in dashcards:
            for key in ("id", "row", "col", "size_x", "size_y"):
                if not isinstance(d.get(key), int):
                    raise _field_errors(**{f"dashcards.{key}": "value must be an integer."})
            if d["row"] < 0 or d["col"] < 0 or d["size_x"] < 1 or d["size_y"] < 1:
                raise _field_errors(dashcards="row/col must be >= 0 and sizes >= 1.")
            if d["col"] + d["size_x"] > GRID_WIDTH:
                raise _field_errors(dashcards=f"dashcard does not fit the {GRID_WIDTH}-column grid.")
            if d.get("card_id") is not None and d["card_id"] not in self.state.cards:
                raise ApiError(400, {"message": f"Card {d['card_id']} does not exist."})
            tab_id = d.get("dashboard_tab_id")
            tab_id = new_tab_ids.get(tab_id, tab_id)
            if tab_id is not None and tab_id not in final_tabs:
                raise ApiError(
                    500,
                    {"message": f"foreign key violation: no tab {tab_id} (the update is rolled back)"},
                )
            staged.append({**d, "dashboard_tab_id": tab_id})
        return {
            "tabs": tabs,
            "new_tab_ids": new_tab_ids,
            "deleted_tabs": deleted_tabs,
            "current": current,
            "staged": staged,
        }

    def _apply_plan(self, dashboard_id: int, plan: dict[str, Any]) -> None:
        for tab_id in plan["deleted_tabs"]:
            del self.state.tabs[tab_id]
            for dashcard_id in [
                i for i, d in self.state.dashcards.items() if d.get("dashboard_tab_id") == tab_id
            ]:
                del self.state.dashcards[dashcard_id]
        for position, t in enumerate(plan["tabs"]):
            tab_id = plan["new_tab_ids"].get(t["id"], t["id"])
            self.state.tabs[tab_id] = {
                "id": tab_id,
                "dashboard_id": dashboard_id,
                "name": t["name"],
                "position": position,
            }
        current: dict[int, dict[str, Any]] = plan["current"]
        staged: list[dict[str, Any]] = plan["staged"]
        for dashcard_id in set(current) - {d["id"] for d in staged}:
            del self.state.dashcards[dashcard_id]
        for d in staged:
            dashcard_id = d["id"] if d["id"] in current else self.state.next_id("dashcard")  # u/row-diff
            self.state.dashcards[dashcard_id] = {
                "id": dashcard_id,
                "dashboard_id": dashboard_id,
                "dashboard_tab_id": d["dashboard_tab_id"],
                "card_id": d.get("card_id"),
                "row": d["row"],
                "col": d["col"],
                "size_x": d["size_x"],
                "size_y": d["size_y"],
                "parameter_mappings": d.get("parameter_mappings", []),
                "series": d.get("series", []),
                "visualization_settings": d.get("visualization_settings", {}),
            }
