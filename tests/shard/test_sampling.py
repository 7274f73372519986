"""Batch sampling: greedy, temperature, nucleus, and seeds that repeat."""

from __future__ import annotations

import math

import torch

from shardgate.shard.sampling import RowSampling, sample_rows


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_greedy_rows_take_the_argmax() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    assert sample_rows(logits, [RowSampling(0.0, 1.0, None)] * 2) == [1, 0]


def test_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    generator = seeded(1)
    draws = [sample_rows(logits, [RowSampling(1.0, 1.0, generator)])[0] for _ in range(3000)]
    assert math.isclose(draws.count(0) / 3000, 0.7, abs_tol=0.03)
    assert math.isclose(draws.count(2) / 3000, 0.1, abs_tol=0.02)


def test_nucleus_keeps_only_the_top_mass() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    generator = seeded(2)
    draws = {sample_rows(logits, [RowSampling(1.0, 0.7, generator)])[0] for _ in range(500)}
    assert draws == {0, 1}
    tiny = {sample_rows(logits, [RowSampling(1.0, 0.01, generator)])[0] for _ in range(50)}
    assert tiny == {0}


def test_a_seed_repeats_whatever_the_batch() -> None:
    logits = torch.randn(3, 1000)
    alone = [sample_rows(logits[1:2], [RowSampling(0.9, 1.0, seeded(7))])[0]]
    rows = [
        RowSampling(0.0, 1.0, None),
        RowSampling(0.9, 1.0, seeded(7)),
        RowSampling(1.0, 0.9, seeded(3)),
    ]
    assert sample_rows(logits, rows)[1] == alone[0]
