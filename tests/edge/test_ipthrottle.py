"""The per-address throttle on failing traffic, against a fake clock."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.requests import Request
from starlette.responses import Response

from shardgate.errors import AuthenticationFailed, PermissionDenied, TooManyRequests
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.clientip import ClientAddress
from shardgate.pipeline.context import RequestContext
from shardgate.pipeline.ipthrottle import IpThrottle

LIMIT = 6  # per minute: a burst of 6, then one every 10 s


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Downstream:
    """Stands in for authentication and everything after it."""

    def __init__(self) -> None:
        self.calls = 0

    async def ok(self, ctx: RequestContext) -> Response:
        self.calls += 1
        return Response(status_code=200)

    async def bad_key(self, ctx: RequestContext) -> Response:
        self.calls += 1
        raise AuthenticationFailed("the API key is not valid", reason="unknown")

    async def forbidden(self, ctx: RequestContext) -> Response:
        self.calls += 1
        raise PermissionDenied("not for this key")


def request(peer: str, forwarded: str | None = None) -> RequestContext:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/models",
        "query_string": b"",
        "headers": headers,
        "client": (peer, 50000),
    }
    return RequestContext(Request(scope), "models")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics()


@pytest.fixture
def throttle(clock: Clock, metrics: GatewayMetrics) -> IpThrottle:
    trusted = [ipaddress.ip_network("127.0.0.1/32")]
    return IpThrottle(LIMIT, ClientAddress(trusted), metrics, clock)


async def fail(throttle: IpThrottle, ctx: RequestContext, downstream: Downstream) -> int:
    """The status the request gets: 401 from downstream or 429 from the throttle."""
    try:
        await throttle(ctx, downstream.bad_key)
    except AuthenticationFailed:
        return 401
    except TooManyRequests:
        return 429
    raise AssertionError("no error")


async def test_a_burst_then_one_failure_per_interval(throttle: IpThrottle, clock: Clock) -> None:
    down = Downstream()
    statuses = [await fail(throttle, request("203.0.113.1"), down) for _ in range(LIMIT + 3)]
    assert statuses == [401] * LIMIT + [429] * 3
    assert down.calls == LIMIT  # refused requests never reach authentication
    clock.now += 60 / LIMIT - 0.5
    assert await fail(throttle, request("203.0.113.1"), down) == 429
    clock.now += 0.5
    assert await fail(throttle, request("203.0.113.1"), down) == 401
    assert await fail(throttle, request("203.0.113.1"), down) == 429
    clock.now += 60
    statuses = [await fail(throttle, request("203.0.113.1"), down) for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


async def test_refusal_is_a_429_with_retry_after(
    throttle: IpThrottle, clock: Clock, metrics: GatewayMetrics
) -> None:
    down = Downstream()
    for _ in range(LIMIT):
        await fail(throttle, request("203.0.113.2"), down)
    with pytest.raises(TooManyRequests) as refused:
        await throttle(request("203.0.113.2"), down.ok)  # a valid key too: it is not checked
    assert down.calls == LIMIT
    error = refused.value
    assert error.status_code == 429 and error.code == "ip_rate_limited"
    assert error.body()["error"]["type"] == "requests"
    assert error.headers == {"Retry-After": "10"}
    clock.now += 7.5
    with pytest.raises(TooManyRequests) as again:
        await throttle(request("203.0.113.2"), down.ok)
    assert again.value.headers == {"Retry-After": "3"}  # rounded up, never 0
    assert metrics.registry.get_sample_value("shardgate_rejections_total", {"reason": "ip_rate"})


async def test_successes_count_nothing(throttle: IpThrottle) -> None:
    down = Downstream()
    for _ in range(100):
        assert (await throttle(request("203.0.113.3"), down.ok)).status_code == 200
    statuses = [await fail(throttle, request("203.0.113.3"), down) for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


async def test_forbidden_and_missing_keys_count_like_bad_keys(throttle: IpThrottle) -> None:
    down = Downstream()
    for _ in range(LIMIT):
        with pytest.raises(PermissionDenied):
            await throttle(request("203.0.113.4"), down.forbidden)
    with pytest.raises(TooManyRequests):
        await throttle(request("203.0.113.4"), down.ok)


async def test_other_errors_count_nothing(throttle: IpThrottle) -> None:
    async def own_limit(ctx: RequestContext) -> Response:
        raise TooManyRequests("a key's own rate limit")

    for _ in range(LIMIT * 2):
        with pytest.raises(TooManyRequests) as refused:
            await throttle(request("203.0.113.5"), own_limit)
        assert refused.value.code == "rate_limit_exceeded"


async def test_addresses_are_counted_apart(throttle: IpThrottle) -> None:
    down = Downstream()
    for _ in range(LIMIT + 1):
        await fail(throttle, request("203.0.113.6"), down)
    assert await fail(throttle, request("203.0.113.7"), down) == 401
    assert (await throttle(request("203.0.113.8"), down.ok)).status_code == 200


async def test_forwarded_clients_of_a_trusted_proxy_are_counted_apart(
    throttle: IpThrottle,
) -> None:
    down = Downstream()
    for _ in range(LIMIT + 1):
        await fail(throttle, request("127.0.0.1", "198.51.100.1"), down)
    assert await fail(throttle, request("127.0.0.1", "198.51.100.1"), down) == 429
    assert await fail(throttle, request("127.0.0.1", "9.9.9.9, 198.51.100.1"), down) == 429
    assert await fail(throttle, request("127.0.0.1", "198.51.100.2"), down) == 401
    assert await fail(throttle, request("127.0.0.1"), down) == 401  # the proxy itself


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(throttle: IpThrottle) -> None:
    down = Downstream()
    for i in range(LIMIT):
        await fail(throttle, request("127.0.0.2", f"198.51.100.{10 + i}"), down)
    assert await fail(throttle, request("127.0.0.2", "198.51.100.99"), down) == 429


async def test_ipv6_clients_count_per_64(throttle: IpThrottle) -> None:
    down = Downstream()
    for i in range(LIMIT):
        await fail(throttle, request(f"2001:db8:1:2::{i + 1}"), down)
    assert await fail(throttle, request("2001:db8:1:2:ffff::9"), down) == 429
    assert await fail(throttle, request("2001:db8:1:3::1"), down) == 401


async def test_off_without_a_limit(clock: Clock, metrics: GatewayMetrics) -> None:
    throttle = IpThrottle(None, ClientAddress(), metrics, clock)
    down = Downstream()
    statuses = [await fail(throttle, request("203.0.113.9"), down) for _ in range(100)]
    assert statuses == [401] * 100


async def test_idle_addresses_are_forgotten(throttle: IpThrottle, clock: Clock) -> None:
    down = Downstream()
    for i in range(1000):
        await fail(throttle, request(f"198.18.{i // 250}.{i % 250}"), down)
    clock.now += 3600
    await fail(throttle, request("203.0.113.10"), down)
    assert len(throttle._tats) == 1
