"""The admin API's HTTP layer: parse, call ``AdminService``, serialise. Nothing else."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from shardgate.admin.protocol import (
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyObject,
    ApiKeyRotated,
    KeyCreateRequest,
    KeyRotateRequest,
    LimitsUpdateRequest,
    RoleList,
    RoleObject,
    SafetyEventList,
    SafetyEventObject,
    SafetyPolicyObject,
    SafetyPolicyUpdate,
    TenantCreateRequest,
    TenantList,
    TenantObject,
)
from shardgate.admin.service import AdminService
from shardgate.errors import InvalidRequest
from shardgate.openapi import Operation
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext
from shardgate.store import Principal, Role
from shardgate.web import JSONResponse

__all__ = ["ROLE_DESCRIPTIONS", "admin_operations"]

ROLE_DESCRIPTIONS: dict[Role, str] = {
    "admin": "platform administrator: every tenant and key",
    "tenant-admin": "manages its own tenant's keys, granting at most its own scopes",
    "user": "calls the API endpoints and models its scopes name; no admin access",
    "auditor": "reads its own tenant's records; read-only",
}
PREFIX = "/admin/v1"
MAX_EVENTS_PAGE = 1000


def admin_operations(service: AdminService) -> list[Operation]:
    def actor(ctx: RequestContext) -> Principal:
        assert ctx.principal is not None  # Authenticate ran
        return ctx.principal

    def reply(model: BaseModel) -> Response:
        return JSONResponse(model.model_dump(mode="json"))

    async def list_tenants(ctx: RequestContext) -> Response:
        tenants = await service.list_tenants(actor(ctx))
        return reply(TenantList(data=[TenantObject.of(t) for t in tenants]))

    async def create_tenant(ctx: RequestContext) -> Response:
        assert isinstance(ctx.parsed, TenantCreateRequest)
        body = ctx.parsed
        tenant = await service.create_tenant(actor(ctx), body.name, body.limits.to_limits())
        return reply(TenantObject.of(tenant))

    async def set_tenant_limits(ctx: RequestContext) -> Response:
        assert isinstance(ctx.parsed, LimitsUpdateRequest)
        name, limits = ctx.request.path_params["name"], ctx.parsed.limits.to_limits()
        return reply(TenantObject.of(await service.set_tenant_limits(actor(ctx), name, limits)))

    async def set_key_limits(ctx: RequestContext) -> Response:
        assert isinstance(ctx.parsed, LimitsUpdateRequest)
        key_id, limits = ctx.request.path_params["key_id"], ctx.parsed.limits.to_limits()
        return reply(ApiKeyObject.of(await service.set_key_limits(actor(ctx), key_id, limits)))

    async def get_tenant(ctx: RequestContext) -> Response:
        name = ctx.request.path_params["name"]
        return reply(TenantObject.of(await service.get_tenant(actor(ctx), name)))

    async def list_keys(ctx: RequestContext) -> Response:
        keys = await service.list_keys(actor(ctx), ctx.request.query_params.get("tenant"))
        return reply(ApiKeyList(data=[ApiKeyObject.of(k) for k in keys]))

    async def create_key(ctx: RequestContext) -> Response:
        body = ctx.parsed
        assert isinstance(body, KeyCreateRequest)
        issued = await service.create_key(
            actor(ctx),
            tenant=body.tenant,
            role=body.role,
            endpoints=body.endpoints,
            models=body.models,
            name=body.name,
            expires_in=body.expires_in,
            limits=body.limits.to_limits(),
        )
        return reply(ApiKeyCreated.issued(issued.key, issued.secret))

    async def get_key(ctx: RequestContext) -> Response:
        key_id = ctx.request.path_params["key_id"]
        return reply(ApiKeyObject.of(await service.get_key(actor(ctx), key_id)))

    async def revoke_key(ctx: RequestContext) -> Response:
        key_id = ctx.request.path_params["key_id"]
        return reply(ApiKeyObject.of(await service.revoke_key(actor(ctx), key_id)))

    async def rotate_key(ctx: RequestContext) -> Response:
        assert isinstance(ctx.parsed, KeyRotateRequest)
        key_id = ctx.request.path_params["key_id"]
        issued, old_until = await service.rotate_key(actor(ctx), key_id, ctx.parsed.grace_period)
        return reply(ApiKeyRotated.rotated(issued.key, issued.secret, old_until))

    async def get_safety_policy(ctx: RequestContext) -> Response:
        tenant = await service.get_tenant(actor(ctx), ctx.request.path_params["name"])
        return reply(SafetyPolicyObject.of(tenant, service.effective_policy(tenant)))

    async def set_safety_policy(ctx: RequestContext) -> Response:
        assert isinstance(ctx.parsed, SafetyPolicyUpdate)
        name = ctx.request.path_params["name"]
        tenant = await service.set_safety_policy(actor(ctx), name, ctx.parsed.override())
        return reply(SafetyPolicyObject.of(tenant, service.effective_policy(tenant)))

    async def list_safety_events(ctx: RequestContext) -> Response:
        query = ctx.request.query_params
        limit = _number(query.get("limit"), "limit", int)
        limit = 100 if limit is None else limit
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            raise InvalidRequest(f"limit must be 1 to {MAX_EVENTS_PAGE}", param="limit")
        events = await service.list_safety_events(
            actor(ctx),
            query.get("tenant"),
            since=_number(query.get("since"), "since", float),
            before_id=_number(query.get("before"), "before", int),
            limit=limit + 1,
        )
        data = [SafetyEventObject.of(e) for e in events[:limit]]
        return reply(SafetyEventList(data=data, has_more=len(events) > limit))

    async def list_roles(ctx: RequestContext) -> Response:
        roles = [RoleObject(name=n, description=d) for n, d in ROLE_DESCRIPTIONS.items()]
        return reply(RoleList(data=roles))

    def op(
        method: str,
        path: str,
        name: str,
        handler: Handler,
        access: str,
        summary: str,
        request: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
    ) -> Operation:
        return Operation(
            method,
            PREFIX + path,
            "admin." + name,
            handler,
            access,
            summary,
            request,
            response,
            tag="admin",
        )

    return [
        op(
            "GET",
            "/tenants",
            "tenants.list",
            list_tenants,
            "admin:read",
            "List the tenants this key can see",
            response=TenantList,
        ),
        op(
            "POST",
            "/tenants",
            "tenants.create",
            create_tenant,
            "admin:platform",
            "Create a tenant",
            TenantCreateRequest,
            TenantObject,
        ),
        op(
            "GET",
            "/tenants/{name}",
            "tenants.get",
            get_tenant,
            "admin:read",
            "Get a tenant",
            response=TenantObject,
        ),
        op(
            "GET",
            "/keys",
            "keys.list",
            list_keys,
            "admin:read",
            "List API keys (query: tenant)",
            response=ApiKeyList,
        ),
        op(
            "POST",
            "/keys",
            "keys.create",
            create_key,
            "admin:write",
            "Create an API key; its secret is returned only here",
            KeyCreateRequest,
            ApiKeyCreated,
        ),
        op(
            "GET",
            "/keys/{key_id}",
            "keys.get",
            get_key,
            "admin:read",
            "Get an API key's record",
            response=ApiKeyObject,
        ),
        op(
            "POST",
            "/keys/{key_id}/revoke",
            "keys.revoke",
            revoke_key,
            "admin:write",
            "Revoke an API key",
            response=ApiKeyObject,
        ),
        op(
            "POST",
            "/keys/{key_id}/rotate",
            "keys.rotate",
            rotate_key,
            "admin:write",
            "Give a key a new secret; the old one works for the grace period",
            KeyRotateRequest,
            ApiKeyRotated,
        ),
        op(
            "PATCH",
            "/keys/{key_id}",
            "keys.update",
            set_key_limits,
            "admin:write",
            "Replace a key's rate limits and budgets",
            LimitsUpdateRequest,
            ApiKeyObject,
        ),
        op(
            "PATCH",
            "/tenants/{name}",
            "tenants.update",
            set_tenant_limits,
            "admin:platform",
            "Replace a tenant's rate limits and budgets",
            LimitsUpdateRequest,
            TenantObject,
        ),
        op(
            "GET",
            "/tenants/{name}/safety",
            "tenants.safety.get",
            get_safety_policy,
            "admin:read",
            "A tenant's safety policy: its override and the effective policy",
            response=SafetyPolicyObject,
        ),
        op(
            "PUT",
            "/tenants/{name}/safety",
            "tenants.safety.set",
            set_safety_policy,
            "admin:platform",
            "Replace a tenant's safety policy override ({} returns it to the default)",
            SafetyPolicyUpdate,
            SafetyPolicyObject,
        ),
        op(
            "GET",
            "/safety/events",
            "safety.events.list",
            list_safety_events,
            "admin:read",
            "Safety events, newest first (query: tenant, since, before, limit)",
            response=SafetyEventList,
        ),
        op(
            "GET",
            "/roles",
            "roles.list",
            list_roles,
            "admin:read",
            "The roles and what they may do",
            response=RoleList,
        ),
    ]


def _number(raw: str | None, name: str, kind: type[int] | type[float]) -> Any:
    """A query parameter as a finite, non-negative number that fits a database column."""
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not 0 <= value < 2**63:
        raise InvalidRequest(f"{name} must be a non-negative number", param=name)
    return value
