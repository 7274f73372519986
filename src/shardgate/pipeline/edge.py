"""Edge guard: bounded bodies and load shedding before any other work is done.

Fails closed: over the concurrency bound a request gets 503 at once instead of queueing.
"""

from __future__ import annotations

from starlette.responses import Response

from shardgate.errors import ServiceUnavailable
from shardgate.pipeline.base import Handler, when_done
from shardgate.pipeline.context import RequestContext
from shardgate.web import read_body

__all__ = ["EdgeGuard"]


class EdgeGuard:
    def __init__(self, max_body_bytes: int, max_concurrent: int) -> None:
        self._max_body = max_body_bytes
        self._max_concurrent = max_concurrent
        self._active = 0

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        if self._active >= self._max_concurrent:
            raise ServiceUnavailable("the gateway is at capacity; retry shortly", code="overloaded")
        self._active += 1
        try:
            if ctx.request.method == "POST":
                ctx.body = await read_body(ctx.request, self._max_body)
            response = await call_next(ctx)
        except BaseException:
            self._active -= 1
            raise
        return when_done(response, self._release)  # a stream holds its place until it ends

    def _release(self) -> None:
        self._active -= 1
