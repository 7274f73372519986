"""KV of prompt prefixes that recent prompts shared, so prefill skips them next time.

Chat templates start every prompt with the same tokens (SmolLM2's adds a system message
to every chat), and on a CPU prefill is pure compute: reusing those positions cuts time
to first token roughly in proportion. An entry is made from the longest common prefix of
two consecutive prompts; entries are few, small, and evicted least recently used first.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

__all__ = ["PrefixCache"]

KV = list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    def __init__(self, max_entries: int = 8, min_tokens: int = 8) -> None:
        self._entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._max_entries = max_entries
        self._min_tokens = min_tokens
        self._previous: list[int] = []

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: list[int]) -> tuple[int, KV] | None:
        """The longest cached proper prefix of ``prompt``: (its length, its KV)."""
        best: tuple[int, ...] | None = None
        for tokens in self._entries:
            n = len(tokens)
            if n < len(prompt) and (best is None or n > len(best)) and tuple(prompt[:n]) == tokens:
                best = tokens
        if best is None:
            return None
        self._entries.move_to_end(best)
        return len(best), self._entries[best]

    def remember(self, prompt: list[int], kv: KV) -> None:
        """Offer a prefilled prompt; keeps what it shares with the prompt before it."""
        shared = _common_prefix(prompt, self._previous)
        self._previous = prompt
        if shared < self._min_tokens or shared >= len(prompt):
            return
        key = tuple(prompt[:shared])
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = [(k[:, :, :shared].clone(), v[:, :, :shared].clone()) for k, v in kv]
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
