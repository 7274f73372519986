"""The shard's HTTP server: the OpenAI-compatible API over the models in its pool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shardgate.api.parsing import parse_json, validate
from shardgate.api.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from shardgate.errors import ServiceUnavailable
from shardgate.settings import Settings
from shardgate.shard.pool import ModelPool
from shardgate.shard.serving import embeddings
from shardgate.web import JSONResponse, exception_handlers, read_body, sse_response

__all__ = ["create_shard_app"]

T = TypeVar("T")


def create_shard_app(settings: Settings, pool: ModelPool) -> Starlette:
    limit = settings.max_body_bytes
    registry = CollectorRegistry()
    registry.register(_PoolCollector(pool))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if pool.error:
            raise ServiceUnavailable(f"model loading failed: {pool.error}")
        if not pool.ready:
            raise ServiceUnavailable("models are still loading", code="model_loading")
        return JSONResponse({"status": "ready", "models": [s.name for s in pool.specs]})

    async def models(request: Request) -> Response:
        data = [
            {
                "id": s.name,
                "object": "model",
                "created": 0,
                "owned_by": "shardgate",
                "kind": s.kind,
                "ready": s.name in pool.chat or s.name in pool.embedding,
            }
            for s in pool.specs
        ]
        return JSONResponse({"object": "list", "data": data})

    async def generate(
        request: Request, wire: type[ChatCompletionRequest] | type[CompletionRequest]
    ) -> Response:
        req = validate(wire, parse_json(await read_body(request, limit)))
        serving = pool.chat_model(req.model)
        call = serving.call(req)
        if req.stream:
            return sse_response(serving.stream(call))
        return JSONResponse(await _unless_disconnected(request, serving.complete(call)))

    async def chat(request: Request) -> Response:
        return await generate(request, ChatCompletionRequest)

    async def completions(request: Request) -> Response:
        return await generate(request, CompletionRequest)

    async def embed(request: Request) -> Response:
        req = validate(EmbeddingRequest, parse_json(await read_body(request, limit)))
        engine = pool.embedding_model(req.model)
        return JSONResponse(await embeddings(engine, req))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(asyncio.to_thread(pool.load))
        try:
            yield
        finally:
            loading.cancel()
            await pool.close()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embed, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers=exception_handlers, lifespan=lifespan)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``, cancelling it (and so freeing its batch slots) if the client leaves."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    return await task


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class _PoolCollector:
    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool
        self._started = time.time()

    def collect(self) -> Any:
        running = GaugeMetricFamily(
            "shardgate_shard_running_sequences", "Sequences in the decode batch", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "shardgate_shard_waiting_sequences",
            "Sequences queued for a batch slot",
            labels=["model"],
        )
        kv = GaugeMetricFamily(
            "shardgate_shard_kv_cache_bytes", "Bytes allocated for the KV cache", labels=["model"]
        )
        for name, serving in self._pool.chat.items():
            stats = getattr(serving.engine, "stats", None)
            if stats is None:
                continue
            values = stats()
            running.add_metric([name], values["running"])
            waiting.add_metric([name], values["waiting"])
            kv.add_metric([name], values["kv_cache_bytes"])
        yield running
        yield waiting
        yield kv
