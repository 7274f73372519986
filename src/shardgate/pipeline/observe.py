"""Metrics around everything after it, rejections included; streams are timed to the end."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from shardgate.errors import AuthenticationFailed, ShardgateError
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler, when_done
from shardgate.pipeline.context import RequestContext

__all__ = ["Observe"]


REQUEST_ID = "x-request-id"


class Observe:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics
        # prometheus_client's labels() lookup is a measurable share of a request's cost;
        # the label sets are few (routes x known models x statuses), so keep the children.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        gauge = self._m.in_flight.labels(ctx.route)
        gauge.inc()
        try:
            response = await call_next(ctx)
        except ShardgateError as exc:
            exc.headers[REQUEST_ID] = ctx.request_id
            gauge.dec()
            if isinstance(exc, AuthenticationFailed):
                self._m.auth_failures.labels(exc.reason).inc()
            self._record(ctx, exc.status_code)
            raise
        except BaseException:
            gauge.dec()
            self._record(ctx, 500)
            raise

        def done() -> None:
            gauge.dec()
            self._record(ctx, response.status_code)

        response.headers[REQUEST_ID] = ctx.request_id  # as OpenAI's API; safety events cite it

        return when_done(response, done)

    def _record(self, ctx: RequestContext, status: int) -> None:
        now = time.perf_counter()
        model = ctx.model or ""
        labels = (ctx.route, model, str(status))
        children = self._children.get(labels)
        if children is None:
            children = (self._m.requests.labels(*labels), self._m.latency.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(now - ctx.started)
        if not ctx.model:
            return
        if ctx.prompt_tokens:
            self._m.tokens.labels(model, "in").inc(ctx.prompt_tokens)
        if ctx.completion_tokens:
            self._m.tokens.labels(model, "out").inc(ctx.completion_tokens)
        if ctx.first_token_at is not None:
            self._m.ttft.labels(model).observe(ctx.first_token_at - ctx.started)
            if ctx.completion_tokens > 1:
                per_token = (now - ctx.first_token_at) / (ctx.completion_tokens - 1)
                self._m.tpot.labels(model).observe(per_token)
