"""MySQL adapter: the ``dw_messages`` fact table (DDL, idempotent upsert) and the dashboard queries.

All values travel as query parameters; the only identifier interpolated is the table name, which
:class:`WorkerConfig` validates against ``^[A-Za-z_][A-Za-z0-9_]{0,63}$`` (and :func:`quote_identifier`
checks again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import aiomysql
import pymysql

from sentiment_workers.config import WorkerConfig

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Errors meaning "the server went away / is restarting": retry. (pymysql error codes)
_TRANSIENT_CODES = {1040, 1053, 1205, 1213, 2003, 2006, 2013, 2055, 1927}


def quote_identifier(name: str) -> str:
    """Backtick-quote a validated identifier (table, database, user name)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}")
    return f"`{name}`"


def is_transient(exc: BaseException) -> bool:
    """True for connection losses, restarts, deadlocks and lock timeouts (worth retrying)."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError | pymysql.err.InternalError):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code is None or code in _TRANSIENT_CODES
    return False


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


def read_only_user_statements(user: str, database: str) -> list[str]:
    """SQL (run by an admin; the password is a parameter) creating a SELECT-only BI user.

    Returns statements with one ``%s`` placeholder in the first (the password).
    """
    if not re.match(r"^[A-Za-z0-9_]{1,32}$", user):
        raise ValueError(f"invalid MySQL user name {user!r}")
    return [
        f"CREATE USER IF NOT EXISTS '{user}'@'%%' IDENTIFIED BY %s",
        f"GRANT SELECT ON {quote_identifier(database)}.* TO '{user}'@'%%'",
    ]


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
        """Write a batch in ONE transaction (executemany, ``ON DUPLICATE KEY UPDATE``)."""
        if rows:
            await self._execute(upsert_sql(self.table), [r.params() for r in rows], many=True)

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
