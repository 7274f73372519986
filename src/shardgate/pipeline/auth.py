"""Authentication: ``Authorization: Bearer <key>`` to a principal. Fails closed."""

from __future__ import annotations

from starlette.responses import Response

from shardgate.errors import AuthenticationFailed
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext
from shardgate.store.keys import KeyStore

__all__ = ["Authenticate"]


class Authenticate:
    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        header = ctx.request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationFailed(
                "no API key given: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        principal = await self._keys.verify(secret.strip())
        if principal is None:
            # One message for unknown, malformed and revoked keys: nothing about which.
            raise AuthenticationFailed("the API key is not valid")
        ctx.principal = principal
        return await call_next(ctx)
