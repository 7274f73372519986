"""How stages chain: each gets the context and the rest of the pipeline as ``call_next``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from shardgate.pipeline.context import RequestContext

__all__ = ["Handler", "Pipeline", "Stage", "streaming_body", "when_done"]

Handler = Callable[[RequestContext], Awaitable[Response]]


class Stage(Protocol):
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response: ...


class Pipeline:
    """Stages in order, ending in a route-specific terminal handler."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    def endpoint(
        self,
        route: str,
        terminal: Handler,
        wire_model: type[BaseModel] | None = None,
        access: str = "",
    ) -> Callable[[Request], Awaitable[Response]]:
        handler = terminal
        for stage in reversed(self.stages):
            handler = _bind(stage, handler)

        async def endpoint(request: Request) -> Response:
            return await handler(RequestContext(request, route, wire_model, access))

        return endpoint


def _bind(stage: Stage, call_next: Handler) -> Handler:
    async def handler(ctx: RequestContext) -> Response:
        return await stage(ctx, call_next)

    return handler


def when_done(response: Response, callback: Callable[[], None]) -> Response:
    """Run ``callback`` once ``response`` has been sent: at once for a plain response; for a
    stream, when sending ends for any reason, including a client that left before the
    first byte (when the body iterator never even starts)."""
    if isinstance(response, StreamingResponse | _Finally):
        return _Finally(response, callback)
    callback()
    return response


def streaming_body(response: Response) -> StreamingResponse | None:
    """The streaming response inside ``response`` (which ``when_done`` may have wrapped),
    whose ``body_iterator`` a stage may replace; None for a plain response."""
    while isinstance(response, _Finally):
        response = response.inner
    return response if isinstance(response, StreamingResponse) else None


class _Finally(Response):
    def __init__(self, inner: Response, callback: Callable[[], None]) -> None:
        # Deliberately not Response.__init__: this only wraps ``inner`` and sends it.
        self.inner = inner
        self.callback = callback
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.callback()
