"""What the store holds, as plain frozen records: tenants, API keys and the principal.

Roles, and the endpoint names that scopes refer to, are defined here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

__all__ = [
    "ALL",
    "ENDPOINTS",
    "NO_LIMITS",
    "READ_ONLY_ENDPOINTS",
    "ROLES",
    "ApiKey",
    "Limits",
    "NewKey",
    "Principal",
    "Role",
    "SafetyEvent",
    "SecretMatch",
    "Tenant",
]

Role = Literal["admin", "tenant-admin", "user", "auditor"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

ALL: Final = "*"  # a scope entry that grants every endpoint, or every model
# The endpoints a key's scopes may name. /admin is governed by the role, not by scopes.
ENDPOINTS: Final = ("models", "chat", "completions", "embeddings", "moderations", "metrics")
READ_ONLY_ENDPOINTS: Final = frozenset({"models", "metrics"})


@dataclass(frozen=True)
class Limits:
    """Rate limits and token budgets; None leaves a limit to the settings' default."""

    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) per minute
    concurrency: int | None = None  # requests in flight at once
    daily_tokens: int | None = None  # per UTC day, a hard stop
    monthly_tokens: int | None = None  # per UTC calendar month, a hard stop

    def over(self, defaults: Limits) -> Limits:
        """These limits, with the defaults filling in what is not set."""
        if defaults == NO_LIMITS:  # on every request: keep it cheap
            return self

        def pick(mine: int | None, default: int | None) -> int | None:
            return mine if mine is not None else default

        return Limits(
            pick(self.rpm, defaults.rpm),
            pick(self.tpm, defaults.tpm),
            pick(self.concurrency, defaults.concurrency),
            pick(self.daily_tokens, defaults.daily_tokens),
            pick(self.monthly_tokens, defaults.monthly_tokens),
        )


NO_LIMITS: Final = Limits()


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: float
    limits: Limits = NO_LIMITS
    # The tenant's override of the default safety policy (partial); None: the default.
    safety_policy: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SafetyEvent:
    """What a safety detector found in a request or answer. Never the text itself."""

    created_at: float
    tenant: str
    key_id: str | None
    request_id: str
    route: str
    stage: str  # "input", "output" or "moderation"
    detector: str
    category: str
    score: float
    action: str  # "flag", "redact", "block" or "error" (the detector failed)
    id: int | None = None


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
    limits: Limits = NO_LIMITS


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
    limits: Limits = NO_LIMITS

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class SecretMatch:
    """A stored secret hash and its key; ``expires_at`` is set on a secret replaced by a
    rotation, which stays valid for the grace period."""

    digest: str
    expires_at: float | None
    key: ApiKey
    tenant_limits: Limits = NO_LIMITS


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, its tenant, its role and what its scopes allow."""

    key_id: str
    tenant: str
    role: Role
    endpoints: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    key_limits: Limits = NO_LIMITS
    tenant_limits: Limits = NO_LIMITS

    @classmethod
    def of(cls, key: ApiKey, tenant_limits: Limits = NO_LIMITS) -> Principal:
        return cls(
            key.id,
            key.tenant,
            key.role,
            frozenset(key.endpoints),
            frozenset(key.models),
            key.limits,
            tenant_limits,
        )

    def may_call(self, endpoint: str) -> bool:
        if endpoint == "metrics":  # platform-wide figures: never implied by "*"
            return self.role == "admin" or "metrics" in self.endpoints
        if self.role == "auditor" and endpoint not in READ_ONLY_ENDPOINTS:
            return False
        return endpoint in self.endpoints or ALL in self.endpoints

    def may_use(self, model: str) -> bool:
        return model in self.models or ALL in self.models
