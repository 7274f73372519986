"""The gateway application. The pipeline's order is declared here, and only here."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shardgate import __version__
from shardgate.admin.api import admin_operations
from shardgate.admin.service import AdminService
from shardgate.api.moderations import ModerationRequest, moderation_handler
from shardgate.api.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from shardgate.errors import ServiceUnavailable
from shardgate.identity import KeyVerifier
from shardgate.limits import CounterStore, RateLimiter, counters_for, limits_of
from shardgate.metrics import GatewayMetrics
from shardgate.openapi import Operation, openapi_document
from shardgate.pipeline import Pipeline, RequestContext
from shardgate.pipeline.auth import Authenticate
from shardgate.pipeline.authorize import Authorize, AuthorizeModel
from shardgate.pipeline.base import Stage
from shardgate.pipeline.clientip import ClientAddress
from shardgate.pipeline.contentfilter import ContentFilter, TenantPolicies
from shardgate.pipeline.edge import EdgeGuard
from shardgate.pipeline.ipthrottle import IpThrottle
from shardgate.pipeline.observe import Observe
from shardgate.pipeline.parse import ParseRequest
from shardgate.pipeline.ratelimit import RateLimit
from shardgate.pipeline.route import RouteToShard
from shardgate.pipeline.safetymonitor import SafetyMonitor
from shardgate.pipeline.shed import ShedBusyShards
from shardgate.routing import ShardClient, ShardRegistry
from shardgate.safety.events import SafetyEventLog
from shardgate.safety.scanner import SafetyScanner
from shardgate.security import shard_client_ssl
from shardgate.settings import Settings
from shardgate.store import SqlStore, Store, connect, database_url
from shardgate.web import JSONResponse, exception_handlers

__all__ = ["create_gateway_app"]


def create_gateway_app(
    settings: Settings, store: Store | None = None, counters: CounterStore | None = None
) -> Starlette:
    """The gateway. ``store`` defaults to the configured database, whose schema must be
    current (``shardgate gateway`` and ``up`` upgrade it before serving); ``counters`` to
    the configured counter store."""
    store = store or SqlStore(connect(database_url(settings)))
    metrics = GatewayMetrics()
    verifier = KeyVerifier(store, settings.auth.cache_ttl_s, settings.auth.last_used_flush_s)
    client = ShardClient(
        settings.shard_connect_timeout_s, settings.shard_read_timeout_s, shard_client_ssl(settings)
    )
    registry = ShardRegistry(
        settings.shards, client, metrics, interval_s=settings.shard_health_interval_s
    )
    limiter = RateLimiter(
        counters or counters_for(settings),
        limits_of(settings.key_limits),
        limits_of(settings.tenant_limits),
        metrics,
        on_error=settings.counters.on_error,
        slot_ttl_s=settings.shard_read_timeout_s + 60,
    )
    safety = settings.safety
    scanner = SafetyScanner(settings.models_dir / "safety", safety.classifier_weights_dir)
    safety_events = SafetyEventLog(store, metrics, safety.events_flush_s)
    policies = TenantPolicies(store, safety.policy, settings.auth.cache_ttl_s)
    safety_stages: list[Stage] = (
        [
            ContentFilter(scanner, policies, safety_events, safety, metrics),
            SafetyMonitor(scanner, safety_events, safety, metrics),
        ]
        if safety.enabled
        else []
    )
    pipeline = Pipeline(
        [
            Observe(metrics),
            IpThrottle(
                settings.edge.failed_per_ip_per_minute,
                ClientAddress(settings.edge.trusted_proxies),
                metrics,
            ),
            EdgeGuard(
                settings.max_body_bytes,
                settings.max_concurrent_requests,
                metrics,
                settings.edge.body_timeout_s,
            ),
            Authenticate(verifier),
            Authorize(),
            ParseRequest(),
            AuthorizeModel(skip_routes={"moderations"}),
            ShedBusyShards(registry, settings.edge.max_shard_queue, metrics),
            RateLimit(limiter),
            *safety_stages,
        ]
    )
    route = RouteToShard(registry, client)

    async def list_models(ctx: RequestContext) -> Response:
        assert ctx.principal is not None
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "shardgate"}
            for name in registry.known_models()
            if ctx.principal.may_use(name)
        ]
        return JSONResponse({"object": "list", "data": data})

    moderate = moderation_handler(scanner, safety_events, safety, metrics)

    async def moderations(ctx: RequestContext) -> Response:
        if not safety.enabled:
            raise ServiceUnavailable(
                "the content filter is disabled on this gateway", code="content_filter_disabled"
            )
        return await moderate(ctx)

    async def prometheus(ctx: RequestContext) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    operations = [
        Operation("GET", "/v1/models", "models", list_models, "models", "List the models"),
        Operation(
            "POST",
            "/v1/chat/completions",
            "chat.completions",
            route,
            "chat",
            "Create a chat completion",
            ChatCompletionRequest,
        ),
        Operation(
            "POST",
            "/v1/completions",
            "completions",
            route,
            "completions",
            "Create a text completion",
            CompletionRequest,
        ),
        Operation(
            "POST",
            "/v1/embeddings",
            "embeddings",
            route,
            "embeddings",
            "Create embeddings",
            EmbeddingRequest,
        ),
        Operation(
            "POST",
            "/v1/moderations",
            "moderations",
            moderations,
            "moderations",
            "Classify text with the content filter's detectors",
            ModerationRequest,
        ),
        Operation("GET", "/metrics", "metrics", prometheus, "metrics", "Prometheus metrics"),
        *admin_operations(
            AdminService(
                store,
                on_key_change=verifier.forget,
                safety_default=safety.policy,
                on_policy_change=policies.forget,
            )
        ),
    ]
    # The standard json module: the schemas hold integers beyond orjson's 64-bit range.
    document = json.dumps(openapi_document(operations, __version__)).encode()

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if safety.enabled and not scanner.ready:
            raise ServiceUnavailable("not ready: the safety models are loading")
        if not registry.all_ready():
            waiting = [m for m in registry.known_models() if not registry.candidates(m)]
            detail = ", ".join(waiting) if waiting else "no shard has reported its models yet"
            raise ServiceUnavailable(f"not ready: no ready shard for {detail}")
        return JSONResponse({"status": "ready", "models": registry.known_models()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await registry.check_all()
        registry.start()
        verifier.start()
        safety_events.start()
        loading = asyncio.create_task(scanner.start()) if safety.enabled else None
        try:
            yield
        finally:
            if loading is not None:
                loading.cancel()
            scanner.close()
            await registry.stop()
            await verifier.stop()
            await safety_events.stop()
            await limiter.drain()
            await limiter.counters.close()
            await client.close()
            await store.close()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
        *(
            Route(
                op.path,
                pipeline.endpoint(op.name, op.handler, op.request, op.access),
                methods=[op.method],
            )
            for op in operations
        ),
    ]
    app = Starlette(routes=routes, exception_handlers=exception_handlers, lifespan=lifespan)
    app.state.registry = registry  # for tests and the admin surface; handlers never read it
    return app
