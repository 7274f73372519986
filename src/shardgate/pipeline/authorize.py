"""Authorisation: the route's requirement against the principal's role and scopes.

Both fail closed. ``Authorize`` runs before the body is parsed: /v1 routes need their
endpoint in the key's scopes; /admin routes need a role (``admin:read``: admin,
tenant-admin or auditor; ``admin:write``: admin or tenant-admin; ``admin:platform``:
admin). ``AuthorizeModel`` runs once the body is parsed: the requested model must be in the
key's model scopes. Which tenant an admin call may touch is decided by ``AdminService``.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.responses import Response

from shardgate.errors import PermissionDenied
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext

__all__ = ["ADMIN_LEVELS", "Authorize", "AuthorizeModel"]

ADMIN_LEVELS = {
    "admin:read": frozenset({"admin", "tenant-admin", "auditor"}),
    "admin:write": frozenset({"admin", "tenant-admin"}),
    "admin:platform": frozenset({"admin"}),
}


class Authorize:
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        principal = ctx.principal
        assert principal is not None, "Authenticate runs first"
        roles = ADMIN_LEVELS.get(ctx.access)
        if roles is not None:
            if principal.role not in roles:
                raise PermissionDenied(
                    f"a key with the role '{principal.role}' may not do this",
                    code="role_not_permitted",
                )
            return await call_next(ctx)
        if not principal.may_call(ctx.access):
            raise PermissionDenied(
                f"this key's scopes do not include the '{ctx.access}' endpoint",
                code="endpoint_not_permitted",
            )
        return await call_next(ctx)


class AuthorizeModel:
    """The model scope, on routes whose ``model`` names a served model (not, say, the
    moderation endpoint's, which names a classifier)."""

    def __init__(self, skip_routes: Collection[str] = ()) -> None:
        self._skip = frozenset(skip_routes)

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        principal = ctx.principal
        assert principal is not None, "Authenticate runs first"
        model = ctx.payload.get("model")
        if isinstance(model, str) and ctx.route not in self._skip and not principal.may_use(model):
            raise PermissionDenied(
                f"this key's scopes do not include the model '{model}'",
                param="model",
                code="model_not_permitted",
            )
        return await call_next(ctx)
