"""Which prefixes the prefix cache keeps, and which it hands back."""

from __future__ import annotations

import torch

from shardgate.shard.prefix_cache import PrefixCache


def kv(tokens: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    block = torch.tensor(tokens, dtype=torch.float32).view(1, 1, -1, 1)
    return [(block, block + 1)]


def test_keeps_what_consecutive_prompts_share() -> None:
    cache = PrefixCache(min_tokens=3)
    first, second = [1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 7]
    cache.remember(first, kv(first))
    assert len(cache) == 0  # nothing to share with yet
    cache.remember(second, kv(second))
    hit = cache.lookup([1, 2, 3, 4, 8, 8])
    assert hit is not None
    length, stored = hit
    assert length == 4
    assert stored[0][0].flatten().tolist() == [1, 2, 3, 4]
    assert stored[0][1].flatten().tolist() == [2, 3, 4, 5]


def test_no_hit_for_short_shares_other_prompts_or_the_whole_prompt() -> None:
    cache = PrefixCache(min_tokens=3)
    cache.remember([1, 2, 9], kv([1, 2, 9]))
    cache.remember([1, 2, 8], kv([1, 2, 8]))
    assert len(cache) == 0  # only two tokens shared
    cache.remember([5, 6, 7, 1], kv([5, 6, 7, 1]))
    cache.remember([5, 6, 7, 2], kv([5, 6, 7, 2]))
    assert cache.lookup([4, 6, 7, 2]) is None
    assert cache.lookup([5, 6, 7]) is None  # at least one token must be left to prefill


def test_longest_prefix_wins_and_old_entries_are_evicted() -> None:
    cache = PrefixCache(max_entries=2, min_tokens=2)
    for prompt in ([1, 2, 3], [1, 2, 4], [1, 2, 4, 5, 6], [1, 2, 4, 5, 7]):
        cache.remember(prompt, kv(prompt))
    assert len(cache) == 2
    hit = cache.lookup([1, 2, 4, 5, 9])
    assert hit is not None and hit[0] == 4
    cache.remember([8, 8, 1], kv([8, 8, 1]))
    cache.remember([8, 8, 2], kv([8, 8, 2]))  # evicts the least recently used, [1, 2, 4]
    assert cache.lookup([1, 2, 9]) is None
    assert cache.lookup([1, 2, 4, 5, 0]) is not None
