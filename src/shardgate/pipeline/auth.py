"""Authentication: ``Authorization: Bearer <key>`` to a principal. Fails closed."""

from __future__ import annotations

from starlette.responses import Response

from shardgate.errors import AuthenticationFailed
from shardgate.identity import KeyVerifier
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext

__all__ = ["Authenticate"]


class Authenticate:
    def __init__(self, verifier: KeyVerifier) -> None:
        self._verifier = verifier

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        header = ctx.request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationFailed(
                "no API key given: send 'Authorization: Bearer <key>'",
                code="missing_api_key",
                reason="missing",
            )
        ctx.principal = await self._verifier.verify(secret.strip())
        return await call_next(ctx)
