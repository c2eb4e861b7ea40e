"""Find the items of a batch that a store refuses, by bisection, and write all the others.

A batch write (a Mongo bulk upsert, a MySQL transaction) fails as a whole when one of its items is refused.
:func:`write_isolating` tries the whole batch first (one call in the normal case); when the store rejects it
for a reason that is about the data (``is_rejection``), it splits the batch in halves and recurses, so k
refused items in n cost O(k log n) extra calls, and each refused item ends up alone with the store's own
error. Errors that are not about the data (a lost connection is retried below this layer; a missing table or
a refused privilege refuses every item) propagate: they are not dead-lettered one message at a time.

``write`` must be idempotent (upserts keyed by id): a half that succeeded may be written again when a
store applies part of a failed batch (an unordered bulk write).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sentiment_workers.messages import scrub_text

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Isolated(Generic[T, R]):
    """What :func:`write_isolating` did: the results of the writes that succeeded and the refused items."""

    results: list[R] = field(default_factory=list)
    rejected: list[tuple[T, BaseException]] = field(default_factory=list)
    calls: int = 0


async def write_isolating(
    items: Sequence[T],
    write: Callable[[Sequence[T]], Awaitable[R]],
    *,
    is_rejection: Callable[[BaseException], bool],
) -> Isolated[T, R]:
    """Write ``items`` with ``write``; split on rejections until each refused item is alone."""
    outcome: Isolated[T, R] = Isolated()
    if items:
        await _write(list(items), write, is_rejection, outcome)
    return outcome


async def _write(
    items: list[T],
    write: Callable[[Sequence[T]], Awaitable[R]],
    is_rejection: Callable[[BaseException], bool],
    outcome: Isolated[T, R],
) -> None:
    outcome.calls += 1
    try:
        outcome.results.append(await write(items))
        return
    except Exception as exc:
        if not is_rejection(exc):
            raise
        if len(items) == 1:
            outcome.rejected.append((items[0], exc))
            return
    middle = len(items) // 2
    await _write(items[:middle], write, is_rejection, outcome)
    await _write(items[middle:], write, is_rejection, outcome)


def describe(store: str, exc: BaseException, limit: int = 2000) -> str:
    """``"<store>: <ExceptionType>: <message>"``, bounded and storable (no lone surrogates)."""
    return scrub_text(f"{store}: {type(exc).__name__}: {exc}")[:limit]
