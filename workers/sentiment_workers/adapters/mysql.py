"""MySQL adapter: the ``dw_messages`` fact table (DDL, idempotent upsert) and the dashboard queries.

All values travel as query parameters; the only identifier interpolated is the table name, which
:class:`WorkerConfig` validates against ``^[A-Za-z_][A-Za-z0-9_]{0,63}$`` (and :func:`quote_identifier`
checks again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import aiomysql
import pymysql

from sentiment_workers.config import SQL_IDENTIFIER, WorkerConfig
from sentiment_workers.metrics import PipelineMetrics
from sentiment_workers.retry import with_retries

_IDENTIFIER = re.compile(SQL_IDENTIFIER)
# Server/client codes meaning "the server went away, is restarting or is busy": retry the same transaction.
TRANSIENT_CODES = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1053,  # ER_SERVER_SHUTDOWN: server shutdown in progress
        1077,  # ER_NORMAL_SHUTDOWN
        1079,  # ER_SHUTDOWN_COMPLETE
        1152,  # ER_ABORTING_CONNECTION
        1158,  # ER_NET_READ_ERROR
        1159,  # ER_NET_READ_INTERRUPTED
        1160,  # ER_NET_ERROR_ON_WRITE
        1161,  # ER_NET_WRITE_INTERRUPTED
        1205,  # ER_LOCK_WAIT_TIMEOUT
        1213,  # ER_LOCK_DEADLOCK
        1927,  # ER_CONNECTION_KILLED
        2002,  # CR_CONNECTION_ERROR (socket)
        2003,  # CR_CONN_HOST_ERROR: cannot connect
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST
        2055,  # CR_SERVER_LOST_EXTENDED
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT: idle connection dropped by the server
    }
)
# Codes meaning "the server refuses these rows": isolate them, the same rows would be refused again.
REJECTION_CODES = frozenset(
    {
        1048,  # ER_BAD_NULL_ERROR
        1153,  # ER_NET_PACKET_TOO_LARGE: over max_allowed_packet (a smaller batch fits)
        1264,  # ER_WARN_DATA_OUT_OF_RANGE
        1265,  # WARN_DATA_TRUNCATED
        1292,  # ER_TRUNCATED_WRONG_VALUE (bad datetime)
        1366,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD (incorrect string value)
        1406,  # ER_DATA_TOO_LONG
        1452,  # ER_NO_REFERENCED_ROW_2
        3140,  # ER_INVALID_JSON_TEXT (MySQL)
        3157,  # ER_INVALID_JSON_CHARSET (MySQL)
        3819,  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
        4025,  # ER_CONSTRAINT_FAILED (MariaDB CHECK, incl. JSON_VALID on a JSON column: depth over 32)
    }
)
# Codes meaning "the server refuses these credentials or this user's rights": a wrong Secret, missing grants.
# No retry fixes them; the worker waits (slowly) for a person to fix the Secret (retry.with_retries).
AUTH_CODES = frozenset(
    {
        1044,  # ER_DBACCESS_DENIED_ERROR: access denied for user to database
        1045,  # ER_ACCESS_DENIED_ERROR: access denied for user (using password: YES)
        1130,  # ER_HOST_NOT_PRIVILEGED: host is not allowed to connect
        1142,  # ER_TABLEACCESS_DENIED_ERROR: command denied to user for table
        1143,  # ER_COLUMNACCESS_DENIED_ERROR
        1227,  # ER_SPECIFIC_ACCESS_DENIED_ERROR: needs a privilege the user lacks
        1698,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
        1820,  # ER_MUST_CHANGE_PASSWORD
        1862,  # ER_MUST_CHANGE_PASSWORD_LOGIN: the password expired
        3118,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
        4151,  # ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
    }
)
# One MySQL protocol packet carries 16 MiB - 1; a statement over it is split over several packets. Against a
# statement over max_allowed_packet, MariaDB answers 1153 (a rejection) or, depending on timing, drops the
# connection mid-statement (seen: "Packet sequence number wrong" on a 20 MB statement, which looks transient
# and would be retried forever). pymysql's executemany keeps multi-row statements under ~1 MB, so only a
# single row can get there: it is refused before it is sent (the statement's text fits in the margin).
MAX_ROW_BYTES = 16 * 1024 * 1024 - 64 * 1024
NO_SUCH_TABLE = 1146  # ER_NO_SUCH_TABLE
_ESCAPED = b"\\'\"\0\n\r\x1a"


class RowTooLarge(ValueError):
    """A row whose values are too large for one MySQL statement: refused before it is sent."""


def row_bytes(params: Sequence[Any]) -> int:
    """The size of a row's values in a statement: UTF-8 bytes plus one per character MySQL escapes."""
    size = 0
    for value in params:
        if isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            size += len(data) + sum(data.count(c) for c in _ESCAPED)
        else:
            size += 32
    return size


# Client-side errors raised while encoding one row's values.
_ENCODING_ERRORS = (UnicodeError, OverflowError, RecursionError)


def quote_identifier(name: str) -> str:
    """Backtick-quote a validated identifier (table, database, user name)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}")
    return f"`{name}`"


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a pymysql error, if it has one."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_transient(exc: BaseException) -> bool:
    """True for connection losses, restarts, deadlocks and lock wait timeouts: retry the transaction."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):  # the client's connection is closed or broken
        return True
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InternalError):
        code = error_code(exc)
        return code is None or code in TRANSIENT_CODES
    return False


def is_auth_error(exc: BaseException) -> bool:
    """True for "MySQL refuses these credentials or this user's rights" (access denied, host not allowed,
    command denied, account locked, password expired): the Secret or the grants are wrong."""
    return isinstance(exc, pymysql.err.MySQLError) and error_code(exc) in AUTH_CODES


def is_rejection(exc: BaseException) -> bool:
    """True for errors that mean "MySQL refuses these rows": encoding (a value the connection charset
    cannot carry), constraints (CHECK, NOT NULL, foreign keys), data too long or out of range, JSON the
    server does not accept (too deep), a statement over ``max_allowed_packet``. Isolate and dead-letter.

    Anything else (no such table, syntax) is neither transient nor a rejection: it would refuse every row,
    so it propagates instead of dead-lettering the stream one message at a time (refused credentials or
    rights, :func:`is_auth_error`, are retried slowly instead).
    """
    if isinstance(exc, (*_ENCODING_ERRORS, RowTooLarge)):
        return True
    if isinstance(exc, pymysql.err.DataError | pymysql.err.IntegrityError):
        return True
    return isinstance(exc, pymysql.err.MySQLError) and error_code(exc) in REJECTION_CODES


def create_table_sql(table: str) -> str:
    """Idempotent DDL of the fact table (utf8mb4 for emoji; score constrained to 0..1)."""
    return f"""
CREATE TABLE IF NOT EXISTS {quote_identifier(table)} (
  id VARCHAR(191) NOT NULL,
  user_id VARCHAR(191) NULL,
  comment MEDIUMTEXT NOT NULL,
  ingest_ts DATETIME(6) NOT NULL,
  sentiment_label VARCHAR(64) NOT NULL,
  sentiment_score DOUBLE NOT NULL,
  raw_json JSON NULL,
  model VARCHAR(255) NOT NULL,
  processed_at DATETIME(6) NOT NULL,
  PRIMARY KEY (id),
  KEY ix_ingest_ts (ingest_ts),
  KEY ix_label (sentiment_label),
  CONSTRAINT ck_score CHECK (sentiment_score >= 0 AND sentiment_score <= 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""


def upsert_sql(table: str) -> str:
    """One row per message id: a re-processed message updates its row, never adds one."""
    return (
        f"INSERT INTO {quote_identifier(table)} "
        "(id, user_id, comment, ingest_ts, sentiment_label, sentiment_score, raw_json, model, processed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), comment = VALUES(comment), "
        "ingest_ts = VALUES(ingest_ts), sentiment_label = VALUES(sentiment_label), "
        "sentiment_score = VALUES(sentiment_score), raw_json = VALUES(raw_json), "
        "model = VALUES(model), processed_at = VALUES(processed_at)"
    )


@dataclass(frozen=True)
class WarehouseRow:
    """One classified message, as it lands in the fact table."""

    id: str
    user_id: str | None
    comment: str
    ingest_ts: datetime
    sentiment_label: str
    sentiment_score: float
    raw_json: dict[str, Any] | None
    model: str
    processed_at: datetime

    def params(self) -> tuple[Any, ...]:
        raw = None if self.raw_json is None else json.dumps(self.raw_json, ensure_ascii=False, default=str)
        return (
            self.id,
            self.user_id,
            self.comment,
            self.ingest_ts,
            self.sentiment_label,
            self.sentiment_score,
            raw,
            self.model,
            self.processed_at,
        )


@dataclass(frozen=True)
class Report:
    """The three dashboard numbers."""

    total: int
    by_label: dict[str, int]
    per_day: list[tuple[date, int]]


class Warehouse:
    """A small aiomysql pool to the warehouse database."""

    def __init__(self, pool: aiomysql.Pool, table: str) -> None:
        self.pool = pool
        self.table = table
        quote_identifier(table)

    @classmethod
    async def connect(cls, config: WorkerConfig, *, maxsize: int = 2, **overrides: Any) -> Warehouse:
        options: dict[str, Any] = {
            "host": config.mysql_host,
            "port": config.mysql_port,
            "user": config.mysql_user,
            "password": config.mysql_password.get_secret_value(),
            "db": config.mysql_database,
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": 5,
            "minsize": 0,
            "maxsize": maxsize,
            "pool_recycle": 300,
        }
        options.update(overrides)
        pool = await aiomysql.create_pool(**options)
        return cls(pool, config.mysql_table)

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()

    async def ping(self) -> None:
        """``SELECT 1`` as the configured user (reachability probe); raises when MySQL is not reachable."""
        await self._execute("SELECT 1")

    async def _execute(self, sql: str, params: Sequence[Any] | None = None, *, many: bool = False) -> Any:
        """Run one statement in its own transaction; a broken connection is closed, never reused."""
        conn = await self.pool.acquire()
        try:
            async with conn.cursor() as cur:
                if many:
                    await cur.executemany(sql, params)
                else:
                    await cur.execute(sql, params)
                rows = await cur.fetchall()
            await conn.commit()
            return rows
        except BaseException:
            conn.close()
            raise
        finally:
            self.pool.release(conn)

    async def ensure_schema(self) -> None:
        """Create the fact table if missing (idempotent; run at worker start)."""
        conn = await self.pool.acquire()
        try:
            async with conn.cursor() as cur:
                await cur.execute("SET SESSION sql_notes = 0")  # "already exists" is no news
                await cur.execute(create_table_sql(self.table))
                await cur.execute("SET SESSION sql_notes = 1")
            await conn.commit()
        except BaseException:
            conn.close()
            raise
        finally:
            self.pool.release(conn)

    async def upsert(self, rows: Sequence[WarehouseRow]) -> None:
        """Write a batch in ONE transaction (executemany, ``ON DUPLICATE KEY UPDATE``). A row too large for
        one statement raises :class:`RowTooLarge` (a rejection) before anything is sent; a batch over the
        server's ``max_allowed_packet`` gets 1153 (a rejection too: bisection writes it in smaller parts)."""
        if not rows:
            return
        params = [r.params() for r in rows]
        for r, p in zip(rows, params, strict=True):
            size = row_bytes(p)
            if size > MAX_ROW_BYTES:
                raise RowTooLarge(
                    f"row {r.id[:100]!r}: {size} bytes of values, over the {MAX_ROW_BYTES} one MySQL "
                    "statement can carry"
                )
        try:
            await self._execute(upsert_sql(self.table), params, many=True)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) != NO_SUCH_TABLE:
                raise
            # The table is gone (a server back empty, a table dropped by hand): create it as a worker does at
            # start and write again, rather than exiting and leaving this claim leased until it expires.
            await self.ensure_schema()
            await self._execute(upsert_sql(self.table), params, many=True)

    async def count(self) -> int:
        rows = await self._execute(f"SELECT COUNT(*) FROM {quote_identifier(self.table)}")
        return int(rows[0][0])

    async def report(self) -> Report:
        """Total rows, rows per sentiment label, rows per ingest day."""
        table = quote_identifier(self.table)
        total = await self.count()
        by_label = await self._execute(
            f"SELECT sentiment_label, COUNT(*) FROM {table} GROUP BY sentiment_label ORDER BY sentiment_label"
        )
        per_day = await self._execute(
            f"SELECT DATE(ingest_ts) AS day, COUNT(*) FROM {table} GROUP BY day ORDER BY day"
        )
        return Report(
            total=total,
            by_label={str(label): int(n) for label, n in by_label},
            per_day=[(day, int(n)) for day, n in per_day],
        )


T = TypeVar("T")


async def retrying(operation: Callable[[], Awaitable[T]], metrics: PipelineMetrics) -> T:
    """``operation`` (a MySQL call) under the data plane's retry policy
    (:func:`sentiment_workers.retry.with_retries` with this adapter's error classes): transient errors and
    refused credentials are retried, a rejection is raised at once."""
    return await with_retries(
        operation, store="mysql", is_transient=is_transient, is_auth_error=is_auth_error, metrics=metrics
    )
