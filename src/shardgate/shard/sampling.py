"""Choosing the next token from one row of logits."""

from __future__ import annotations

import torch

__all__ = ["sample_token"]


def sample_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> int:
    """Greedy when ``temperature`` is 0, otherwise nucleus sampling with ``generator``."""
    if temperature <= 0.0:
        return int(torch.argmax(logits).item())
    scaled = logits.float() / temperature
    if top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token once the tokens before it already cover top_p; keep at least one.
        beyond = (torch.cumsum(probs, dim=-1) - probs) > top_p
        sorted_logits[beyond] = float("-inf")
        return int(order[_draw(torch.softmax(sorted_logits, dim=-1), generator)].item())
    return _draw(torch.softmax(scaled, dim=-1), generator)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    # argmax(p / E) with E ~ Exp(1) draws from p, and is much faster than multinomial
    # over a 50k vocabulary.
    noise = torch.empty_like(probs).exponential_(generator=generator)
    return int(torch.argmax(probs / noise).item())
