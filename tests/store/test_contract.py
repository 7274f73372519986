"""The store contract: every backend (SQLite file, SQLite in memory, PostgreSQL) must pass."""

from __future__ import annotations

import asyncio
import time

import pytest

from shardgate.store import (
    Conflict,
    Limits,
    NewKey,
    SafetyEvent,
    SqlStore,
    display_prefix,
    generate_key,
    key_digest,
)


async def new_key(store: SqlStore, tenant: str = "acme", **fields: object) -> tuple[str, str]:
    """(key id, secret) of a fresh key."""
    secret = generate_key()
    spec = NewKey(tenant=tenant, role=fields.pop("role", "user"), **fields)  # type: ignore[arg-type]
    key = await store.create_key(spec, key_digest(secret), display_prefix(secret))
    return key.id, secret


async def test_tenants_are_created_listed_and_unique(store: SqlStore) -> None:
    acme = await store.create_tenant("acme")
    await store.create_tenant("globex")
    assert await store.get_tenant("acme") == acme
    assert await store.get_tenant("nobody") is None
    assert [t.name for t in await store.list_tenants()] == ["acme", "globex"]
    with pytest.raises(Conflict):
        await store.create_tenant("acme")


async def test_a_key_is_stored_as_hash_and_prefix_only(store: SqlStore) -> None:
    await store.create_tenant("acme")
    spec = NewKey(
        tenant="acme",
        role="user",
        endpoints=("chat",),
        models=("m1", "m2"),
        name="ci",
        expires_at=time.time() + 60,
        created_by="key_admin",
    )
    secret = generate_key()
    key = await store.create_key(spec, key_digest(secret), display_prefix(secret))
    assert (key.tenant, key.role, key.endpoints, key.models, key.name) == (
        "acme",
        "user",
        ("chat",),
        ("m1", "m2"),
        "ci",
    )
    assert key.prefix == secret[:10] and key.created_by == "key_admin"
    assert key.revoked_at is None and key.last_used_at is None
    assert await store.get_key(key.id) == key
    match = await store.find_secret(key_digest(secret))
    assert match is not None and match.key == key and match.expires_at is None
    assert await store.find_secret(key_digest(secret + "x")) is None


async def test_a_key_needs_an_existing_tenant_and_a_new_secret(store: SqlStore) -> None:
    with pytest.raises(LookupError):
        await new_key(store, tenant="nobody")
    await store.create_tenant("acme")
    await store.create_key(NewKey("acme", "user"), "d" * 64, "sk-sg-dddd")
    with pytest.raises(Conflict):
        await store.create_key(NewKey("acme", "admin"), "d" * 64, "sk-sg-dddd")
    assert [k.role for k in await store.list_keys("acme")] == ["user"]


async def test_keys_are_listed_per_tenant(store: SqlStore) -> None:
    for tenant in ("acme", "globex"):
        await store.create_tenant(tenant)
    a1, _ = await new_key(store, "acme")
    g1, _ = await new_key(store, "globex")
    a2, _ = await new_key(store, "acme")
    assert [k.id for k in await store.list_keys("acme")] == [a1, a2]
    assert [k.id for k in await store.list_keys("globex")] == [g1]
    assert {k.id for k in await store.list_keys()} == {a1, a2, g1}
    assert await store.list_keys("nobody") == []


async def test_revocation_is_recorded_once(store: SqlStore) -> None:
    await store.create_tenant("acme")
    key_id, secret = await new_key(store)
    revoked = await store.revoke_key(key_id, now=1000.0)
    assert revoked is not None and revoked.revoked_at == 1000.0
    again = await store.revoke_key(key_id, now=2000.0)
    assert again is not None and again.revoked_at == 1000.0
    match = await store.find_secret(key_digest(secret))
    assert match is not None and not match.key.is_active(time.time())
    assert await store.revoke_key("key_missing", now=1.0) is None


async def test_rotation_keeps_the_old_secret_for_the_grace_period(store: SqlStore) -> None:
    await store.create_tenant("acme")
    key_id, old = await new_key(store)
    new = generate_key()
    now = time.time()
    rotated = await store.rotate_key(key_id, key_digest(new), display_prefix(new), now, now + 60)
    assert rotated is not None and rotated.prefix == display_prefix(new)
    old_match = await store.find_secret(key_digest(old))
    new_match = await store.find_secret(key_digest(new))
    assert old_match is not None and old_match.expires_at == pytest.approx(now + 60)
    assert new_match is not None and new_match.expires_at is None
    assert old_match.key.id == new_match.key.id == key_id

    # A second rotation drops secrets whose grace is over and keeps the rest.
    newest = generate_key()
    later = now + 120
    await store.rotate_key(key_id, key_digest(newest), display_prefix(newest), later, later + 5)
    assert await store.find_secret(key_digest(old)) is None
    still = await store.find_secret(key_digest(new))
    assert still is not None and still.expires_at == pytest.approx(later + 5)
    assert await store.rotate_key("key_missing", "0" * 64, "sk-sg-0000", now, now) is None


async def test_last_used_is_written_in_batches(store: SqlStore) -> None:
    await store.create_tenant("acme")
    k1, _ = await new_key(store)
    k2, _ = await new_key(store)
    await store.touch_keys({})
    await store.touch_keys({k1: 100.0, k2: 200.0, "key_gone": 300.0})
    assert [(k.id, k.last_used_at) for k in await store.list_keys("acme")] == [
        (k1, 100.0),
        (k2, 200.0),
    ]


async def test_has_admin_key_ignores_revoked_keys(store: SqlStore) -> None:
    await store.create_tenant("platform")
    assert not await store.has_admin_key()
    key_id, _ = await new_key(store, "platform", role="admin")
    assert await store.has_admin_key()
    await store.revoke_key(key_id, now=time.time())
    assert not await store.has_admin_key()


async def test_concurrent_writers_do_not_lose_keys(store: SqlStore) -> None:
    await store.create_tenant("acme")
    created = await asyncio.gather(*(new_key(store) for _ in range(20)))
    assert {k.id for k in await store.list_keys("acme")} == {key_id for key_id, _ in created}


async def test_limits_are_stored_on_tenants_and_keys(store: SqlStore) -> None:
    acme = await store.create_tenant("acme", Limits(rpm=600, monthly_tokens=10**9))
    assert acme.limits == Limits(rpm=600, monthly_tokens=10**9)
    assert await store.get_tenant("acme") == acme
    spec = NewKey("acme", "user", limits=Limits(rpm=60, tpm=1000, concurrency=2))
    key = await store.create_key(spec, "e" * 64, "sk-sg-eeee")
    assert key.limits == Limits(rpm=60, tpm=1000, concurrency=2)
    match = await store.find_secret("e" * 64)
    assert match is not None and match.tenant_limits == acme.limits
    assert match.key.limits == key.limits
    changed = await store.set_key_limits(key.id, Limits(daily_tokens=5000))
    assert changed is not None and changed.limits == Limits(daily_tokens=5000)
    tenant = await store.set_tenant_limits("acme", Limits(tpm=90_000))
    assert tenant is not None and tenant.limits == Limits(tpm=90_000)
    assert await store.set_tenant_limits("nobody", Limits()) is None
    assert await store.set_key_limits("key_missing", Limits()) is None


async def test_a_tenant_safety_policy_override_is_stored_and_cleared(store: SqlStore) -> None:
    await store.create_tenant("acme")
    assert (await store.get_tenant("acme")).safety_policy is None  # type: ignore[union-attr]
    override = {"input": {"pii": "block"}, "deny_terms": ["project zeus"]}
    tenant = await store.set_tenant_safety_policy("acme", override)
    assert tenant is not None and tenant.safety_policy == override
    assert [t.safety_policy for t in await store.list_tenants()] == [override]
    cleared = await store.set_tenant_safety_policy("acme", None)
    assert cleared is not None and cleared.safety_policy is None
    assert await store.set_tenant_safety_policy("nobody", override) is None


async def test_safety_events_are_stored_and_listed_newest_first(store: SqlStore) -> None:
    def event(tenant: str, n: int) -> SafetyEvent:
        return SafetyEvent(
            1000.0 + n, tenant, "key_1", f"req{n}", "chat.completions", "input",
            "pii", "pii.email", 0.99, "redact",
        )  # fmt: skip

    await store.add_safety_events([event("acme", n) for n in range(5)])
    await store.add_safety_events([event("globex", 5)])
    await store.add_safety_events([])
    newest = await store.list_safety_events()
    assert [e.request_id for e in newest] == ["req5", "req4", "req3", "req2", "req1", "req0"]
    assert newest[0].id is not None and newest[0].tenant == "globex"
    assert newest[1] == SafetyEvent(**{**vars(event("acme", 4)), "id": newest[1].id})
    acme = await store.list_safety_events("acme", limit=2)
    assert [e.request_id for e in acme] == ["req4", "req3"]
    page = await store.list_safety_events("acme", before_id=acme[-1].id, limit=10)
    assert [e.request_id for e in page] == ["req2", "req1", "req0"]
    assert [e.request_id for e in await store.list_safety_events(since=1004.0)] == ["req5", "req4"]
