"""The counter store: where limits keep their state. A small protocol with two
implementations: ``MemoryCounters`` (one gateway process) and ``RedisCounters`` (shared by
every gateway replica, each operation one atomic script).

Rates use GCRA (the generic cell rate algorithm): a limit of N per period admits a burst
of exactly N and then one every period/N; its whole state is one timestamp per key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CounterStore", "CounterStoreError", "MemoryCounters", "Verdict", "gcra"]

# Floating-point slack, in seconds, so that the Nth request of a burst of N is admitted.
EPSILON = 1e-6


class CounterStoreError(Exception):
    """The counter store cannot be reached or failed."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int  # what could still be taken right now
    reset_s: float  # until the limit is entirely free again
    retry_after_s: float  # until this request would fit (0 when allowed)


class CounterStore(Protocol):
    async def take(
        self, key: str, limit: int, period_s: float, cost: int = 1, force: bool = False
    ) -> Verdict:
        """Take ``cost`` from a rate of ``limit`` per ``period_s``. With ``force`` it is
        taken whatever the state (settling an estimate; ``cost`` may be negative)."""

    async def acquire(self, key: str, limit: int, ttl_s: float) -> bool:
        """One more of at most ``limit`` held at once (a concurrency slot)."""

    async def add(self, key: str, delta: int, ttl_s: float) -> int:
        """Add to a counter that expires ``ttl_s`` after its last change; the new value."""

    async def get(self, key: str) -> int: ...

    async def close(self) -> None: ...


def gcra(
    tat: float | None, now: float, limit: int, period_s: float, cost: int, force: bool
) -> tuple[Verdict, float]:
    """One GCRA step: the verdict and the new theoretical arrival time (TAT)."""
    interval = period_s / limit
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval * cost
    allow_at = new_tat - period_s
    if allow_at - now > EPSILON and not force:
        remaining = max(0, math.floor((now - (tat - period_s)) / interval + EPSILON))
        return Verdict(False, remaining, tat - now, allow_at - now), tat
    new_tat = max(new_tat, now)
    remaining = max(0, math.floor((now - allow_at) / interval + EPSILON))
    return Verdict(True, remaining, new_tat - now, 0.0), new_tat


class MemoryCounters:
    """Counters in this process: exact for one gateway process, and only for one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires at)
        self._sweep_at = 0.0

    async def take(
        self, key: str, limit: int, period_s: float, cost: int = 1, force: bool = False
    ) -> Verdict:
        now = self._clock()
        self._sweep(now)
        verdict, tat = gcra(self._live(key, now), now, limit, period_s, cost, force)
        self._values[key] = (tat, tat)
        return verdict

    async def acquire(self, key: str, limit: int, ttl_s: float) -> bool:
        now = self._clock()
        held = max(0.0, self._live(key, now) or 0)  # a release after expiry may leave -1
        if held >= limit:
            return False
        self._values[key] = (held + 1, now + ttl_s)
        return True

    async def add(self, key: str, delta: int, ttl_s: float) -> int:
        now = self._clock()
        value = (self._live(key, now) or 0) + delta
        self._values[key] = (value, now + ttl_s)
        return int(value)

    async def get(self, key: str) -> int:
        return int(self._live(key, self._clock()) or 0)

    async def close(self) -> None:
        self._values.clear()

    def _live(self, key: str, now: float) -> float | None:
        entry = self._values.get(key)
        if entry is None or entry[1] < now:
            return None
        return entry[0]

    def _sweep(self, now: float) -> None:
        # Expired entries are dropped now and then, so idle keys do not pile up.
        if now < self._sweep_at:
            return
        self._sweep_at = now + 60
        for key in [k for k, (_, expires) in self._values.items() if expires < now]:
            del self._values[key]
