"""The models one shard process holds, loaded in the background after the server starts."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch

from shardgate.errors import ModelNotFound, ServiceUnavailable
from shardgate.settings import ModelSpec, Settings
from shardgate.shard.catalog import find_source, prepare
from shardgate.shard.embeddings import TransformersEmbeddingEngine
from shardgate.shard.engine import ChatEngine, EmbeddingEngine
from shardgate.shard.fake import FakeChatEngine
from shardgate.shard.serving import ChatServing

__all__ = ["ModelPool"]

log = logging.getLogger(__name__)


class ModelPool:
    def __init__(self, settings: Settings, specs: list[ModelSpec]) -> None:
        self._settings = settings
        self.specs = specs
        self.chat: dict[str, ChatServing] = {}
        self.embedding: dict[str, EmbeddingEngine] = {}
        self.error: str | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return len(self.chat) + len(self.embedding) == len(self.specs)

    def load(self) -> None:
        """Load every model (blocking; call from a worker thread)."""
        threads = self._settings.engine.threads
        if threads:
            torch.set_num_threads(threads)
        try:
            for spec in self.specs:
                self._load(spec)
        except Exception as exc:
            log.exception("loading models failed")
            self.error = f"{type(exc).__name__}: {exc}"

    def _load(self, spec: ModelSpec) -> None:
        log.info("loading %s", spec.name)
        if spec.kind == "chat":
            engine: ChatEngine
            if spec.engine == "fake":
                engine = FakeChatEngine(
                    spec, token_delay_s=self._settings.engine.fake_token_delay_s
                )
            else:
                from shardgate.shard.transformers_engine import TransformersChatEngine

                folder = self._folder(spec)
                engine = TransformersChatEngine(spec, folder, self._settings.engine)
            with self._lock:
                self.chat[spec.name] = ChatServing(engine)
        else:
            embedder = TransformersEmbeddingEngine(spec, self._folder(spec))
            with self._lock:
                self.embedding[spec.name] = embedder
        log.info("%s is ready", spec.name)

    def _folder(self, spec: ModelSpec) -> Path:
        return prepare(find_source(spec), self._settings.models_dir)

    def chat_model(self, name: str) -> ChatServing:
        serving = self.chat.get(name)
        if serving is None:
            raise self._missing(name, "chat")
        return serving

    def embedding_model(self, name: str) -> EmbeddingEngine:
        engine = self.embedding.get(name)
        if engine is None:
            raise self._missing(name, "embedding")
        return engine

    def _missing(self, name: str, kind: str) -> Exception:
        spec = next((s for s in self.specs if s.name == name), None)
        if spec is None:
            return ModelNotFound(f"the model '{name}' does not exist", param="model")
        if spec.kind != kind:
            return ModelNotFound(
                f"the model '{name}' is a {spec.kind} model, not a {kind} model", param="model"
            )
        return ServiceUnavailable(f"the model '{name}' is still loading", code="model_loading")

    async def close(self) -> None:
        for serving in self.chat.values():
            await serving.engine.close()
        for engine in self.embedding.values():
            await engine.close()
