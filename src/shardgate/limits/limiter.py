"""Per-key and per-tenant rate limits and token budgets, on a ``CounterStore``.

A request is admitted when every limit of its key and of its tenant allows it, checked in
this order: token budgets (day, month: a hard stop), concurrency, requests per minute,
tokens per minute, all in one call to the counter store, which counts all or nothing, so a
refused request costs nothing. Tokens are reserved with an estimate first and settled with
the real usage when the response ends (one more call). If the counter store fails,
``on_error`` decides: ``closed`` refuses with 503, ``open`` admits without limits; each
switch is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shardgate.errors import (
    QuotaExceeded,
    ServiceUnavailable,
    TokensRateLimited,
    TooManyRequests,
)
from shardgate.limits.counters import (
    Change,
    Check,
    CounterStore,
    CounterStoreError,
    Outcome,
    Verdict,
)
from shardgate.metrics import GatewayMetrics
from shardgate.store import Limits, Principal

__all__ = ["Admission", "RateLimiter", "reset_header"]

log = logging.getLogger(__name__)

MINUTE_S = 60.0
MAX_BATCH = 500  # settlement changes per counter-store call


@dataclass(frozen=True)
class _Party:
    """Whose limits: the key or its tenant."""

    kind: str  # "key" | "tenant"
    id: str
    limits: Limits

    def counter(self, what: str) -> str:
        return f"{self.kind}:{self.id}:{what}"


@dataclass
class Admission:
    """An admitted request: headers to send, and what to settle when it ends."""

    headers: dict[str, str] = field(default_factory=dict)
    parties: tuple[_Party, ...] = ()
    estimate: int = 0
    settled: bool = False


class RateLimiter:
    def __init__(
        self,
        counters: CounterStore,
        key_defaults: Limits,
        tenant_defaults: Limits,
        metrics: GatewayMetrics,
        *,
        on_error: str = "closed",
        slot_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = counters
        self._key_defaults = key_defaults
        self._tenant_defaults = tenant_defaults
        self._m = metrics
        self._fail_open = on_error == "open"
        self._slot_ttl = slot_ttl_s
        self._clock = clock
        self._store_ok = True
        self._pending: list[Change] = []
        self._flusher: asyncio.Task[None] | None = None

    async def admit(self, principal: Principal, tokens: int) -> Admission:
        parties = (
            _Party("key", principal.key_id, principal.key_limits.over(self._key_defaults)),
            _Party("tenant", principal.tenant, principal.tenant_limits.over(self._tenant_defaults)),
        )
        started = time.perf_counter()
        try:
            admission = await self._admit(parties, tokens)
        except CounterStoreError as exc:
            self._store_failed(exc)
            return Admission()  # failing open; closed raised above
        finally:
            self._m.limiter_latency.observe(time.perf_counter() - started)
        self._store_back()
        return admission

    def settle_later(self, admission: Admission, used_tokens: int) -> None:
        """Settle once the response has ended (called from a synchronous callback).
        Settlements are batched: while one batch is on its way to the counter store, the
        next ones gather, so a busy gateway settles many responses per round trip."""
        if admission.settled or not admission.parties:
            return
        admission.settled = True
        changes = self._settlement(admission, used_tokens)
        if not changes:
            return
        self._pending.extend(changes)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def drain(self) -> None:
        """Wait until every settlement has been written (at shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await self._flusher

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self.counters.adjust(batch)
            except CounterStoreError as exc:
                self._m.counter_store_errors.inc()
                log.warning("could not settle %d usage changes: %s", len(batch), exc)

    async def _admit(self, parties: tuple[_Party, ...], tokens: int) -> Admission:
        checks, labels = self._checks(parties, tokens)
        if not checks:
            return Admission(parties=parties, estimate=tokens)
        outcome = await self.counters.admit(checks)
        if outcome.refused is not None:
            raise self._refused(checks[outcome.refused], labels[outcome.refused], outcome)
        admission = Admission(parties=parties, estimate=tokens)
        for check, (_, what), verdict in zip(checks, labels, outcome.verdicts, strict=True):
            if what in ("rpm", "tpm"):
                _advertise(admission.headers, what, check.limit, verdict)
        return admission

    def _checks(
        self, parties: tuple[_Party, ...], tokens: int
    ) -> tuple[list[Check], list[tuple[_Party, str]]]:
        """Budgets first (a hard stop), then concurrency, then requests and tokens."""
        checks: list[Check] = []
        labels: list[tuple[_Party, str]] = []
        now: datetime | None = None
        for party in parties:
            for period, budget in (
                ("day", party.limits.daily_tokens),
                ("month", party.limits.monthly_tokens),
            ):
                if budget is not None:
                    now = now or datetime.fromtimestamp(self._clock(), UTC)
                    checks.append(Check("budget", party.counter(_budget_key(period, now)), budget))
                    labels.append((party, period))
        for party in parties:
            if party.limits.concurrency is not None:
                key = party.counter("concurrency")
                checks.append(Check("slot", key, party.limits.concurrency, self._slot_ttl))
                labels.append((party, "concurrency"))
        for what, cost in (("rpm", 1), ("tpm", tokens)):
            for party in parties:
                limit = party.limits.rpm if what == "rpm" else party.limits.tpm
                if limit is not None and cost:
                    checks.append(Check("rate", party.counter(what), limit, MINUTE_S, cost))
                    labels.append((party, what))
        return checks, labels

    def _refused(
        self, check: Check, label: tuple[_Party, str], outcome: Outcome
    ) -> TooManyRequests:
        party, what = label
        verdict = outcome.verdicts[0]
        self._m.rejections.labels(f"{party.kind}_{what}").inc()
        if what in ("day", "month"):
            now = datetime.fromtimestamp(self._clock(), UTC)
            resets = _next_day(now) if what == "day" else _next_month(now)
            return QuotaExceeded(
                f"the {party.kind}'s {what}ly budget of {check.limit} tokens is used up; "
                f"it renews at {resets:%Y-%m-%d %H:%M} UTC",
                headers={"Retry-After": str(math.ceil((resets - now).total_seconds()))},
            )
        error, label_text = {
            "concurrency": (TooManyRequests, "concurrent requests"),
            "rpm": (TooManyRequests, "requests per minute"),
            "tpm": (TokensRateLimited, "tokens per minute"),
        }[what]
        if what == "tpm" and check.cost > check.limit:
            message = (
                f"this request needs about {check.cost} tokens, more than the {party.kind}'s "
                f"limit of {check.limit} {label_text}: lower max_tokens or the prompt"
            )
        else:
            message = (
                f"rate limit reached for the {party.kind}: {check.limit} {label_text}; "
                f"retry in {reset_header(verdict.retry_after_s)}"
            )
        retry_after = max(1, math.ceil(verdict.retry_after_s))
        return error(message, headers={"Retry-After": str(retry_after)})

    def _settlement(self, admission: Admission, used: int) -> list[Change]:
        changes: list[Change] = []
        now: datetime | None = None
        delta = used - admission.estimate
        for party in admission.parties:
            limits = party.limits
            if limits.concurrency is not None:
                changes.append(Change("count", party.counter("concurrency"), -1, 1, self._slot_ttl))
            if limits.tpm is not None and delta and admission.estimate:
                changes.append(Change("rate", party.counter("tpm"), delta, limits.tpm, MINUTE_S))
            for period, budget, ttl in (
                ("day", limits.daily_tokens, 2 * 86400),
                ("month", limits.monthly_tokens, 32 * 86400),
            ):
                if used and budget is not None:
                    now = now or datetime.fromtimestamp(self._clock(), UTC)
                    key = party.counter(_budget_key(period, now))
                    changes.append(Change("count", key, used, 1, ttl))
        return changes

    def _store_failed(self, exc: CounterStoreError) -> None:
        self._m.counter_store_errors.inc()
        mode = "open" if self._fail_open else "closed"
        if self._store_ok:
            self._store_ok = False
            self._m.counter_store_switches.labels(f"fail_{mode}").inc()
            log.error("the counter store failed (%s): failing %s until it is back", exc, mode)
        if not self._fail_open:
            self._m.rejections.labels("limiter_unavailable").inc()
            raise ServiceUnavailable(
                "rate limits cannot be checked right now; retry shortly",
                code="limiter_unavailable",
                headers={"Retry-After": "1"},
            ) from None

    def _store_back(self) -> None:
        if not self._store_ok:
            self._store_ok = True
            self._m.counter_store_switches.labels("store").inc()
            log.warning("the counter store is back: limits apply again")


def _advertise(headers: dict[str, str], what: str, limit: int, verdict: Verdict) -> None:
    """OpenAI's x-ratelimit-* headers; the tighter of key and tenant wins."""
    kind = "requests" if what == "rpm" else "tokens"
    remaining = f"x-ratelimit-remaining-{kind}"
    if remaining in headers and int(headers[remaining]) <= verdict.remaining:
        return
    headers[f"x-ratelimit-limit-{kind}"] = str(limit)
    headers[remaining] = str(verdict.remaining)
    headers[f"x-ratelimit-reset-{kind}"] = reset_header(verdict.reset_s)


def reset_header(seconds: float) -> str:
    """A duration as OpenAI writes it: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _budget_key(period: str, now: datetime) -> str:
    return f"{period}:{now:%Y%m%d}" if period == "day" else f"{period}:{now:%Y%m}"


def _next_day(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def _next_month(now: datetime) -> datetime:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)
