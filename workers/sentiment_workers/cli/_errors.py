"""One clear line for the errors an operator's command meets (a server unreachable, a refused login)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer

T = TypeVar("T")


class _Held(logging.Handler):
    """Holds the log records of a one-shot command while it runs (libraries log their connection failures,
    e.g. aiokafka's ``Unable connect to ...``, before raising the error that is then reported)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_or_exit(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())``; any error becomes one ``error: ...`` line on stderr and exit status 1.

    When logging is not configured (a one-shot command), library warnings go to stderr after a success, as
    before; after a failure they are dropped: the error line says what went wrong, once."""
    import asyncio
    import gc
    import traceback

    root = logging.getLogger()
    held = _Held() if not root.handlers else None
    if held is not None:
        root.addHandler(held)
    try:
        result = asyncio.run(main())
    except (typer.Exit, SystemExit, KeyboardInterrupt):
        _release(held, replay=True)
        raise
    except Exception as exc:
        line = f"error: {describe_error(exc)}"
        # Clients that failed to start are only warned about ("Unclosed AIOKafkaConsumer") when collected:
        # collect them now, while their warnings are still held.
        traceback.clear_frames(exc.__traceback__)
        del exc
        gc.collect()
        _release(held, replay=False)
        typer.echo(line, err=True)
        raise typer.Exit(1) from None
    _release(held, replay=True)
    return result


def _release(held: _Held | None, *, replay: bool) -> None:
    if held is None:
        return
    logging.getLogger().removeHandler(held)
    if replay and logging.lastResort is not None:
        for record in held.records:
            logging.lastResort.handle(record)


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
