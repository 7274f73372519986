"""One generation request inside the scheduler: its tokens, text and stop rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from shardgate.shard.engine import FinishReason, GenerationEvent, SamplingParams
from shardgate.shard.sampling import RowSampling

__all__ = ["Detokenizer", "Sequence"]


class Detokenizer(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


@dataclass
class Sequence:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    max_tokens: int
    sink: Callable[[GenerationEvent], None]
    eos_ids: frozenset[int]
    generator: torch.Generator | None = None
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    finish_reason: FinishReason | None = None
    # Incremental detokenisation: text is decoded from ``_prefix`` on, and what lies
    # before ``_read`` has already been appended to ``text``.
    _prefix: int = 0
    _read: int = 0

    @property
    def next_token(self) -> int:
        return self.output_ids[-1]

    @property
    def sampling(self) -> RowSampling:
        return RowSampling(self.params.temperature, self.params.top_p, self.generator)

    def push(self, token: int, tokenizer: Detokenizer) -> None:
        """Add a generated token, decide whether the sequence is done, emit new text."""
        if token in self.eos_ids:
            self.finish_reason = "stop"
            self._emit(len(self.text))
            return
        self.output_ids.append(token)
        if not self._detokenize(tokenizer):
            if len(self.output_ids) >= self.max_tokens:
                self.finish_reason = "length"
                self._emit(len(self.text))
            return
        cut = self._stop_at()
        if cut is not None:
            self.text = self.text[:cut]
            self.finish_reason = "stop"
        elif len(self.output_ids) >= self.max_tokens:
            self.finish_reason = "length"
        self._emit(len(self.text) if self.finish_reason else self._safe_end())

    def _detokenize(self, tokenizer: Detokenizer) -> bool:
        """Append the new token's text; False while it ends in half a character."""
        ids = self.output_ids
        before = tokenizer.decode(ids[self._prefix : self._read], skip_special_tokens=True)
        after = tokenizer.decode(ids[self._prefix :], skip_special_tokens=True)
        if after.endswith("\ufffd"):
            return False
        self.text += after[len(before) :]
        self._prefix, self._read = max(0, self._read - 4), len(ids)
        return True

    def finish(self, reason: FinishReason, error: str | None = None) -> None:
        self.finish_reason = reason
        self.sink(GenerationEvent("", len(self.prompt_ids), len(self.output_ids), reason, error))

    def _stop_at(self) -> int | None:
        if not self.params.stop:
            return None
        longest = max(len(s) for s in self.params.stop)
        start = max(0, self.emitted - longest)
        hits = [i for s in self.params.stop if (i := self.text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def _safe_end(self) -> int:
        """How far text can be emitted without showing the start of a stop string."""
        if not self.params.stop:
            return len(self.text)
        hold = max(len(s) for s in self.params.stop) - 1
        return max(self.emitted, len(self.text) - hold)

    def _emit(self, end: int) -> None:
        delta = self.text[self.emitted : end]
        if not delta and self.finish_reason is None:
            return
        self.emitted = max(self.emitted, end)
        self.sink(
            GenerationEvent(delta, len(self.prompt_ids), len(self.output_ids), self.finish_reason)
        )
