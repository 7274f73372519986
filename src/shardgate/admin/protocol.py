"""Wire models of the admin API (``/admin/v1``). Times are Unix seconds, as in OpenAI's API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shardgate.store import ApiKey, Limits, Role, Tenant

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
