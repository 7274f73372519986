"""Sentence embeddings with a transformers encoder: mean pooling, then L2 normalisation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from shardgate.settings import ModelSpec

__all__ = ["TransformersEmbeddingEngine"]


class TransformersEmbeddingEngine:
    def __init__(self, spec: ModelSpec, folder: Path, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.name = spec.name
        self.context_length = spec.context_length
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        self._model = AutoModel.from_pretrained(folder).eval()
        self._batch_size = batch_size
        self._lock = threading.Lock()

    async def embed(self, inputs: Sequence[str | list[int]]) -> tuple[list[list[float]], int]:
        return await asyncio.to_thread(self._embed_all, list(inputs))

    def _embed_all(self, inputs: list[str | list[int]]) -> tuple[list[list[float]], int]:
        vectors: list[list[float]] = []
        tokens = 0
        with self._lock:
            for start in range(0, len(inputs), self._batch_size):
                batch_vectors, batch_tokens = self._embed(inputs[start : start + self._batch_size])
                vectors.extend(batch_vectors)
                tokens += batch_tokens
        return vectors, tokens

    @torch.inference_mode()
    def _embed(self, inputs: list[str | list[int]]) -> tuple[list[list[float]], int]:
        vocab = len(self._tokenizer)
        if any(not isinstance(x, str) and not all(0 <= t < vocab for t in x) for x in inputs):
            raise ValueError(f"token ids must be between 0 and {vocab - 1}")
        texts = [x if isinstance(x, str) else self._tokenizer.decode(x) for x in inputs]
        batch = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return normed.tolist(), int(batch["attention_mask"].sum())

    async def check_health(self) -> None:
        return None

    async def close(self) -> None:
        return None
