"""The gateway application. The pipeline's order is declared here, and only here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shardgate.api.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from shardgate.errors import ServiceUnavailable
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline import Pipeline, RequestContext
from shardgate.pipeline.auth import Authenticate
from shardgate.pipeline.edge import EdgeGuard
from shardgate.pipeline.observe import Observe
from shardgate.pipeline.parse import ParseRequest
from shardgate.pipeline.route import RouteToShard
from shardgate.routing import ShardClient, ShardRegistry
from shardgate.settings import Settings
from shardgate.store import FileKeyStore, KeyStore
from shardgate.web import JSONResponse, exception_handlers

__all__ = ["create_gateway_app", "key_store_for"]


def key_store_for(settings: Settings) -> KeyStore:
    return FileKeyStore(settings.data_dir / "keys.json")


def create_gateway_app(settings: Settings, keys: KeyStore | None = None) -> Starlette:
    metrics = GatewayMetrics()
    client = ShardClient(settings.shard_connect_timeout_s, settings.shard_read_timeout_s)
    registry = ShardRegistry(
        settings.shards, client, metrics, interval_s=settings.shard_health_interval_s
    )
    pipeline = Pipeline(
        [
            Observe(metrics),
            EdgeGuard(settings.max_body_bytes, settings.max_concurrent_requests),
            Authenticate(keys or key_store_for(settings)),
            ParseRequest(),
        ]
    )
    route = RouteToShard(registry, client)

    async def list_models(ctx: RequestContext) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "shardgate"}
            for name in registry.known_models()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not registry.all_ready():
            waiting = [m for m in registry.known_models() if not registry.candidates(m)]
            detail = ", ".join(waiting) if waiting else "no shard has reported its models yet"
            raise ServiceUnavailable(f"not ready: no ready shard for {detail}")
        return JSONResponse({"status": "ready", "models": registry.known_models()})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await registry.check_all()
        registry.start()
        try:
            yield
        finally:
            await registry.stop()
            await client.close()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
        Route("/v1/models", pipeline.endpoint("models", list_models)),
        Route(
            "/v1/chat/completions",
            pipeline.endpoint("chat.completions", route, ChatCompletionRequest),
            methods=["POST"],
        ),
        Route(
            "/v1/completions",
            pipeline.endpoint("completions", route, CompletionRequest),
            methods=["POST"],
        ),
        Route(
            "/v1/embeddings",
            pipeline.endpoint("embeddings", route, EmbeddingRequest),
            methods=["POST"],
        ),
    ]
    app = Starlette(routes=routes, exception_handlers=exception_handlers, lifespan=lifespan)
    app.state.registry = registry  # for tests and the admin surface; handlers never read it
    return app
