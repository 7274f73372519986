"""The counter-store contract (GCRA rates, concurrency slots, counters) on both backends:
in-process with a fake clock, and the real Redis on its own clock (short periods)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from shardgate.limits import CounterStoreError, MemoryCounters, RedisCounters


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_of_exactly_the_limit_then_one_per_interval() -> None:
    clock = Clock()
    counters = MemoryCounters(clock)
    verdicts = [await counters.take("k", 10, 60.0) for _ in range(12)]
    assert [v.allowed for v in verdicts] == [True] * 10 + [False] * 2
    assert [v.remaining for v in verdicts[:10]] == list(range(9, -1, -1))
    assert verdicts[10].retry_after_s == pytest.approx(6.0)  # one every 60/10 s
    assert verdicts[9].reset_s == pytest.approx(60.0)
    clock.now += 5.9
    assert not (await counters.take("k", 10, 60.0)).allowed
    clock.now += 0.1
    assert (await counters.take("k", 10, 60.0)).allowed
    assert not (await counters.take("k", 10, 60.0)).allowed
    clock.now += 60
    assert (await counters.take("k", 10, 60.0)).remaining == 9  # full again


async def test_costs_refunds_and_forced_takes() -> None:
    clock = Clock()
    counters = MemoryCounters(clock)
    assert (await counters.take("t", 1000, 60.0, cost=700)).remaining == 300
    refused = await counters.take("t", 1000, 60.0, cost=400)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(6.0)
    await counters.take("t", 1000, 60.0, cost=-500, force=True)  # settled below the estimate
    assert (await counters.take("t", 1000, 60.0, cost=400)).remaining == 400
    forced = await counters.take("t", 1000, 60.0, cost=900, force=True)  # used more: charged
    assert forced.allowed and forced.remaining == 0
    assert not (await counters.take("t", 1000, 60.0, cost=1)).allowed
    assert not (await counters.take("big", 100, 60.0, cost=101)).allowed  # never fits


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[MemoryCounters | RedisCounters]:
    if request.param == "memory":
        store: MemoryCounters | RedisCounters = MemoryCounters()
    else:
        store = RedisCounters("redis://127.0.0.1:6379/0", f"test-{secrets.token_hex(4)}")
    yield store
    await store.close()


async def test_a_concurrent_burst_admits_exactly_the_limit(
    counters: MemoryCounters | RedisCounters,
) -> None:
    verdicts = await asyncio.gather(*(counters.take("burst", 25, 60.0) for _ in range(60)))
    assert sum(v.allowed for v in verdicts) == 25


async def test_rates_recover_on_their_schedule(counters: MemoryCounters | RedisCounters) -> None:
    assert all([(await counters.take("r", 4, 0.4)).allowed for _ in range(4)])
    refused = await counters.take("r", 4, 0.4)
    assert not refused.allowed and 0 < refused.retry_after_s <= 0.11
    await asyncio.sleep(refused.retry_after_s + 0.02)
    assert (await counters.take("r", 4, 0.4)).allowed


async def test_slots_and_counters(counters: MemoryCounters | RedisCounters) -> None:
    assert [await counters.acquire("c", 2, 60) for _ in range(3)] == [True, True, False]
    assert await counters.add("c", -1, 60) == 1
    assert await counters.acquire("c", 2, 60)
    assert await counters.add("used", 120, 60) == 120
    assert await counters.add("used", 30, 60) == 150
    assert await counters.get("used") == 150 and await counters.get("never") == 0


async def test_counters_expire(counters: MemoryCounters | RedisCounters) -> None:
    await counters.add("short", 5, 0.05)
    await asyncio.sleep(0.1)
    assert await counters.get("short") == 0


async def test_an_unreachable_redis_raises_counter_store_error() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0", "x", timeout_s=0.2)
    with pytest.raises(CounterStoreError):
        await counters.take("k", 1, 1.0)
    with pytest.raises(CounterStoreError):
        await counters.get("k")
    await counters.close()
