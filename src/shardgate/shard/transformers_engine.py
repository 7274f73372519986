"""The default chat engine: a transformers causal LM on the CPU, continuously batched."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import torch

from shardgate.settings import EngineSettings, ModelSpec
from shardgate.shard.bridge import stream_events
from shardgate.shard.engine import EngineError, GenerationEvent, SamplingParams
from shardgate.shard.scheduler import BatchScheduler

__all__ = ["TransformersChatEngine"]

log = logging.getLogger(__name__)


class TransformersChatEngine:
    def __init__(self, spec: ModelSpec, folder: Path, settings: EngineSettings) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = spec.name
        self.context_length = min(spec.context_length, settings.max_model_len)
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        dtype = getattr(torch, settings.dtype)
        self._model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        self._scheduler = BatchScheduler(
            self._model,
            self._tokenizer,
            eos_ids=self._eos_ids(),
            max_batch_size=settings.max_batch_size,
            max_model_len=self.context_length,
            prefix_cache=settings.prefix_cache,
        )
        self._scheduler.start()
        if settings.warmup:
            self._warm_up()

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        configured = self._model.generation_config.eos_token_id
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        return frozenset(ids)

    def _warm_up(self) -> None:
        """Run the first forward passes before reporting ready; two short chats also teach
        the prefix cache the chat template's opening, which every chat shares."""
        started = time.perf_counter()
        params = SamplingParams(max_tokens=2, temperature=0.0)
        prompts = [self.encode("Hello")]
        if self._tokenizer.chat_template:
            prompts += [self.encode_chat([{"role": "user", "content": w}]) for w in ("Hi", "Yes")]
        for i, prompt in enumerate(prompts):
            done: list[GenerationEvent] = []
            self._scheduler.submit(f"warmup-{i}", prompt, params, done.append)
            while not any(e.finish_reason for e in done):
                time.sleep(0.01)
        log.info("%s warmed up in %.2fs", self.name, time.perf_counter() - started)

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        try:
            ids = self._tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
            )
        except Exception as exc:
            raise ValueError(
                f"the chat cannot be rendered by this model's template: {exc}"
            ) from None
        return list(ids)

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=True)["input_ids"])

    def generate(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[GenerationEvent]:
        return stream_events(
            lambda sink: self._scheduler.submit(request_id, prompt_ids, params, sink),
            lambda: self._scheduler.abort(request_id),
        )

    async def abort(self, request_id: str) -> None:
        self._scheduler.abort(request_id)

    async def check_health(self) -> None:
        if not self._scheduler.alive:
            raise EngineError(f"{self.name}: the scheduler thread has stopped")

    def stats(self) -> dict[str, float]:
        return {
            "running": len(self._scheduler.running_ids()),
            "waiting": self._scheduler.waiting_count(),
            "kv_cache_bytes": self._scheduler.kv_cache_bytes(),
        }

    async def close(self) -> None:
        self._scheduler.stop()
