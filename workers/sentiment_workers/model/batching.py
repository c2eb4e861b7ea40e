"""Length-sorted batching: texts of similar length share a batch so dynamic padding stays short."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices into the input, grouped into batches of at most ``batch_size``, longest first.

    Callers scatter each batch's results back to these indices, so the output order is the input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
