"""Length-sorted batching covers every text exactly once in bounded batches."""

from __future__ import annotations

import random

import pytest
from sentiment_workers.model.batching import length_sorted_batches


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_every_index_appears_once_in_batches_of_bounded_size(batch_size: int) -> None:
    lengths = [random.Random(7).randint(2, 60) for _ in range(101)]
    batches = list(length_sorted_batches(lengths, batch_size))
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= batch_size for batch in batches)
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_zero_batch_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        list(length_sorted_batches([1, 2], 0))
