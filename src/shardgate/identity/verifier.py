"""API key to principal, with a cache in front of the store.

A verified key is trusted for at most ``cache_ttl_s`` before the store is asked again, so a
key revoked through any gateway or the CLI stops working everywhere within that bound (and
at once on the gateway that revoked it). Expiry is exact: a cached entry never outlives
its key or a rotated secret's grace period. Unknown keys are never cached, so a new key
works at once. Last-used times are collected here and written in batches.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shardgate.errors import AuthenticationFailed, ServiceUnavailable
from shardgate.periodic import Periodic
from shardgate.store import KeyStore, Principal
from shardgate.store.keys import MAX_KEY_LENGTH, key_digest

__all__ = ["KeyVerifier"]

log = logging.getLogger(__name__)

MAX_CACHED = 100_000
# One message for every failure: nothing in it says whether the key exists.
INVALID = "the API key is not valid"


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    valid_until: float


class KeyVerifier:
    def __init__(
        self,
        store: KeyStore,
        cache_ttl_s: float = 5.0,
        flush_interval_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._last_used: dict[str, float] = {}
        self._flusher = Periodic(self.flush, flush_interval_s)

    async def verify(self, secret: str) -> Principal:
        """The key's principal; ``AuthenticationFailed`` (with an internal ``reason`` for
        metrics, never shown to the caller) if it is unknown, revoked or expired."""
        if len(secret) > MAX_KEY_LENGTH:
            raise AuthenticationFailed(INVALID, reason="malformed")
        digest = key_digest(secret)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now < cached.valid_until:
            self._last_used[cached.principal.key_id] = now
            return cached.principal
        principal, valid_until = await self._lookup(digest, now)
        if self._ttl > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = _Cached(principal, min(valid_until, now + self._ttl))
        self._last_used[principal.key_id] = now
        return principal

    async def _lookup(self, digest: str, now: float) -> tuple[Principal, float]:
        self._cache.pop(digest, None)
        try:
            match = await self._store.find_secret(digest)
        except Exception as exc:  # fail closed, and say it is the store, not the key
            log.error("the key store is unavailable: %s", exc.__class__.__name__)
            raise ServiceUnavailable(
                "cannot check the API key now: the key store is unavailable",
                code="store_unavailable",
            ) from None
        if match is None or not hmac.compare_digest(match.digest, digest):
            raise AuthenticationFailed(INVALID, reason="unknown")
        key = match.key
        if key.revoked_at is not None:
            raise AuthenticationFailed(INVALID, reason="revoked")
        ends = [t for t in (key.expires_at, match.expires_at) if t is not None]
        valid_until = min(ends, default=float("inf"))
        if now >= valid_until:
            raise AuthenticationFailed(INVALID, reason="expired")
        return Principal.of(key, match.tenant_limits), valid_until

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache (after it was revoked or rotated here)."""
        for digest in [d for d, c in self._cache.items() if c.principal.key_id == key_id]:
            del self._cache[digest]

    async def flush(self) -> None:
        """Write the collected last-used times."""
        batch, self._last_used = self._last_used, {}
        try:
            await self._store.touch_keys(batch)
        except Exception:  # the store being away must not take authentication down
            log.warning("could not record when %d keys were last used", len(batch), exc_info=True)
            for key_id, used in batch.items():
                self._last_used.setdefault(key_id, used)

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
