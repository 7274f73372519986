"""What the store holds, as plain frozen records: tenants, API keys and the principal.

Roles, and the endpoint names that scopes refer to, are defined here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "ALL",
    "ENDPOINTS",
    "READ_ONLY_ENDPOINTS",
    "ROLES",
    "ApiKey",
    "NewKey",
    "Principal",
    "Role",
    "SecretMatch",
    "Tenant",
]

Role = Literal["admin", "tenant-admin", "user", "auditor"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

ALL: Final = "*"  # a scope entry that grants every endpoint, or every model
# The endpoints a key's scopes may name. /admin is governed by the role, not by scopes.
ENDPOINTS: Final = ("models", "chat", "completions", "embeddings", "metrics")
READ_ONLY_ENDPOINTS: Final = frozenset({"models", "metrics"})


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class NewKey:
    """What a caller asks for; the store adds the id, hash and times."""

    tenant: str
    role: Role
    endpoints: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    name: str | None = None
    expires_at: float | None = None
    created_by: str | None = None


@dataclass(frozen=True)
class ApiKey:
    """A key's record. The secret itself is never stored: only its hash and a prefix."""

    id: str
    tenant: str
    role: Role
    endpoints: tuple[str, ...]
    models: tuple[str, ...]
    name: str | None
    prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    created_by: str | None

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class SecretMatch:
    """A stored secret hash and its key; ``expires_at`` is set on a secret replaced by a
    rotation, which stays valid for the grace period."""

    digest: str
    expires_at: float | None
    key: ApiKey


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, its tenant, its role and what its scopes allow."""

    key_id: str
    tenant: str
    role: Role
    endpoints: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key.id, key.tenant, key.role, frozenset(key.endpoints), frozenset(key.models))

    def may_call(self, endpoint: str) -> bool:
        if endpoint == "metrics":  # platform-wide figures: never implied by "*"
            return self.role == "admin" or "metrics" in self.endpoints
        if self.role == "auditor" and endpoint not in READ_ONLY_ENDPOINTS:
            return False
        return endpoint in self.endpoints or ALL in self.endpoints

    def may_use(self, model: str) -> bool:
        return model in self.models or ALL in self.models
