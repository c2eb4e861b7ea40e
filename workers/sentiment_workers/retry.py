"""Retry a store operation with capped exponential backoff while its server is unreachable (tenacity).

Only transient errors (connection refused/reset, server selection timeouts, a server shutting down) are
retried, forever: the data stays where it is (uncommitted offsets, leased documents) until the store is
back. Anything else is a bug or bad data and propagates.

Every call also records whether the store was reached (``sentiment_store_up{store}``: 0 from the first
transient failure, 1 again on success), which the worker's ``/readyz`` and the operator's status read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential, wait_random

from sentiment_workers.logging import get_logger
from sentiment_workers.metrics import PipelineMetrics

T = TypeVar("T")
log = get_logger("retry")


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    store: str,
    is_transient: Callable[[BaseException], bool],
    metrics: PipelineMetrics | None = None,
    max_wait: float = 5.0,
) -> T:
    """Await ``operation()`` until it succeeds, backing off (0.1 s doubling to ``max_wait``) on transient
    errors."""

    def _before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if metrics is not None:
            metrics.store_retries.labels(store).inc()
            metrics.store_up.labels(store).set(0)
        log.warning(
            "store unreachable, retrying",
            store=store,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
            error=f"{type(exc).__name__}: {exc}"[:300],
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.1, max=max_wait) + wait_random(0, 0.1),
        before_sleep=_before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            result = await operation()
            if metrics is not None:
                metrics.store_up.labels(store).set(1)
            return result
    raise AssertionError("unreachable")  # pragma: no cover
