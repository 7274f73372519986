"""``CounterStore`` on Redis: each operation is one Lua script, so it is atomic across
every gateway replica, and rates use the Redis server's clock, not the gateways'."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from shardgate.limits.counters import CounterStoreError, Verdict

__all__ = ["RedisCounters"]

# GCRA, as counters.gcra, in milliseconds. Returns {allowed, remaining, reset_ms, retry_ms}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local limit, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local force = ARGV[4] == '1'
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - period
if allow_at - now > 0.001 and not force then
  local remaining = math.max(0, math.floor((now - (tat - period)) / interval + 0.000001))
  return {0, remaining, tostring(tat - now), tostring(allow_at - now)}
end
if new_tat < now then new_tat = now end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
local remaining = math.max(0, math.floor((now - allow_at) / interval + 0.000001))
return {1, remaining, tostring(new_tat - now), '0'}
"""

_ACQUIRE = """
local held = math.max(0, tonumber(redis.call('GET', KEYS[1]) or '0'))
if held >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], held + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_ADD = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return value
"""


class RedisCounters:
    def __init__(self, url: str, namespace: str = "shardgate", timeout_s: float = 0.5) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = namespace + ":"
        self._take = self._redis.register_script(_TAKE)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._add = self._redis.register_script(_ADD)

    async def take(
        self, key: str, limit: int, period_s: float, cost: int = 1, force: bool = False
    ) -> Verdict:
        args = [limit, period_s * 1000, cost, "1" if force else "0"]
        allowed, remaining, reset_ms, retry_ms = await self._run(self._take, key, args)
        return Verdict(
            bool(allowed), int(remaining), float(reset_ms) / 1000, float(retry_ms) / 1000
        )

    async def acquire(self, key: str, limit: int, ttl_s: float) -> bool:
        return bool(await self._run(self._acquire, key, [limit, _ms(ttl_s)]))

    async def add(self, key: str, delta: int, ttl_s: float) -> int:
        return int(await self._run(self._add, key, [delta, _ms(ttl_s)]))

    async def get(self, key: str) -> int:
        try:
            value = await self._redis.get(self._prefix + key)
        except RedisError as exc:
            raise CounterStoreError(f"redis: {exc}") from exc
        return int(value or 0)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, script: Any, key: str, args: list[Any]) -> Any:
        try:
            return await script(keys=[self._prefix + key], args=args)
        except RedisError as exc:
            raise CounterStoreError(f"redis: {exc}") from exc


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
