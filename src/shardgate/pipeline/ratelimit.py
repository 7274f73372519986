"""Rate limits and token budgets of the key and its tenant (see ``limits.limiter``).

Runs once the model and body are known, so that tokens can be estimated: the prompt's
size plus ``max_tokens`` (or a default) for each choice. Every response of a limited key
carries the ``x-ratelimit-*`` headers, errors included; the usage is settled when the
response has been sent, with the real token counts the shard reported.
"""

from __future__ import annotations

from starlette.responses import Response

from shardgate.errors import ShardgateError
from shardgate.limits import RateLimiter
from shardgate.pipeline.authorize import ADMIN_LEVELS
from shardgate.pipeline.base import Handler, when_done
from shardgate.pipeline.context import RequestContext

__all__ = ["RateLimit", "estimate_tokens"]

BYTES_PER_TOKEN = 4  # a generous estimate of the prompt; settling corrects it
UNLIMITED_ACCESS = frozenset({*ADMIN_LEVELS, "metrics"})


def estimate_tokens(ctx: RequestContext, default_completion: int) -> int:
    if ctx.route not in ("chat.completions", "completions", "embeddings"):
        return 0
    prompt = len(ctx.body) // BYTES_PER_TOKEN + 1
    if ctx.route == "embeddings":
        return prompt
    payload = ctx.payload
    completion = payload.get("max_completion_tokens") or payload.get("max_tokens")
    choices = payload.get("n") or 1
    if not isinstance(completion, int) or completion < 1:
        completion = default_completion
    if not isinstance(choices, int) or choices < 1:
        choices = 1
    return prompt + completion * choices


class RateLimit:
    def __init__(self, limiter: RateLimiter, default_completion_tokens: int = 256) -> None:
        self._limiter = limiter
        self._default_completion = default_completion_tokens

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        if ctx.principal is None or ctx.access in UNLIMITED_ACCESS:
            return await call_next(ctx)
        tokens = estimate_tokens(ctx, self._default_completion)
        admission = await self._limiter.admit(ctx.principal, tokens)
        try:
            response = await call_next(ctx)
        except ShardgateError as exc:
            exc.headers.update(admission.headers)
            self._limiter.settle_later(admission, ctx.prompt_tokens + ctx.completion_tokens)
            raise
        except BaseException:
            self._limiter.settle_later(admission, ctx.prompt_tokens + ctx.completion_tokens)
            raise
        response.headers.update(admission.headers)

        def settle() -> None:
            self._limiter.settle_later(admission, ctx.prompt_tokens + ctx.completion_tokens)

        return when_done(response, settle)
