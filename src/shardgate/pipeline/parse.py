"""Parse and validate the JSON body against the route's wire model."""

from __future__ import annotations

from starlette.responses import Response

from shardgate.api.parsing import parse_json, validate
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext

__all__ = ["ParseRequest"]


class ParseRequest:
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        if ctx.wire_model is not None:
            ctx.payload = parse_json(ctx.body)
            ctx.parsed = validate(ctx.wire_model, ctx.payload)
            ctx.stream = bool(ctx.payload.get("stream"))
        return await call_next(ctx)
