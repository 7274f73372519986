"""Per-address throttle on failing traffic, in front of authentication.

Requests that carry no key, fail authentication (401) or are refused by authorisation (403)
count against their client's address, at most ``failures_per_minute`` (GCRA: that many at
once, then one every 60/N seconds). An address over its rate gets 429 before its key is
looked at, so a flood of bad keys never reaches the key store; until then its requests go on
as usual, and requests that succeed count nothing. Every request from a throttled address is
refused, a valid key's included: the address is all there is to go on before the key is
checked. IPv6 clients count per /64, the block one subscriber usually holds.

The rates live in this process: a shield per gateway replica, not an exact quota. Fails
open: only an address seen failing is ever refused.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from typing import NoReturn

from starlette.responses import Response

from shardgate.errors import AuthenticationFailed, PermissionDenied, TooManyRequests
from shardgate.limits.counters import gcra
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler
from shardgate.pipeline.clientip import ClientAddress
from shardgate.pipeline.context import RequestContext

__all__ = ["IpThrottle"]

PERIOD_S = 60.0
SWEEP_EVERY_S = 60.0


class IpThrottle:
    def __init__(
        self,
        failures_per_minute: int | None,
        client_address: ClientAddress,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = failures_per_minute
        self._client_address = client_address
        self._m = metrics
        self._clock = clock
        self._tats: dict[str, float] = {}  # address -> GCRA theoretical arrival time
        self._sweep_at = 0.0

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        limit = self._limit
        if limit is None:
            return await call_next(ctx)
        request = ctx.request
        peer = request.client.host if request.client else None
        address = _bucket(self._client_address(peer, request.headers))
        tat = self._tats.get(address)
        if tat is not None:  # an address that never failed needs no look
            verdict, _ = gcra(tat, self._clock(), limit, PERIOD_S, 1, False)
            if not verdict.allowed:
                self._refuse(verdict.retry_after_s)
        try:
            return await call_next(ctx)
        except (AuthenticationFailed, PermissionDenied):
            self._count_failure(address, limit)
            raise

    def _refuse(self, retry_after_s: float) -> NoReturn:
        self._m.rejections.labels("ip_rate").inc()
        retry_after = max(1, math.ceil(retry_after_s))
        raise TooManyRequests(
            f"too many failed requests from this address; retry after {retry_after} s",
            code="ip_rate_limited",
            headers={"Retry-After": str(retry_after)},
        )

    def _count_failure(self, address: str, limit: int) -> None:
        now = self._clock()
        self._sweep(now)
        # Forced: failures that raced past the check above still count.
        _, tat = gcra(self._tats.get(address), now, limit, PERIOD_S, 1, True)
        self._tats[address] = tat

    def _sweep(self, now: float) -> None:
        # A time of arrival in the past is the same as none: the address is back to full.
        if now < self._sweep_at:
            return
        self._sweep_at = now + SWEEP_EVERY_S
        self._tats = {a: tat for a, tat in self._tats.items() if tat > now}


def _bucket(address: str) -> str:
    if ":" not in address:
        return address
    try:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    except ValueError:
        return address
