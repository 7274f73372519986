"""Route: pick a shard for the model, call it, and relay its answer.

The model is resolved once per request; the shard is chosen per attempt, so a shard that
refuses the connection is marked down and the next one is tried. Once bytes have been
relayed a failure cannot be retried: a stream then ends with an OpenAI error event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
from starlette.responses import Response, StreamingResponse

from shardgate.errors import ModelNotFound, ShardUnavailable
from shardgate.pipeline.base import when_done
from shardgate.pipeline.context import RequestContext
from shardgate.routing.client import ShardClient, ShardConnectionError
from shardgate.routing.registry import Shard, ShardRegistry
from shardgate.web import SSE_DONE, SSE_HEADERS, sse_event

__all__ = ["RouteToShard"]

log = logging.getLogger(__name__)

PATHS = {
    "chat.completions": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
MAX_ATTEMPTS = 3


class RouteToShard:
    def __init__(self, registry: ShardRegistry, client: ShardClient) -> None:
        self._registry = registry
        self._client = client

    async def __call__(self, ctx: RequestContext) -> Response:
        model = str(ctx.payload.get("model"))
        if model not in self._registry.known_models():  # a short list
            raise ModelNotFound(f"the model '{model}' does not exist", param="model")
        ctx.model = model
        wants_usage = _wants_usage(ctx)
        if ctx.stream:  # always ask for usage so that token metrics are exact
            ctx.payload["stream_options"] = {"include_usage": True}
        body = orjson.dumps(ctx.payload)
        shard, upstream = await self._send(ctx, model, body)
        if ctx.stream and upstream.status == 200:
            response = StreamingResponse(
                self._relay(ctx, shard, upstream, wants_usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
            return when_done(response, lambda: _release(shard, upstream))
        try:
            content = await upstream.read()
        except ShardConnectionError as exc:
            self._registry.mark_down(shard, str(exc) or type(exc).__name__)
            raise ShardUnavailable(f"the shard serving '{model}' failed mid-response") from None
        finally:
            shard.in_flight -= 1
            upstream.release()
        _count_tokens(ctx, content)
        return Response(content, upstream.status, media_type="application/json")

    async def _send(
        self, ctx: RequestContext, model: str, body: bytes
    ) -> tuple[Shard, aiohttp.ClientResponse]:
        path = PATHS[ctx.route]
        for shard in self._registry.candidates(model)[:MAX_ATTEMPTS]:
            shard.in_flight += 1
            try:
                upstream = await self._client.post(shard.url + path, body, ctx.request_id)
            except ShardConnectionError as exc:
                shard.in_flight -= 1
                self._registry.mark_down(shard, str(exc) or type(exc).__name__)
                continue
            ctx.shard = shard.url
            return shard, upstream
        raise ShardUnavailable(f"no shard is available to serve '{model}'; retry shortly")

    async def _relay(
        self,
        ctx: RequestContext,
        shard: Shard,
        upstream: aiohttp.ClientResponse,
        wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        done = False
        try:
            async for event in _events(upstream):
                if event == SSE_DONE:
                    done = True
                elif ctx.first_token_at is None and _has_text(event):
                    ctx.first_token_at = time.perf_counter()
                if b'"usage":{' in event:
                    _count_tokens(ctx, event[6:])
                    if not wants_usage:
                        continue
                yield event
        except ShardConnectionError as exc:
            self._registry.mark_down(shard, str(exc) or type(exc).__name__)
        if not done:
            error = ShardUnavailable("the shard serving this stream failed; the output is cut")
            yield sse_event(error.body())


async def _events(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Whole SSE events (ending in a blank line) from the shard's byte stream."""
    pending: list[bytes] = []
    async for line in upstream.content:
        pending.append(line)
        if line in (b"\n", b"\r\n"):
            yield b"".join(pending)
            pending = []


def _release(shard: Shard, upstream: aiohttp.ClientResponse) -> None:
    shard.in_flight -= 1
    upstream.close()  # mid-stream, this is what tells the shard to abort the sequence


def _has_text(event: bytes) -> bool:
    """Whether an SSE chunk carries generated text (the role-only opening chunk does not)."""
    try:
        choices = orjson.loads(event[6:]).get("choices") or []
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return any((c.get("delta") or {}).get("content") or c.get("text") for c in choices)


def _wants_usage(ctx: RequestContext) -> bool:
    options = ctx.payload.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _count_tokens(ctx: RequestContext, content: bytes) -> None:
    try:
        usage = orjson.loads(content).get("usage") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return
    ctx.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    ctx.completion_tokens = int(usage.get("completion_tokens") or 0)
