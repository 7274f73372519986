"""The counter store: where limits keep their state. A small protocol with two
implementations: ``MemoryCounters`` (one gateway process) and ``RedisCounters`` (shared by
every gateway replica).

A request's limits are checked in one call, ``admit``, all or nothing: either every check
passes and all of them are counted, or nothing is. What a response really used is settled
in one more call, ``adjust``. On Redis each of the two is one Lua script, so a request
costs at most two round trips whatever the number of limits.

Rates use GCRA (the generic cell rate algorithm): a limit of N per period admits a burst
of exactly N and then one every period/N; its whole state is one timestamp per key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Change",
    "Check",
    "CounterStore",
    "CounterStoreError",
    "MemoryCounters",
    "Outcome",
    "Verdict",
    "gcra",
]

# Floating-point slack, in seconds, so that the Nth request of a burst of N is admitted.
EPSILON = 1e-6


class CounterStoreError(Exception):
    """The counter store cannot be reached or failed."""


@dataclass(frozen=True, slots=True)
class Check:
    """One limit to pass. ``rate``: ``limit`` per ``span_s`` seconds, taking ``cost``;
    ``slot``: at most ``limit`` held at once (held for at most ``span_s``); ``budget``:
    refused once the counter has reached ``limit``."""

    kind: Literal["rate", "slot", "budget"]
    key: str
    limit: int
    span_s: float = 0.0
    cost: int = 1


@dataclass(frozen=True, slots=True)
class Change:
    """A settlement. ``rate``: take ``delta`` (may be negative) whatever the state;
    ``count``: add ``delta`` to a counter that lives ``span_s`` after its last change."""

    kind: Literal["rate", "count"]
    key: str
    delta: int
    limit: int = 1
    span_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int  # what could still be taken now
    reset_s: float  # until the limit is entirely free again
    retry_after_s: float = 0.0  # until the refused request would fit


@dataclass(frozen=True, slots=True)
class Outcome:
    """``refused`` is the index of the check that failed (None: all passed and were
    counted); ``verdicts`` has one entry per check, or only the refused check's."""

    refused: int | None
    verdicts: tuple[Verdict, ...]


class CounterStore(Protocol):
    async def admit(self, checks: Sequence[Check]) -> Outcome: ...

    async def adjust(self, changes: Sequence[Change]) -> None: ...

    async def close(self) -> None: ...


def gcra(
    tat: float | None, now: float, limit: int, period_s: float, cost: int, force: bool = False
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
    return Verdict(True, remaining, new_tat - now), new_tat


class MemoryCounters:
    """Counters in this process: exact for one gateway process, and only for one. Each
    call runs without awaiting, so it is atomic within the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires at)
        self._sweep_at = 0.0

    async def admit(self, checks: Sequence[Check]) -> Outcome:
        now = self._clock()
        self._sweep(now)
        verdicts: list[Verdict] = []
        writes: list[tuple[str, float, float]] = []
        for index, check in enumerate(checks):
            value = self._live(check.key, now)
            if check.kind == "rate":
                verdict, tat = gcra(value, now, check.limit, check.span_s, check.cost)
                writes.append((check.key, tat, tat))
            elif check.kind == "slot":
                held = max(0.0, value or 0.0)  # a release after expiry may leave -1
                verdict = Verdict(held < check.limit, int(check.limit - held - 1), 0.0, 1.0)
                writes.append((check.key, held + 1, now + check.span_s))
            else:
                used = value or 0.0
                verdict = Verdict(used < check.limit, int(check.limit - used), 0.0)
            if not verdict.allowed:
                return Outcome(index, (verdict,))
            verdicts.append(verdict)
        for key, stored, expires in writes:
            self._values[key] = (stored, expires)
        return Outcome(None, tuple(verdicts))

    async def adjust(self, changes: Sequence[Change]) -> None:
        now = self._clock()
        for change in changes:
            value = self._live(change.key, now)
            if change.kind == "rate":
                _, tat = gcra(value, now, change.limit, change.span_s, change.delta, force=True)
                self._values[change.key] = (tat, tat)
            else:
                self._values[change.key] = ((value or 0.0) + change.delta, now + change.span_s)

    async def close(self) -> None:
        self._values.clear()

    def value(self, key: str) -> float:
        """A counter's current value (for tests and tools)."""
        return self._live(key, self._clock()) or 0.0

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
