"""A zero-cost chat engine that returns fixed tokens at once (or at a set pace).

For gateway tests and overhead benchmarks only: it measures everything but the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from shardgate.settings import ModelSpec
from shardgate.shard.engine import FinishReason, GenerationEvent, SamplingParams

__all__ = ["FakeChatEngine"]

WORD = "fake "


class FakeChatEngine:
    def __init__(self, spec: ModelSpec, default_tokens: int = 8, token_delay_s: float = 0) -> None:
        self.name = spec.name
        self.context_length = spec.context_length
        self._default_tokens = default_tokens
        self._token_delay = token_delay_s

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        return [len(str(m.get("content", ""))) % 1000 for m in messages]

    def encode(self, text: str) -> list[int]:
        return [len(word) for word in text.split()] or [0]

    async def generate(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[GenerationEvent]:
        count = params.max_tokens or self._default_tokens
        for i in range(1, count + 1):
            if self._token_delay:
                await asyncio.sleep(self._token_delay)
            reason: FinishReason | None = "length" if i == count else None
            yield GenerationEvent(WORD, len(prompt_ids), i, reason)

    async def abort(self, request_id: str) -> None:
        return None

    async def check_health(self) -> None:
        return None

    async def close(self) -> None:
        return None
