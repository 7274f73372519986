"""Choosing the next token for every row of a batch at once.

Greedy rows take the argmax. Sampled rows draw by inverse CDF: one uniform number per row
from that request's own generator (so a seed repeats exactly, batched or not), which is
far cheaper on a CPU than multinomial or Gumbel noise over a 50k vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RowSampling", "sample_rows"]


@dataclass(frozen=True)
class RowSampling:
    temperature: float
    top_p: float
    generator: torch.Generator | None


def sample_rows(logits: torch.Tensor, rows: list[RowSampling]) -> list[int]:
    """One token id per row of ``logits`` (shape (rows, vocab))."""
    choices = torch.argmax(logits, dim=-1)
    sampled = [i for i, r in enumerate(rows) if r.temperature > 0.0]
    if sampled:
        index = torch.tensor(sampled)
        temps = torch.tensor([rows[i].temperature for i in sampled], dtype=torch.float32)
        probs = torch.softmax(logits[index].float() / temps[:, None], dim=-1)
        uniforms = torch.cat([torch.rand(1, generator=rows[i].generator) for i in sampled])
        picked = _inverse_cdf(probs, uniforms)
        for j, i in enumerate(sampled):
            if rows[i].top_p < 1.0:
                picked[j] = _nucleus(probs[j], rows[i].top_p, uniforms[j])
        choices[index] = picked
    return [int(c) for c in choices.tolist()]


def _inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    cdf = torch.cumsum(probs, dim=-1)
    targets = (uniforms * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, targets).squeeze(1).clamp(max=probs.shape[-1] - 1)


def _nucleus(probs: torch.Tensor, top_p: float, uniform: torch.Tensor) -> torch.Tensor:
    sorted_probs, order = torch.sort(probs, descending=True)
    # Drop a token once the tokens before it already cover top_p; the first always stays.
    sorted_probs[(torch.cumsum(sorted_probs, dim=-1) - sorted_probs) > top_p] = 0.0
    pick = _inverse_cdf(sorted_probs.unsqueeze(0), uniform.unsqueeze(0))
    return order[pick[0]]
