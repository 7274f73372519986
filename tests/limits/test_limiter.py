"""RateLimiter against a fake clock: key and tenant limits, undo on refusal, settling,
budgets renewing at UTC midnight and month end, headers, and a failing counter store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from shardgate.errors import QuotaExceeded, ServiceUnavailable, TooManyRequests
from shardgate.limits import (
    Change,
    Check,
    CounterStoreError,
    MemoryCounters,
    Outcome,
    RateLimiter,
)
from shardgate.limits.limiter import reset_header
from shardgate.metrics import GatewayMetrics
from shardgate.store import ALL, NO_LIMITS, Limits, Principal


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def limiter_at(
    when: datetime, key_defaults: Limits = NO_LIMITS, tenant_defaults: Limits = NO_LIMITS
) -> tuple[RateLimiter, Clock, GatewayMetrics]:
    clock, metrics = Clock(when), GatewayMetrics()
    limiter = RateLimiter(
        MemoryCounters(clock), key_defaults, tenant_defaults, metrics, clock=clock
    )
    return limiter, clock, metrics


def principal(key: Limits = NO_LIMITS, tenant: Limits = NO_LIMITS, key_id: str = "k1") -> Principal:
    return Principal(key_id, "acme", "user", frozenset({ALL}), frozenset({ALL}), key, tenant)


NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def refusal(limiter: RateLimiter, who: Principal, tokens: int = 0) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        await limiter.admit(who, tokens)
    return caught.value


async def test_key_rpm_with_headers_and_retry_after() -> None:
    limiter, _, metrics = limiter_at(NOON)
    who = principal(Limits(rpm=3))
    headers = [(await limiter.admit(who, 0)).headers for _ in range(3)]
    assert [h["x-ratelimit-remaining-requests"] for h in headers] == ["2", "1", "0"]
    assert headers[0]["x-ratelimit-limit-requests"] == "3"
    assert headers[2]["x-ratelimit-reset-requests"] == "1m0s"
    refused = await refusal(limiter, who)
    assert refused.status_code == 429 and refused.error_type == "requests"
    assert refused.headers["Retry-After"] == "20"
    assert "3 requests per minute" in refused.message
    sample = metrics.registry.get_sample_value("shardgate_rejections_total", {"reason": "key_rpm"})
    assert sample == 1


async def test_the_tenant_limit_binds_all_its_keys_and_refusals_cost_nothing() -> None:
    limiter, _, _ = limiter_at(NOON)
    tenant = Limits(rpm=2)
    first, second = principal(Limits(rpm=2), tenant, "k1"), principal(Limits(rpm=2), tenant, "k2")
    await limiter.admit(first, 0)
    await limiter.admit(second, 0)
    for who in (first, second):
        assert "tenant" in (await refusal(limiter, who)).message
    # The tenant refusals did not use up the keys' own rates: each still has one left.
    outcome = await limiter.counters.admit([Check("rate", "key:k1:rpm", 2, 60.0)])
    assert outcome.refused is None and outcome.verdicts[0].remaining == 0


async def test_tokens_are_reserved_then_settled_to_the_real_usage() -> None:
    limiter, _, _ = limiter_at(NOON)
    who = principal(Limits(tpm=1000))
    admission = await limiter.admit(who, 600)
    assert admission.headers["x-ratelimit-remaining-tokens"] == "400"
    refused = await refusal(limiter, who, 600)
    assert refused.error_type == "tokens" and refused.headers["Retry-After"] == "12"
    limiter.settle_later(admission, 100)  # the response used far less than reserved
    await limiter.drain()
    assert (await limiter.admit(who, 600)).headers["x-ratelimit-remaining-tokens"] == "300"
    too_big = await refusal(limiter, who, 5000)
    assert "more than the key's limit of 1000" in too_big.message


async def test_concurrency_slots_are_released_when_the_response_ends() -> None:
    limiter, _, _ = limiter_at(NOON)
    who = principal(Limits(concurrency=2))
    held = [await limiter.admit(who, 0) for _ in range(2)]
    assert "2 concurrent requests" in (await refusal(limiter, who)).message
    limiter.settle_later(held[0], 0)
    limiter.settle_later(held[0], 0)  # settling twice releases once
    await limiter.drain()
    await limiter.admit(who, 0)
    await refusal(limiter, who)


async def test_daily_budget_is_a_hard_stop_that_renews_at_utc_midnight() -> None:
    late = datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC)
    limiter, clock, _ = limiter_at(late, key_defaults=Limits(daily_tokens=1000))
    who = principal()
    admission = await limiter.admit(who, 10)
    limiter.settle_later(admission, 1200)  # an admitted request may pass the budget
    await limiter.drain()
    with pytest.raises(QuotaExceeded) as caught:
        await limiter.admit(who, 10)
    error = caught.value
    assert error.status_code == 429 and error.body()["error"]["code"] == "insufficient_quota"
    assert error.headers["Retry-After"] == "60" and "2026-12-01 00:00 UTC" in error.message
    clock.now += 60
    await limiter.admit(who, 10)


async def test_monthly_budget_renews_on_the_first_of_the_month() -> None:
    limiter, clock, _ = limiter_at(NOON)
    who = principal(tenant=Limits(monthly_tokens=500))
    limiter.settle_later(await limiter.admit(who, 0), 500)
    await limiter.drain()
    with pytest.raises(QuotaExceeded) as caught:
        await limiter.admit(who, 0)
    assert "tenant's monthly budget" in caught.value.message
    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    await limiter.admit(who, 0)


class BrokenCounters(MemoryCounters):
    async def admit(self, checks: Sequence[Check]) -> Outcome:
        raise CounterStoreError("redis: connection refused")


async def test_a_failing_store_fails_closed_or_open_and_each_switch_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    who = principal(Limits(rpm=5))
    for mode in ("closed", "open"):
        metrics = GatewayMetrics()
        limiter = RateLimiter(BrokenCounters(), NO_LIMITS, NO_LIMITS, metrics, on_error=mode)
        for _ in range(3):
            if mode == "closed":
                with pytest.raises(ServiceUnavailable) as caught:
                    await limiter.admit(who, 0)
                assert caught.value.code == "limiter_unavailable"
            else:
                assert (await limiter.admit(who, 0)).headers == {}
        switches = metrics.registry.get_sample_value(
            "shardgate_counter_store_switches_total", {"to": f"fail_{mode}"}
        )
        errors = metrics.registry.get_sample_value("shardgate_counter_store_errors_total")
        assert (switches, errors) == (1, 3)  # one switch, however many failures
        assert f"failing {mode}" in caplog.text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (1, "1s"), (1.5, "1.5s"), (59.9994, "59.999s"), (60, "1m0s"), (360, "6m0s")],
)
def test_reset_header_format(seconds: float, text: str) -> None:
    assert reset_header(seconds) == text


async def test_unlimited_keys_touch_no_counter() -> None:
    limiter, _, _ = limiter_at(NOON)
    results = await asyncio.gather(*(limiter.admit(principal(), 100) for _ in range(50)))
    assert all(r.headers == {} for r in results)


class CountingCounters(MemoryCounters):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.batches: list[int] = []

    async def adjust(self, changes: Sequence[Change]) -> None:
        self.batches.append(len(changes))
        await asyncio.sleep(0)  # a round trip: the next settlements gather meanwhile
        await super().adjust(changes)


async def test_settlements_are_batched_while_one_is_on_its_way() -> None:
    clock = Clock(NOON)
    counters = CountingCounters(clock)
    limiter = RateLimiter(counters, NO_LIMITS, NO_LIMITS, GatewayMetrics(), clock=clock)
    who = principal(Limits(tpm=100_000, daily_tokens=10**6))
    admissions = [await limiter.admit(who, 100) for _ in range(50)]
    for admission in admissions[:10]:
        limiter.settle_later(admission, 40)
    await asyncio.sleep(0)  # the first batch leaves...
    for admission in admissions[10:]:
        limiter.settle_later(admission, 40)  # ...and these gather behind it
    await limiter.drain()
    assert counters.batches == [20, 80]  # a tpm refund and a budget addition each
    assert counters.value(f"key:k1:day:{NOON:%Y%m%d}") == 50 * 40
