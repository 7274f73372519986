"""KeyVerifier: the cache's bounds (TTL, exact expiry, revocation), last-used batching."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from shardgate.admin.service import OPERATOR, AdminService
from shardgate.errors import AuthenticationFailed, ServiceUnavailable
from shardgate.identity import KeyVerifier
from shardgate.store import SecretMatch, SqlStore, connect, open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(SqlStore):
    """The real SQLite store, counting lookups."""

    lookups = 0
    touched: list[Mapping[str, float]]

    async def find_secret(self, digest: str) -> SecretMatch | None:
        self.lookups += 1
        return await super().find_secret(digest)

    async def touch_keys(self, last_used: Mapping[str, float]) -> None:
        self.touched.append(dict(last_used))
        await super().touch_keys(last_used)


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    base = await open_store("sqlite://")
    counting = CountingStore(base.engine)
    counting.touched = []
    yield counting
    await counting.close()


async def issue(
    store: SqlStore, clock: Clock, expires_in: int | None = None
) -> tuple[AdminService, str, str]:
    service = AdminService(store, clock=clock)
    if await store.get_tenant("acme") is None:
        await service.create_tenant(OPERATOR, "acme")
    issued = await service.create_key(
        OPERATOR,
        tenant="acme",
        role="user",
        endpoints=["chat"],
        models=["*"],
        expires_in=expires_in,
    )
    return service, issued.key.id, issued.secret


async def failure(verifier: KeyVerifier, secret: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier.verify(secret)
    assert caught.value.message == "the API key is not valid"  # the same for every reason
    return caught.value.reason


async def test_a_cached_key_skips_the_store_until_the_ttl_ends(store: CountingStore) -> None:
    clock = Clock()
    _, key_id, secret = await issue(store, clock)
    verifier = KeyVerifier(store, cache_ttl_s=5, clock=clock)
    principal = await verifier.verify(secret)
    assert (principal.key_id, principal.tenant, principal.role) == (key_id, "acme", "user")
    assert principal.may_call("chat") and not principal.may_call("embeddings")
    for _ in range(10):
        await verifier.verify(secret)
    assert store.lookups == 1
    clock.now += 5
    await verifier.verify(secret)
    assert store.lookups == 2


async def test_revocation_elsewhere_takes_effect_within_the_ttl(store: CountingStore) -> None:
    clock = Clock()
    service, key_id, secret = await issue(store, clock)
    verifier = KeyVerifier(store, cache_ttl_s=5, clock=clock)
    await verifier.verify(secret)
    await service.revoke_key(OPERATOR, key_id)  # another process: this cache is not told
    clock.now += 4.9
    await verifier.verify(secret)  # still inside the stated bound
    clock.now += 0.1
    assert await failure(verifier, secret) == "revoked"


async def test_forget_drops_a_key_at_once(store: CountingStore) -> None:
    clock = Clock()
    service, key_id, secret = await issue(store, clock)
    verifier = KeyVerifier(store, cache_ttl_s=60, clock=clock)
    await verifier.verify(secret)
    await service.revoke_key(OPERATOR, key_id)
    verifier.forget(key_id)
    assert await failure(verifier, secret) == "revoked"


async def test_expiry_is_exact_even_for_a_cached_key(store: CountingStore) -> None:
    clock = Clock()
    _, _, secret = await issue(store, clock, expires_in=3)
    verifier = KeyVerifier(store, cache_ttl_s=60, clock=clock)
    await verifier.verify(secret)
    clock.now += 2.99
    await verifier.verify(secret)
    clock.now += 0.01
    assert await failure(verifier, secret) == "expired"


async def test_rotation_grace_period_is_exact(store: CountingStore) -> None:
    clock = Clock()
    service, key_id, old = await issue(store, clock)
    verifier = KeyVerifier(store, cache_ttl_s=60, clock=clock)
    await verifier.verify(old)
    issued, old_until = await service.rotate_key(OPERATOR, key_id, "10s")
    assert old_until == clock.now + 10
    verifier.forget(key_id)  # as the gateway that rotated it does; others within the TTL
    clock.now += 9.9
    assert (await verifier.verify(old)).key_id == key_id
    assert (await verifier.verify(issued.secret)).key_id == key_id
    clock.now += 0.1
    assert await failure(verifier, old) == "expired"
    assert (await verifier.verify(issued.secret)).key_id == key_id


async def test_unknown_keys_are_not_cached(store: CountingStore) -> None:
    verifier = KeyVerifier(store, cache_ttl_s=60, clock=Clock())
    for _ in range(3):
        assert await failure(verifier, "sk-sg-unknown") == "unknown"
    assert store.lookups == 3
    assert await failure(verifier, "sk-sg-" + "x" * 300) == "malformed"
    assert store.lookups == 3  # refused before hashing or asking the store


async def test_last_used_is_written_in_one_batch(store: CountingStore) -> None:
    clock = Clock()
    _, k1, s1 = await issue(store, clock)
    _, k2, s2 = await issue(store, clock)
    verifier = KeyVerifier(store, cache_ttl_s=60, clock=clock)
    for secret in (s1, s2, s1):
        await verifier.verify(secret)
        clock.now += 1
    await verifier.flush()
    assert store.touched == [{k1: clock.now - 1, k2: clock.now - 2}]
    key = await store.get_key(k1)
    assert key is not None and key.last_used_at == clock.now - 1
    await verifier.flush()
    assert store.touched[-1] == {}


async def test_an_unreachable_store_fails_closed_with_503() -> None:
    # Nothing listens on port 1: every lookup fails to connect.
    unreachable = SqlStore(connect("postgresql://postgres@127.0.0.1:1/none"))
    verifier = KeyVerifier(unreachable, cache_ttl_s=5)
    with pytest.raises(ServiceUnavailable) as caught:
        await verifier.verify("sk-sg-some-key")
    assert caught.value.status_code == 503 and caught.value.code == "store_unavailable"
    await unreachable.close()
