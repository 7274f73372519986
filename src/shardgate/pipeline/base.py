"""How stages chain: each gets the context and the rest of the pipeline as ``call_next``."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shardgate.pipeline.context import RequestContext

__all__ = ["Handler", "Pipeline", "Stage", "when_done"]

Handler = Callable[[RequestContext], Awaitable[Response]]


class Stage(Protocol):
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response: ...


class Pipeline:
    """Stages in order, ending in a route-specific terminal handler."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    def endpoint(
        self, route: str, terminal: Handler, wire_model: type[BaseModel] | None = None
    ) -> Callable[[Request], Awaitable[Response]]:
        handler = terminal
        for stage in reversed(self.stages):
            handler = _bind(stage, handler)

        async def endpoint(request: Request) -> Response:
            return await handler(RequestContext(request, route, wire_model))

        return endpoint


def _bind(stage: Stage, call_next: Handler) -> Handler:
    async def handler(ctx: RequestContext) -> Response:
        return await stage(ctx, call_next)

    return handler


def when_done(response: Response, callback: Callable[[], None]) -> Response:
    """Run ``callback`` once ``response`` is fully sent: now, or when its stream ends."""
    if isinstance(response, StreamingResponse):
        response.body_iterator = _then(response.body_iterator, callback)
    else:
        callback()
    return response


async def _then(body: AsyncIterable[Any], callback: Callable[[], None]) -> AsyncIterator[Any]:
    try:
        async for chunk in body:
            yield chunk
    finally:
        callback()
