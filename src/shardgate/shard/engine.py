"""The seam between a shard's HTTP surface and whatever generates tokens.

A chat engine turns a prompt into an async stream of ``GenerationEvent``s; an embedding
engine turns texts into vectors. The transformers engine, the fake engine used by
benchmarks, and later llama.cpp or remote engines all sit behind these two protocols.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "ChatEngine",
    "EmbeddingEngine",
    "EngineError",
    "FinishReason",
    "GenerationEvent",
    "PromptTooLong",
    "SamplingParams",
]

FinishReason = Literal["stop", "length", "abort", "error"]


class EngineError(Exception):
    """The engine failed while generating; the request cannot complete."""


class PromptTooLong(EngineError):
    """The prompt does not fit the model's context window."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationEvent:
    """New text since the previous event; the last event carries ``finish_reason``."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None
    error: str | None = field(default=None)


class ChatEngine(Protocol):
    name: str
    context_length: int

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Prompt tokens for a chat, by the model's own chat template."""
        ...

    def encode(self, text: str) -> list[int]:
        """Prompt tokens for plain text."""
        ...

    def generate(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[GenerationEvent]:
        """Stream the completion of ``prompt_ids``; closing the iterator aborts it."""
        ...

    async def abort(self, request_id: str) -> None: ...

    async def check_health(self) -> None:
        """Raise ``EngineError`` if the engine cannot serve."""
        ...

    async def close(self) -> None: ...


class EmbeddingEngine(Protocol):
    name: str
    context_length: int

    async def embed(self, inputs: Sequence[str | list[int]]) -> tuple[list[list[float]], int]:
        """Vectors for texts (or token lists) and the number of input tokens used."""
        ...

    async def check_health(self) -> None: ...

    async def close(self) -> None: ...
