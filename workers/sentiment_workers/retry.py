"""Retry a store operation while the store cannot be used, never giving up; record why in the metrics.

Three classes of error, decided per store by its adapter (``is_transient``, ``is_auth_error``):

* transient (connection refused/reset, server selection timeouts, a server shutting down, deadlocks):
  retried with capped exponential backoff (0.1 s doubling to ``max_wait``, 5 s), forever;
* misconfigured (``is_auth_error``: the store refused the credentials or the user's rights, e.g. MySQL 1045
  access denied, MongoDB 18 AuthenticationFailed, a Kafka SASL failure): no retry fixes it, a person fixes
  the Secret, but the worker must not exit and crash-loop (the status would then say "rolling out", not what
  is wrong): retried with a slower backoff (1 s doubling to ``auth_max_wait``, 60 s), forever, so it
  recovers by itself once the credentials work;
* anything else is a bug or bad data and propagates (data refusals are isolated by the caller,
  :mod:`sentiment_workers.isolation`).

The data stays where it is meanwhile (uncommitted offsets, leased documents). Every call also records
whether the store was usable: ``sentiment_store_up{store}`` 0 from the first failure, 1 again on success, and
``sentiment_store_error{store,kind}`` (``unreachable`` or ``auth``) says why; the worker's ``/readyz`` says it
in words and the operator's status reads both.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential, wait_random

from sentiment_workers.logging import get_logger
from sentiment_workers.metrics import PipelineMetrics

T = TypeVar("T")
log = get_logger("retry")
STORE_NAMES = {"kafka": "Kafka", "mongo": "MongoDB", "mysql": "MySQL", "http": "the HTTP API"}
UNREACHABLE = "unreachable"
AUTH = "auth"
AUTH_MAX_WAIT_S = 60.0


def _never(exc: BaseException) -> bool:
    return False


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one line: its type and text, whitespace collapsed, cut at ``limit``."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]


def fault_message(store: str, kind: str, exc: BaseException) -> str:
    """What ``/readyz`` says about a store the worker cannot use."""
    name = STORE_NAMES.get(store, store)
    if kind == AUTH:
        return f"{name} refused the credentials ({one_line(exc)})"
    return f"{name} unreachable ({one_line(exc)})"


def record_failure(
    metrics: PipelineMetrics | None,
    store: str,
    exc: BaseException,
    is_auth_error: Callable[[BaseException], bool] = _never,
    *,
    probe: bool = False,
) -> str:
    """Record that ``store`` could not be used because of ``exc`` (on a real call, or on a ``probe``);
    returns the kind of fault."""
    kind = AUTH if is_auth_error(exc) else UNREACHABLE
    if metrics is not None:
        metrics.store_failed(store, kind, fault_message(store, kind, exc), probe=probe)
    return kind


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    store: str,
    is_transient: Callable[[BaseException], bool],
    is_auth_error: Callable[[BaseException], bool] = _never,
    metrics: PipelineMetrics | None = None,
    max_wait: float = 5.0,
    auth_max_wait: float = AUTH_MAX_WAIT_S,
) -> T:
    """Await ``operation()`` until it succeeds, backing off on transient errors (0.1 s doubling to
    ``max_wait``) and on refused credentials (1 s doubling to ``auth_max_wait``)."""
    fast = wait_exponential(multiplier=0.1, max=max_wait) + wait_random(0, 0.1)
    auth_streak = 0  # refusals in a row: the slow backoff starts at 1 s, however long the store was down

    def _exception(state: RetryCallState) -> BaseException | None:
        return state.outcome.exception() if state.outcome else None

    def _wait(state: RetryCallState) -> float:
        nonlocal auth_streak
        exc = _exception(state)
        if exc is not None and is_auth_error(exc):
            auth_streak += 1
            return min(2.0 ** (auth_streak - 1), auth_max_wait) + random.uniform(0, 1)  # noqa: S311
        auth_streak = 0
        return fast(state)

    def _before_sleep(state: RetryCallState) -> None:
        exc = _exception(state)
        if exc is None:  # pragma: no cover - only failed attempts sleep
            return
        kind = record_failure(metrics, store, exc, is_auth_error)
        if metrics is not None:
            metrics.store_retries.labels(store).inc()
        log.warning(
            "store refused the credentials, retrying" if kind == AUTH else "store unreachable, retrying",
            store=store,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
            error=one_line(exc),
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda exc: is_transient(exc) or is_auth_error(exc)),
        wait=_wait,
        before_sleep=_before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            result = await operation()
            if metrics is not None:
                metrics.store_reached(store)
            return result
    raise AssertionError("unreachable")  # pragma: no cover
