"""Wire models of the admin API (``/admin/v1``). Times are Unix seconds, as in OpenAI's API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shardgate.safety.policy import Action, OutputAction, SafetyPolicy
from shardgate.store import ApiKey, Limits, Role, SafetyEvent, Tenant

__all__ = [
    "ApiKeyCreated",
    "ApiKeyList",
    "ApiKeyObject",
    "ApiKeyRotated",
    "KeyCreateRequest",
    "KeyRotateRequest",
    "LimitsObject",
    "LimitsUpdateRequest",
    "RoleList",
    "RoleObject",
    "SafetyEventList",
    "SafetyEventObject",
    "SafetyPolicyObject",
    "SafetyPolicyUpdate",
    "TenantCreateRequest",
    "TenantList",
    "TenantObject",
]

Duration = int | str


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsObject(BaseModel):
    """Rate limits and token budgets; null leaves a limit to the gateway's default."""

    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="prompt + completion tokens per minute")
    concurrency: int | None = Field(None, ge=1, description="requests in flight at once")
    daily_tokens: int | None = Field(None, ge=1, description="tokens per UTC day (hard stop)")
    monthly_tokens: int | None = Field(None, ge=1, description="tokens per UTC month")

    @classmethod
    def of(cls, limits: Limits) -> LimitsObject:
        return cls(**asdict(limits))

    def to_limits(self) -> Limits:
        return Limits(**self.model_dump())


class TenantCreateRequest(_Request):
    name: str = Field(max_length=64, description="a-z, 0-9, '-' and '_'")
    limits: LimitsObject = Field(default_factory=LimitsObject)


class LimitsUpdateRequest(_Request):
    limits: LimitsObject = Field(description="replaces every limit; null means the default")


class KeyCreateRequest(_Request):
    tenant: str | None = Field(None, description="default: the caller's own tenant")
    role: Role = "user"
    endpoints: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="endpoints the key may call: models, chat, completions, embeddings, "
        "metrics, or * (none unless given)",
    )
    models: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="models the key may use, or * (none unless given)",
    )
    name: str | None = Field(None, max_length=128)
    expires_in: Duration | None = Field(None, description="seconds, or like 30d, 12h, 15m")
    limits: LimitsObject = Field(default_factory=LimitsObject)


class KeyRotateRequest(_Request):
    grace_period: Duration = Field(
        0, description="how long the old secret keeps working: seconds, or like 1h, 7d"
    )


class TenantObject(BaseModel):
    object: Literal["tenant"] = "tenant"
    id: str
    name: str
    created_at: int
    limits: LimitsObject

    @classmethod
    def of(cls, tenant: Tenant) -> TenantObject:
        return cls(
            id=tenant.id,
            name=tenant.name,
            created_at=int(tenant.created_at),
            limits=LimitsObject.of(tenant.limits),
        )


class TenantList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TenantObject]


class ApiKeyObject(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    tenant: str
    role: Role
    endpoints: list[str]
    models: list[str]
    name: str | None
    prefix: str = Field(description="the start of the secret, to tell keys apart")
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    created_by: str | None
    limits: LimitsObject

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyObject:
        def when(t: float | None) -> int | None:
            return None if t is None else int(t)

        return cls(
            id=key.id,
            tenant=key.tenant,
            role=key.role,
            endpoints=list(key.endpoints),
            models=list(key.models),
            name=key.name,
            prefix=key.prefix,
            created_at=int(key.created_at),
            expires_at=when(key.expires_at),
            revoked_at=when(key.revoked_at),
            last_used_at=when(key.last_used_at),
            created_by=key.created_by,
            limits=LimitsObject.of(key.limits),
        )


class ApiKeyCreated(ApiKeyObject):
    key: str = Field(description="the secret: shown only in this response")

    @classmethod
    def issued(cls, key: ApiKey, secret: str) -> ApiKeyCreated:
        return cls(**ApiKeyObject.of(key).model_dump(), key=secret)


class ApiKeyRotated(ApiKeyCreated):
    previous_key_expires_at: int = Field(description="when the replaced secret stops working")

    @classmethod
    def rotated(cls, key: ApiKey, secret: str, previous_until: float) -> ApiKeyRotated:
        created = ApiKeyObject.of(key).model_dump()
        return cls(**created, key=secret, previous_key_expires_at=int(previous_until))


class ApiKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ApiKeyObject]


class RoleObject(BaseModel):
    object: Literal["role"] = "role"
    name: Role
    description: str


class RoleList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RoleObject]


class _InputActions(_Request):
    pii: Action | None = None
    secrets: Action | None = None
    injection: Action | None = None
    harmful: Action | None = None
    toxicity: Action | None = None
    deny: Action | None = None


class _OutputActions(_Request):
    pii: OutputAction | None = None
    secrets: OutputAction | None = None
    harmful: OutputAction | None = None
    toxicity: OutputAction | None = None
    deny: OutputAction | None = None


class SafetyPolicyUpdate(_Request):
    """A tenant's override: what is set here replaces the default; the rest follows it.
    An empty object returns the tenant to the default policy."""

    input: _InputActions | None = Field(
        None, description="per detector: allow, flag, redact (pii, secrets, deny) or block"
    )
    output: _OutputActions | None = Field(None, description="per detector: allow, flag or block")
    restore: bool | None = Field(None, description="put redacted values back into the answer")
    deny_terms: list[str] | None = Field(None, max_length=500)
    deny_patterns: list[str] | None = Field(None, max_length=50)

    def override(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SafetyPolicyObject(BaseModel):
    object: Literal["safety_policy"] = "safety_policy"
    tenant: str
    override: dict[str, Any] | None = Field(description="what the tenant changes; null: nothing")
    effective: dict[str, Any] = Field(description="the policy its requests get")

    @classmethod
    def of(cls, tenant: Tenant, effective: SafetyPolicy) -> SafetyPolicyObject:
        override = dict(tenant.safety_policy) if tenant.safety_policy else None
        return cls(tenant=tenant.name, override=override, effective=effective.model_dump())


class SafetyEventObject(BaseModel):
    object: Literal["safety_event"] = "safety_event"
    id: int
    created_at: float
    tenant: str
    key_id: str | None
    request_id: str
    route: str
    stage: str = Field(description="input, output or moderation")
    detector: str
    category: str
    score: float
    action: str = Field(description="flag, redact, block, or error (the detector failed)")

    @classmethod
    def of(cls, event: SafetyEvent) -> SafetyEventObject:
        fields = asdict(event)
        fields["id"] = event.id or 0
        return cls(**fields)


class SafetyEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[SafetyEventObject]
    has_more: bool
