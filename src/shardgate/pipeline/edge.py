"""Edge guard: bounded, timely bodies and load shedding before any other work is done.

Fails closed: over the concurrency bound a request gets 503 (with Retry-After) at once
instead of queueing; a body over the size bound gets 413, one not received in time 408.
"""

from __future__ import annotations

from starlette.responses import Response

from shardgate.errors import PayloadTooLarge, RequestTimeout, ServiceUnavailable
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler, when_done
from shardgate.pipeline.context import RequestContext
from shardgate.web import read_body

__all__ = ["EdgeGuard"]

RETRY_AFTER_S = 1  # a slot frees as soon as any request ends


class EdgeGuard:
    def __init__(
        self,
        max_body_bytes: int,
        max_concurrent: int,
        metrics: GatewayMetrics,
        body_timeout_s: float | None = None,
    ) -> None:
        self._max_body = max_body_bytes
        self._max_concurrent = max_concurrent
        self._m = metrics
        self._body_timeout = body_timeout_s
        self._active = 0

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        if self._active >= self._max_concurrent:
            self._m.rejections.labels("overloaded").inc()
            raise ServiceUnavailable(
                "the gateway is at capacity; retry shortly",
                code="overloaded",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._active += 1
        try:
            if ctx.request.method in ("POST", "PUT", "PATCH"):
                ctx.body = await self._read_body(ctx)
            response = await call_next(ctx)
        except BaseException:
            self._active -= 1
            raise
        return when_done(response, self._release)  # a stream holds its place until it ends

    async def _read_body(self, ctx: RequestContext) -> bytes:
        try:
            return await read_body(ctx.request, self._max_body, self._body_timeout)
        except PayloadTooLarge:
            self._m.rejections.labels("body_too_large").inc()
            raise
        except RequestTimeout:
            self._m.rejections.labels("body_timeout").inc()
            raise

    def _release(self) -> None:
        self._active -= 1
