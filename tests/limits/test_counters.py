"""The counter-store contract (all-or-nothing admission of rates, slots and budgets, and
settlements) on both backends: in-process, and the real Redis on its own clock."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from shardgate.limits import Change, Check, CounterStoreError, MemoryCounters, RedisCounters
from shardgate.limits.counters import gcra
from shardgate.limits.resp import RedisConnection, encode

Counters = MemoryCounters | RedisCounters


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rate(key: str, limit: int, period_s: float = 60.0, cost: int = 1) -> Check:
    return Check("rate", key, limit, period_s, cost)


async def test_gcra_bursts_exactly_the_limit_then_one_per_interval() -> None:
    clock = Clock()
    counters = MemoryCounters(clock)
    outcomes = [await counters.admit([rate("k", 10)]) for _ in range(12)]
    assert [o.refused for o in outcomes] == [None] * 10 + [0, 0]
    assert [o.verdicts[0].remaining for o in outcomes[:10]] == list(range(9, -1, -1))
    assert outcomes[10].verdicts[0].retry_after_s == pytest.approx(6.0)  # one every 60/10 s
    assert outcomes[9].verdicts[0].reset_s == pytest.approx(60.0)
    clock.now += 5.9
    assert (await counters.admit([rate("k", 10)])).refused == 0
    clock.now += 0.1
    assert (await counters.admit([rate("k", 10)])).refused is None
    clock.now += 60
    assert (await counters.admit([rate("k", 10)])).verdicts[0].remaining == 9  # full again


def test_gcra_costs_refunds_and_forced_takes() -> None:
    verdict, tat = gcra(None, 0.0, 1000, 60.0, 700)
    assert verdict.remaining == 300
    refused, same = gcra(tat, 0.0, 1000, 60.0, 400)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(6.0) and same == tat
    _, tat = gcra(tat, 0.0, 1000, 60.0, -500, force=True)  # settled below the estimate
    verdict, tat = gcra(tat, 0.0, 1000, 60.0, 400)
    assert verdict.remaining == 400
    forced, tat = gcra(tat, 0.0, 1000, 60.0, 900, force=True)  # used more: charged anyway
    assert forced.allowed and forced.remaining == 0
    assert not gcra(tat, 0.0, 1000, 60.0, 1)[0].allowed
    assert not gcra(None, 0.0, 100, 60.0, 101)[0].allowed  # never fits


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    if request.param == "memory":
        store: Counters = MemoryCounters()
    else:
        store = RedisCounters("redis://127.0.0.1:6379/0", f"test-{secrets.token_hex(4)}")
    yield store
    await store.close()


async def test_a_concurrent_burst_admits_exactly_the_limit(counters: Counters) -> None:
    outcomes = await asyncio.gather(*(counters.admit([rate("burst", 25)]) for _ in range(60)))
    assert sum(o.refused is None for o in outcomes) == 25


async def test_admission_is_all_or_nothing(counters: Counters) -> None:
    both = [rate("a", 3), rate("b", 1)]
    first = await counters.admit(both)
    assert first.refused is None and [v.remaining for v in first.verdicts] == [2, 0]
    second = await counters.admit(both)
    assert second.refused == 1 and len(second.verdicts) == 1
    # The refusal took nothing from "a": it still has 2 of 3.
    assert (await counters.admit([rate("a", 3)])).verdicts[0].remaining == 1


async def test_rates_recover_on_their_schedule(counters: Counters) -> None:
    for _ in range(4):
        assert (await counters.admit([rate("r", 4, 0.4)])).refused is None
    refused = await counters.admit([rate("r", 4, 0.4)])
    assert refused.refused == 0 and 0 < refused.verdicts[0].retry_after_s <= 0.11
    await asyncio.sleep(refused.verdicts[0].retry_after_s + 0.02)
    assert (await counters.admit([rate("r", 4, 0.4)])).refused is None


async def test_slots_are_held_until_released(counters: Counters) -> None:
    slot = Check("slot", "c", 2, 60.0)
    assert [(await counters.admit([slot])).refused for _ in range(3)] == [None, None, 0]
    await counters.adjust([Change("count", "c", -1, span_s=60.0)])
    assert (await counters.admit([slot])).refused is None
    assert (await counters.admit([slot])).refused == 0


async def test_budgets_refuse_once_used_up_and_settlements_add_to_them(
    counters: Counters,
) -> None:
    budget = Check("budget", "used", 150)
    assert (await counters.admit([budget])).verdicts[0].remaining == 150
    await counters.adjust([Change("count", "used", 120, span_s=60.0)])
    assert (await counters.admit([budget])).verdicts[0].remaining == 30
    await counters.adjust([Change("count", "used", 30, span_s=60.0)])
    assert (await counters.admit([budget])).refused == 0


async def test_a_settlement_refunds_tokens(counters: Counters) -> None:
    assert (await counters.admit([rate("t", 1000, cost=700)])).verdicts[0].remaining == 300
    assert (await counters.admit([rate("t", 1000, cost=400)])).refused == 0
    await counters.adjust([Change("rate", "t", -500, 1000, 60.0)])
    outcome = await counters.admit([rate("t", 1000, cost=400)])
    assert outcome.refused is None and 399 <= outcome.verdicts[0].remaining <= 401


async def test_counters_expire(counters: Counters) -> None:
    await counters.adjust([Change("count", "short", 5, span_s=0.05)])
    await asyncio.sleep(0.1)
    assert (await counters.admit([Check("budget", "short", 5)])).refused is None


async def test_an_unreachable_redis_raises_counter_store_error() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0", "x", timeout_s=0.2)
    with pytest.raises(CounterStoreError):
        await counters.admit([rate("k", 1)])
    with pytest.raises(CounterStoreError):
        await counters.adjust([Change("count", "k", 1, span_s=1.0)])
    await counters.close()


async def test_redis_connection_recovers_from_a_script_flush_and_a_killed_socket() -> None:
    counters = RedisCounters("redis://127.0.0.1:6379/0", f"test-{secrets.token_hex(4)}")
    admin = RedisConnection("redis://127.0.0.1:6379/0", timeout_s=1.0)
    try:
        assert (await counters.admit([rate("k", 5)])).refused is None
        await admin.call("SCRIPT", "FLUSH")  # EVALSHA now fails with NOSCRIPT: EVAL reloads
        assert (await counters.admit([rate("k", 5)])).verdicts[0].remaining == 3
        client_id = await counters._redis.call("CLIENT", "ID")
        await admin.call("CLIENT", "KILL", "ID", client_id)
        await asyncio.sleep(0.05)
        # The dead socket was noticed and dropped; the next call connects again.
        assert (await counters.admit([rate("k", 5)])).verdicts[0].remaining == 2
        assert await counters._redis.call("CLIENT", "ID") != client_id
    finally:
        await counters.close()
        await admin.close()


async def test_redis_connection_pipelines_concurrent_calls_in_order() -> None:
    connection = RedisConnection("redis://127.0.0.1:6379/0", timeout_s=2.0)
    try:
        replies = await asyncio.gather(*(connection.call("ECHO", f"m{i}") for i in range(500)))
        assert replies == [f"m{i}".encode() for i in range(500)]
    finally:
        await connection.close()


def test_resp_encoding_and_urls() -> None:
    assert encode(("SET", "k", 1.5)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n"
    with pytest.raises(ValueError, match="only redis://"):
        RedisConnection("rediss://127.0.0.1", 1.0)
