"""``CounterStore`` on Redis. ``admit`` and ``adjust`` are one Lua script each, so they
are atomic across every gateway replica, and rates use the Redis server's clock."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from shardgate.limits.counters import Change, Check, CounterStoreError, Outcome, Verdict
from shardgate.limits.resp import RedisConnection, RedisReplyError

__all__ = ["RedisCounters"]

# Times in milliseconds. ARGV holds 4 values per check: kind (r, s, b), limit, span, cost.
# Everything is evaluated first and written only if every check passes. Returns
# {0, remaining_1, reset_1, ...} or {index, remaining, reset, retry} of the refused check.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out, writes = {0}, {}
for i = 1, #KEYS do
  local kind, limit = ARGV[4 * i - 3], tonumber(ARGV[4 * i - 2])
  local span, cost = tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  local value = tonumber(redis.call('GET', KEYS[i]))
  if kind == 'r' then
    local interval = span / limit
    local tat = value
    if tat == nil or tat < now then tat = now end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - span
    if allow_at - now > 0.001 then
      local left = math.max(0, math.floor((now - (tat - span)) / interval + 0.000001))
      return {i, left, tostring(tat - now), tostring(allow_at - now)}
    end
    writes[i] = {string.format('%.3f', new_tat), math.ceil(new_tat - now) + 1}
    out[#out + 1] = math.max(0, math.floor((now - allow_at) / interval + 0.000001))
    out[#out + 1] = tostring(new_tat - now)
  elseif kind == 's' then
    local held = math.max(0, value or 0)
    if held >= limit then return {i, 0, '0', '1000'} end
    writes[i] = {tostring(held + 1), math.ceil(span)}
    out[#out + 1] = limit - held - 1
    out[#out + 1] = '0'
  else
    local used = value or 0
    if used >= limit then return {i, 0, '0', '0'} end
    out[#out + 1] = limit - used
    out[#out + 1] = '0'
  end
end
for i, write in pairs(writes) do
  redis.call('SET', KEYS[i], write[1], 'PX', write[2])
end
return out
"""

# ARGV holds 4 values per change: kind (r, c), delta, limit, span.
_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i = 1, #KEYS do
  local kind, delta = ARGV[4 * i - 3], tonumber(ARGV[4 * i - 2])
  local limit, span = tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if tat == nil or tat < now then tat = now end
    local new_tat = math.max(now, tat + span / limit * delta)
    redis.call('SET', KEYS[i], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
  else
    redis.call('INCRBY', KEYS[i], delta)
    redis.call('PEXPIRE', KEYS[i], math.ceil(span))
  end
end
return 0
"""

_KINDS = {"rate": "r", "slot": "s", "budget": "b", "count": "c"}


class RedisCounters:
    def __init__(self, url: str, namespace: str = "shardgate", timeout_s: float = 0.5) -> None:
        self._redis = RedisConnection(url, timeout_s)
        self._prefix = namespace + ":"
        self._admit = (_ADMIT, hashlib.sha1(_ADMIT.encode()).hexdigest())
        self._adjust = (_ADJUST, hashlib.sha1(_ADJUST.encode()).hexdigest())

    async def admit(self, checks: Sequence[Check]) -> Outcome:
        if not checks:
            return Outcome(None, ())
        args: list[Any] = []
        for c in checks:
            args += [_KINDS[c.kind], c.limit, c.span_s * 1000, c.cost]
        reply = await self._run(self._admit, [c.key for c in checks], args)
        if int(reply[0]):
            _, remaining, reset_ms, retry_ms = reply
            verdict = Verdict(False, int(remaining), float(reset_ms) / 1000, float(retry_ms) / 1000)
            return Outcome(int(reply[0]) - 1, (verdict,))
        pairs = zip(reply[1::2], reply[2::2], strict=True)
        return Outcome(None, tuple(Verdict(True, int(r), float(s) / 1000) for r, s in pairs))

    async def adjust(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        args: list[Any] = []
        for c in changes:
            args += [_KINDS[c.kind], c.delta, c.limit, max(1, math.ceil(c.span_s * 1000))]
        await self._run(self._adjust, [c.key for c in changes], args)

    async def close(self) -> None:
        await self._redis.close()

    async def _run(self, script: tuple[str, str], keys: list[str], args: list[Any]) -> Any:
        source, sha = script
        names = [self._prefix + k for k in keys]
        try:
            try:
                return await self._redis.call("EVALSHA", sha, len(names), *names, *args)
            except RedisReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                # The first call on this server (or after SCRIPT FLUSH) sends the script.
                return await self._redis.call("EVAL", source, len(names), *names, *args)
        except (OSError, TimeoutError, RedisReplyError) as exc:
            raise CounterStoreError(f"redis: {exc}") from exc
