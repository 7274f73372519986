"""The right-aligned slot cache: rows join with left padding and leave without a trace."""

from __future__ import annotations

import torch

from shardgate.shard.kvcache import SlotCache


def prefill(length: int, value: float, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    block = torch.full((1, 1, length, 2), value)
    return [(block.clone(), block.clone() + 100) for _ in range(layers)]


def row_keys(cache: SlotCache, row: int) -> list[float]:
    keys = cache.layers[0].keys
    assert keys is not None
    return keys[row, 0, :, 0].tolist()


def make() -> SlotCache:
    return SlotCache(2, 1, 2, max_rows=4, max_len=64)


def test_rows_are_right_aligned_and_padding_is_masked() -> None:
    cache = make()
    cache.add_row(prefill(3, 1.0))
    cache.add_row(prefill(5, 2.0))  # longer: the first row gets shifted right
    assert cache.length == 5
    assert cache.pads == [2, 0]
    assert cache.positions().flatten().tolist() == [3, 5]
    mask = cache.attention_mask(1)
    assert mask.shape == (2, 1, 1, 6)
    assert mask[0, 0, 0].tolist() == [False, False, True, True, True, True]
    assert mask[1, 0, 0].tolist() == [True] * 6


def test_update_appends_a_column_for_every_row() -> None:
    cache = make()
    cache.add_row(prefill(2, 1.0))
    cache.add_row(prefill(4, 2.0))
    cache.reserve(1)
    keys, _ = cache.update(torch.full((2, 1, 1, 2), 9.0), torch.zeros(2, 1, 1, 2), 0)
    cache.update(torch.full((2, 1, 1, 2), 9.0), torch.zeros(2, 1, 1, 2), 1)
    cache.advance(1)
    assert keys.shape == (2, 1, 5, 2)
    assert row_keys(cache, 0) == [0.0, 0.0, 1.0, 1.0, 9.0]
    assert row_keys(cache, 1) == [2.0, 2.0, 2.0, 2.0, 9.0]


def test_dropping_the_longest_row_trims_shared_padding() -> None:
    cache = make()
    cache.add_row(prefill(2, 1.0))
    cache.add_row(prefill(6, 2.0))
    cache.add_row(prefill(3, 3.0))
    cache.keep_rows([0, 2])
    assert cache.pads == [1, 0]
    assert cache.length == 3
    cache.update(torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2), 0)
    assert row_keys(cache, 0) == [0.0, 1.0, 1.0, 0.0]
    assert row_keys(cache, 1) == [3.0, 3.0, 3.0, 0.0]


def test_emptying_the_batch_releases_memory() -> None:
    cache = make()
    cache.add_row(prefill(4, 1.0))
    assert cache.allocated_bytes() > 0
    cache.keep_rows([])
    assert cache.allocated_bytes() == 0
    assert cache.length == 0 and cache.rows == 0
