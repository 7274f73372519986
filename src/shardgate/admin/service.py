"""Managing tenants and keys, with the access rules, for the admin API and the CLI alike.

- ``admin`` (platform): every tenant and key; may grant any role and scope.
- ``tenant-admin``: its own tenant's keys; grants only ``tenant-admin``, ``user`` or
  ``auditor``, and only scopes it holds itself (no privilege escalation).
- ``auditor``: reads its own tenant's tenant record and keys.
- ``user``: no admin access (the Authorize stage refuses it before this code runs).

Another tenant's resources are answered with 404, exactly like missing ones, so that a
tenant cannot even learn which names exist.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shardgate.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied
from shardgate.safety.policy import PolicyError, SafetyPolicy, merge_policy
from shardgate.store import (
    ALL,
    ENDPOINTS,
    NO_LIMITS,
    ApiKey,
    Conflict,
    Limits,
    NewKey,
    Principal,
    Role,
    SafetyEvent,
    Store,
    Tenant,
    display_prefix,
    generate_key,
    key_digest,
)
from shardgate.store.records import READ_ONLY_ENDPOINTS

__all__ = ["OPERATOR", "AdminService", "IssuedKey", "parse_duration"]

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_EXPIRY_S = 10 * 365 * 86400
MAX_GRACE_S = 30 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Who runs the CLI on the database is the platform operator.
OPERATOR = Principal("cli", "", "admin", frozenset({ALL}), frozenset({ALL}))


def parse_duration(value: int | str, what: str) -> int:
    """Seconds from ``3600``, ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"2w"``."""
    if isinstance(value, int):
        seconds = value
    else:
        match = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw]?)\s*", value)
        if match is None:
            raise InvalidRequest(
                f"{what} must be a number of seconds or like 30d, 12h, 15m", param=what
            )
        seconds = int(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 0:
        raise InvalidRequest(f"{what} must not be negative", param=what)
    return seconds


class IssuedKey:
    """A key record and its secret, which is shown this once."""

    def __init__(self, key: ApiKey, secret: str) -> None:
        self.key = key
        self.secret = secret


class AdminService:
    def __init__(
        self,
        store: Store,
        on_key_change: Callable[[str], None] = lambda key_id: None,
        clock: Callable[[], float] = time.time,
        safety_default: SafetyPolicy | None = None,
        on_policy_change: Callable[[str], None] = lambda tenant: None,
    ) -> None:
        self._store = store
        self._on_key_change = on_key_change  # e.g. drop the key from the gateway's cache
        self._clock = clock
        self.safety_default = safety_default or SafetyPolicy()
        self._on_policy_change = on_policy_change

    # tenants

    async def create_tenant(
        self, actor: Principal, name: str, limits: Limits = NO_LIMITS
    ) -> Tenant:
        _require(actor.role == "admin", "only a platform admin can create tenants")
        if not TENANT_NAME.fullmatch(name):
            raise InvalidRequest(
                "a tenant name is 1-64 characters of a-z, 0-9, '-' and '_', "
                "starting with a letter or digit",
                param="name",
            )
        try:
            return await self._store.create_tenant(name, limits)
        except Conflict as exc:
            raise AlreadyExists(str(exc), param="name") from None

    async def set_tenant_limits(self, actor: Principal, name: str, limits: Limits) -> Tenant:
        await self.get_tenant(actor, name)
        _require(actor.role == "admin", "only a platform admin can change a tenant's limits")
        tenant = await self._store.set_tenant_limits(name, limits)
        if tenant is None:
            raise NotFound(f"no tenant named '{name}'")
        return tenant

    async def list_tenants(self, actor: Principal) -> list[Tenant]:
        return [t for t in await self._store.list_tenants() if _sees(actor, t.name)]

    async def get_tenant(self, actor: Principal, name: str) -> Tenant:
        tenant = await self._store.get_tenant(name) if _sees(actor, name) else None
        if tenant is None:
            raise NotFound(f"no tenant named '{name}'")
        return tenant

    # safety

    def effective_policy(self, tenant: Tenant) -> SafetyPolicy:
        try:
            return merge_policy(self.safety_default, tenant.safety_policy)
        except PolicyError:  # the gateway falls back to the default too
            return self.safety_default

    async def set_safety_policy(
        self, actor: Principal, name: str, override: Mapping[str, Any] | None
    ) -> Tenant:
        """Replace a tenant's override of the default safety policy (empty: the default)."""
        await self.get_tenant(actor, name)
        _require(actor.role == "admin", "only a platform admin can change a safety policy")
        try:
            merge_policy(self.safety_default, override)
        except PolicyError as exc:
            raise InvalidRequest(f"invalid safety policy: {exc}", param="policy") from None
        tenant = await self._store.set_tenant_safety_policy(name, override or None)
        if tenant is None:
            raise NotFound(f"no tenant named '{name}'")
        self._on_policy_change(name)
        return tenant

    async def list_safety_events(
        self,
        actor: Principal,
        tenant: str | None = None,
        since: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[SafetyEvent]:
        """Newest first. A tenant admin or auditor sees its own tenant's events only."""
        if tenant is not None:
            await self.get_tenant(actor, tenant)
        elif actor.role != "admin":
            tenant = actor.tenant
        return await self._store.list_safety_events(tenant, since, before_id, max(limit, 1))

    # keys

    async def create_key(
        self,
        actor: Principal,
        *,
        tenant: str | None,
        role: Role,
        endpoints: Sequence[str] = (),
        models: Sequence[str] = (),
        name: str | None = None,
        expires_in: int | str | None = None,
        limits: Limits = NO_LIMITS,
    ) -> IssuedKey:
        tenant = tenant or actor.tenant
        await self.get_tenant(actor, tenant)  # 404 unless it exists and is visible
        _require(_manages(actor, tenant), "this key cannot create keys")
        _check_grant(actor, role, tuple(endpoints), tuple(models))
        expires_at = None
        if expires_in is not None:
            seconds = parse_duration(expires_in, "expires_in")
            if not 0 < seconds <= MAX_EXPIRY_S:
                raise InvalidRequest("expires_in must be between 1 s and 10 years")
            expires_at = self._clock() + seconds
        spec = NewKey(
            tenant,
            role,
            _dedupe(endpoints),
            _dedupe(models),
            name,
            expires_at,
            created_by=actor.key_id,
            limits=limits,
        )
        secret = generate_key()
        try:
            key = await self._store.create_key(spec, key_digest(secret), display_prefix(secret))
        except LookupError:  # the tenant went away meanwhile
            raise NotFound(f"no tenant named '{tenant}'") from None
        return IssuedKey(key, secret)

    async def list_keys(self, actor: Principal, tenant: str | None = None) -> list[ApiKey]:
        if tenant is not None:
            await self.get_tenant(actor, tenant)
        elif actor.role != "admin":
            tenant = actor.tenant
        return await self._store.list_keys(tenant)

    async def get_key(self, actor: Principal, key_id: str) -> ApiKey:
        key = await self._store.get_key(key_id)
        if key is None or not _sees(actor, key.tenant):
            raise NotFound(f"no key with id '{key_id}'")
        return key

    async def set_key_limits(self, actor: Principal, key_id: str, limits: Limits) -> ApiKey:
        """A key's own limits; its tenant's limits apply on top, whatever these say."""
        await self._writable_key(actor, key_id)
        key = await self._store.set_key_limits(key_id, limits)
        if key is None:
            raise NotFound(f"no key with id '{key_id}'")
        self._on_key_change(key_id)
        return key

    async def revoke_key(self, actor: Principal, key_id: str) -> ApiKey:
        await self._writable_key(actor, key_id)
        key = await self._store.revoke_key(key_id, self._clock())
        if key is None:
            raise NotFound(f"no key with id '{key_id}'")
        self._on_key_change(key_id)
        return key

    async def rotate_key(
        self, actor: Principal, key_id: str, grace_period: int | str = 0
    ) -> tuple[IssuedKey, float]:
        """A new secret for the key; the old one keeps working for ``grace_period``.
        Returns the new key and when the old secret stops working."""
        key = await self._writable_key(actor, key_id)
        now = self._clock()
        if not key.is_active(now):
            raise InvalidRequest("a revoked or expired key cannot be rotated", param="key_id")
        grace = parse_duration(grace_period, "grace_period")
        if grace > MAX_GRACE_S:
            raise InvalidRequest("grace_period must be at most 30 days", param="grace_period")
        secret = generate_key()
        rotated = await self._store.rotate_key(
            key_id, key_digest(secret), display_prefix(secret), now, now + grace
        )
        if rotated is None:
            raise NotFound(f"no key with id '{key_id}'")
        self._on_key_change(key_id)
        return IssuedKey(rotated, secret), now + grace

    async def _writable_key(self, actor: Principal, key_id: str) -> ApiKey:
        key = await self.get_key(actor, key_id)
        _require(_manages(actor, key.tenant), "this key cannot change keys")
        _require(
            actor.role == "admin" or key.role != "admin", "only a platform admin can change it"
        )
        return key


def _sees(actor: Principal, tenant: str) -> bool:
    return actor.role == "admin" or (
        actor.role in ("tenant-admin", "auditor") and actor.tenant == tenant
    )


def _manages(actor: Principal, tenant: str) -> bool:
    return actor.role == "admin" or (actor.role == "tenant-admin" and actor.tenant == tenant)


def _require(allowed: bool, message: str) -> None:
    if not allowed:
        raise PermissionDenied(message)


def _check_grant(
    actor: Principal, role: Role, endpoints: tuple[str, ...], models: tuple[str, ...]
) -> None:
    unknown = sorted(set(endpoints) - {*ENDPOINTS, ALL})
    if unknown:
        known = ", ".join((*ENDPOINTS, ALL))
        raise InvalidRequest(
            f"unknown endpoint scope {', '.join(unknown)} (known: {known})", param="endpoints"
        )
    if any(not m or len(m) > 256 for m in models):
        raise InvalidRequest("a model scope is a model name, or *", param="models")
    if role == "auditor" and not set(endpoints) <= READ_ONLY_ENDPOINTS:
        raise InvalidRequest(
            "an auditor key is read-only: its endpoints may only be models, metrics",
            param="endpoints",
        )
    if actor.role == "admin":
        return
    _require(role != "admin", "only a platform admin can create admin keys")
    _require("metrics" not in endpoints, "only a platform admin can grant the metrics scope")
    beyond = [e for e in endpoints if e != ALL and not actor.may_call(e)]
    if (ALL in endpoints and ALL not in actor.endpoints) or beyond:
        raise PermissionDenied("a key cannot grant endpoints it may not call itself")
    if (ALL in models and ALL not in actor.models) or any(
        m != ALL and not actor.may_use(m) for m in models
    ):
        raise PermissionDenied("a key cannot grant models it may not use itself")


def _dedupe(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
