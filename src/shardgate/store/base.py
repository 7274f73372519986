"""The storage seams: small async protocols. ``SqlStore`` implements them on SQLite (the
embedded default, or in memory) and PostgreSQL; one contract suite runs against each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from shardgate.store.records import ApiKey, Limits, NewKey, SafetyEvent, SecretMatch, Tenant

__all__ = ["Conflict", "KeyStore", "SafetyEventStore", "Store", "TenantStore"]


class Conflict(Exception):
    """A unique name is taken."""


class TenantStore(Protocol):
    async def create_tenant(self, name: str, limits: Limits = ...) -> Tenant:
        """Raises ``Conflict`` if the name is taken."""

    async def get_tenant(self, name: str) -> Tenant | None: ...

    async def list_tenants(self) -> list[Tenant]: ...

    async def set_tenant_limits(self, name: str, limits: Limits) -> Tenant | None: ...

    async def set_tenant_safety_policy(
        self, name: str, policy: Mapping[str, Any] | None
    ) -> Tenant | None: ...


class KeyStore(Protocol):
    async def create_key(self, spec: NewKey, digest: str, prefix: str) -> ApiKey:
        """Raises ``LookupError`` if the tenant does not exist, ``Conflict`` if the
        digest is already stored."""

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def set_key_limits(self, key_id: str, limits: Limits) -> ApiKey | None: ...

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        """Revoke a key (idempotent: a second call keeps the first time)."""

    async def rotate_key(
        self, key_id: str, digest: str, prefix: str, now: float, grace_until: float
    ) -> ApiKey | None:
        """Give a key a new secret; its current secrets stay valid until ``grace_until``."""

    async def find_secret(self, digest: str) -> SecretMatch | None: ...

    async def touch_keys(self, last_used: Mapping[str, float]) -> None:
        """Record when keys were last used (a batch, written now and then)."""

    async def has_admin_key(self) -> bool: ...


class SafetyEventStore(Protocol):
    async def add_safety_events(self, events: Sequence[SafetyEvent]) -> None: ...

    async def list_safety_events(
        self,
        tenant: str | None = None,
        since: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[SafetyEvent]:
        """Newest first; ``before_id`` pages back from an earlier answer's last id."""


class Store(TenantStore, KeyStore, SafetyEventStore, Protocol):
    async def close(self) -> None: ...
