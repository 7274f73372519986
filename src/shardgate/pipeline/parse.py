"""Parse and validate the JSON body against the route's wire model."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response

from shardgate.api.parsing import parse_json, validate
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext

__all__ = ["ParseRequest"]


class ParseRequest:
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        if ctx.wire_model is not None:
            empty_is_fine = not ctx.body and _all_optional(ctx.wire_model)
            ctx.payload = {} if empty_is_fine else parse_json(ctx.body)
            ctx.parsed = validate(ctx.wire_model, ctx.payload)
            ctx.stream = bool(ctx.payload.get("stream"))
        return await call_next(ctx)


def _all_optional(model: type[BaseModel]) -> bool:
    return not any(field.is_required() for field in model.model_fields.values())
