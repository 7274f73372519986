"""``Store`` on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Core, not the ORM: the ORM costs 4-8x per query here, and the key lookup is on the
authentication path.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shardgate.store.base import Conflict
from shardgate.store.records import (
    NO_LIMITS,
    ApiKey,
    Limits,
    NewKey,
    SafetyEvent,
    SecretMatch,
    Tenant,
)
from shardgate.store.schema import (
    LIMIT_COLUMNS,
    api_key_secrets,
    api_keys,
    safety_events,
    tenants,
)

__all__ = ["SqlStore"]

_TENANT_LIMITS = tuple(tenants.c[name].label("tenant_" + name) for name in LIMIT_COLUMNS)
_KEY_COLUMNS = (*api_keys.c, tenants.c.name.label("tenant_name"), *_TENANT_LIMITS)
_KEYS = sa.select(*_KEY_COLUMNS).join(tenants, tenants.c.id == api_keys.c.tenant_id)
_FIND_SECRET = (
    sa.select(api_key_secrets.c.digest, api_key_secrets.c.expires_at.label("secret_expires_at"))
    .add_columns(*_KEY_COLUMNS)
    .join(api_keys, api_keys.c.id == api_key_secrets.c.key_id)
    .join(tenants, tenants.c.id == api_keys.c.tenant_id)
    # Built once with a bound parameter: SQLAlchemy then reuses its compiled form.
    .where(api_key_secrets.c.digest == sa.bindparam("digest"))
)


def _new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(12)}"


class SqlStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        await self.engine.dispose()

    # tenants

    async def create_tenant(self, name: str, limits: Limits = NO_LIMITS) -> Tenant:
        tenant = Tenant(_new_id("ten"), name, time.time(), limits)
        values = {"id": tenant.id, "name": name, "created_at": tenant.created_at}
        try:
            async with self.engine.begin() as conn:
                await conn.execute(tenants.insert().values(**values, **asdict(limits)))
        except IntegrityError:
            raise Conflict(f"a tenant named '{name}' already exists") from None
        return tenant

    async def get_tenant(self, name: str) -> Tenant | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(tenants.select().where(tenants.c.name == name))).first()
        return None if row is None else _tenant(row._mapping)

    async def list_tenants(self) -> list[Tenant]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(tenants.select().order_by(tenants.c.created_at))
        return [_tenant(r._mapping) for r in rows]

    async def set_tenant_limits(self, name: str, limits: Limits) -> Tenant | None:
        async with self.engine.begin() as conn:
            await conn.execute(
                tenants.update().where(tenants.c.name == name).values(**asdict(limits))
            )
        return await self.get_tenant(name)

    async def set_tenant_safety_policy(
        self, name: str, policy: Mapping[str, Any] | None
    ) -> Tenant | None:
        value = dict(policy) if policy else None
        async with self.engine.begin() as conn:
            await conn.execute(
                tenants.update().where(tenants.c.name == name).values(safety_policy=value)
            )
        return await self.get_tenant(name)

    # safety events

    async def add_safety_events(self, events: Sequence[SafetyEvent]) -> None:
        if not events:
            return
        rows = [{k: v for k, v in asdict(e).items() if k != "id"} for e in events]
        async with self.engine.begin() as conn:
            await conn.execute(safety_events.insert(), rows)

    async def list_safety_events(
        self,
        tenant: str | None = None,
        since: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[SafetyEvent]:
        query = safety_events.select().order_by(safety_events.c.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(safety_events.c.tenant == tenant)
        if since is not None:
            query = query.where(safety_events.c.created_at >= since)
        if before_id is not None:
            query = query.where(safety_events.c.id < before_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
        return [SafetyEvent(**r._mapping) for r in rows]

    # keys

    async def create_key(self, spec: NewKey, digest: str, prefix: str) -> ApiKey:
        try:
            return await self._insert_key(spec, digest, prefix)
        except IntegrityError:  # two processes bootstrapping the same key, say
            raise Conflict("a key with this secret already exists") from None

    async def _insert_key(self, spec: NewKey, digest: str, prefix: str) -> ApiKey:
        key_id, now = _new_id("key"), time.time()
        async with self.engine.begin() as conn:
            tenant_id = await conn.scalar(
                sa.select(tenants.c.id).where(tenants.c.name == spec.tenant)
            )
            if tenant_id is None:
                raise LookupError(f"no tenant named '{spec.tenant}'")
            await conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    tenant_id=tenant_id,
                    name=spec.name,
                    role=spec.role,
                    endpoints=list(spec.endpoints),
                    models=list(spec.models),
                    prefix=prefix,
                    created_at=now,
                    expires_at=spec.expires_at,
                    created_by=spec.created_by,
                    **asdict(spec.limits),
                )
            )
            await conn.execute(
                api_key_secrets.insert().values(digest=digest, key_id=key_id, created_at=now)
            )
            return await self._key(conn, key_id)  # type: ignore[return-value]

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self.engine.connect() as conn:
            return await self._key(conn, key_id)

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        query = _KEYS.order_by(api_keys.c.created_at)
        if tenant is not None:
            query = query.where(tenants.c.name == tenant)
        async with self.engine.connect() as conn:
            return [_api_key(r._mapping) for r in await conn.execute(query)]

    async def set_key_limits(self, key_id: str, limits: Limits) -> ApiKey | None:
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(**asdict(limits))
            )
            return await self._key(conn, key_id)

    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return await self._key(conn, key_id)

    async def rotate_key(
        self, key_id: str, digest: str, prefix: str, now: float, grace_until: float
    ) -> ApiKey | None:
        async with self.engine.begin() as conn:
            key = await self._key(conn, key_id)
            if key is None:
                return None
            secrets_of_key = api_key_secrets.c.key_id == key_id
            # Secrets whose grace has ended are dropped; the current one gets the grace period.
            await conn.execute(
                api_key_secrets.delete().where(secrets_of_key, api_key_secrets.c.expires_at <= now)
            )
            await conn.execute(
                api_key_secrets.update()
                .where(secrets_of_key, api_key_secrets.c.expires_at.is_(None))
                .values(expires_at=grace_until)
            )
            await conn.execute(
                api_key_secrets.insert().values(digest=digest, key_id=key_id, created_at=now)
            )
            await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(prefix=prefix)
            )
            return await self._key(conn, key_id)

    async def find_secret(self, digest: str) -> SecretMatch | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_FIND_SECRET, {"digest": digest})).first()
        if row is None:
            return None
        row_map = row._mapping
        tenant_limits = Limits(*(row_map["tenant_" + name] for name in LIMIT_COLUMNS))
        return SecretMatch(row.digest, row.secret_expires_at, _api_key(row_map), tenant_limits)

    async def touch_keys(self, last_used: Mapping[str, float]) -> None:
        if not last_used:
            return
        statement = (
            api_keys.update()
            .where(api_keys.c.id == sa.bindparam("key"))
            .values(last_used_at=sa.bindparam("used"))
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement, [{"key": k, "used": t} for k, t in last_used.items()])

    async def has_admin_key(self) -> bool:
        query = sa.select(api_keys.c.id).where(
            api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def _key(self, conn: AsyncConnection, key_id: str) -> ApiKey | None:
        row = (await conn.execute(_KEYS.where(api_keys.c.id == key_id))).first()
        return None if row is None else _api_key(row._mapping)


def _api_key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant_name"],
        role=row["role"],
        endpoints=tuple(row["endpoints"]),
        models=tuple(row["models"]),
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        created_by=row["created_by"],
        limits=_limits(row),
    )


def _tenant(row: RowMapping) -> Tenant:
    return Tenant(
        row["id"], row["name"], row["created_at"], _limits(row), row["safety_policy"] or None
    )


def _limits(row: RowMapping) -> Limits:
    return Limits(*(row[name] for name in LIMIT_COLUMNS))
