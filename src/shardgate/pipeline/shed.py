"""Load shedding at the shards: when every ready shard for the requested model already has
``max_queue`` requests from this gateway in flight, a new request gets 503 with Retry-After
at once rather than joining a queue it would wait in; requests already admitted finish.

The signal is the gateway's own count of requests in flight to each shard (what the router
balances on): free to read and never stale, but blind to other replicas' requests, so with
several gateways each sheds at its own share. Runs once the model is known; a model with no
ready shard passes, for the router to refuse. Fails open: without a bound it does nothing.
"""

from __future__ import annotations

from starlette.responses import Response

from shardgate.errors import ServiceUnavailable
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext
from shardgate.routing.registry import ShardRegistry

__all__ = ["ShedBusyShards"]

RETRY_AFTER_S = 1


class ShedBusyShards:
    def __init__(
        self, registry: ShardRegistry, max_queue: int | None, metrics: GatewayMetrics
    ) -> None:
        self._registry = registry
        self._max_queue = max_queue
        self._m = metrics

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        model = ctx.payload.get("model")
        if self._max_queue is not None and isinstance(model, str):
            shards = self._registry.candidates(model)  # least busy first
            if shards and shards[0].in_flight >= self._max_queue:
                self._m.rejections.labels("shard_queue").inc()
                raise ServiceUnavailable(
                    f"the shards serving '{model}' are at capacity; retry shortly",
                    code="shards_busy",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
        return await call_next(ctx)
