"""One clear line for the errors an operator's command meets (a server unreachable, a refused login)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer

T = TypeVar("T")


def run_or_exit(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())``; any error becomes one ``error: ...`` line on stderr and exit status 1."""
    import asyncio

    try:
        return asyncio.run(main())
    except (typer.Exit, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        typer.echo(f"error: {describe_error(exc)}", err=True)
        raise typer.Exit(1) from None


def describe_error(exc: BaseException) -> str:
    """``exc`` in one line, naming the server when it is a connection problem."""
    from sentiment_workers.adapters import kafka, mongo, mysql

    text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    if mongo.is_auth_error(exc):
        return f"MongoDB refused the credentials (SENTIMENT_MONGO_URI): {text}"
    if mysql.is_auth_error(exc):
        return f"MySQL refused the credentials (SENTIMENT_MYSQL_USER/PASSWORD): {text}"
    if kafka.is_auth_error(exc):
        return f"Kafka refused the credentials (SENTIMENT_KAFKA_SASL_*): {text}"
    if mongo.is_transient(exc):
        return f"cannot reach MongoDB (SENTIMENT_MONGO_URI): {text}"
    if mysql.is_transient(exc):
        return f"cannot reach MySQL (SENTIMENT_MYSQL_HOST/PORT): {text}"
    if type(exc).__module__.startswith("aiokafka"):
        return f"cannot reach Kafka (SENTIMENT_KAFKA_BOOTSTRAP_SERVERS): {text}"
    return text
