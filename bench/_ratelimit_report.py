"""What bench/ratelimit.py found: checks per second, the latency added per request, the
target, and how they print."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import machine, print_table, print_warnings, run_info, verdict

ADDED_P99_TARGET_MS = 1.0
DEFAULT_RATE = 500.0  # the rate the target is set for
LATE_WARNING_MS = 10.0
OTHER_CPU_WARNING = 15.0


@dataclass
class CheckResult:
    backend: str  # "memory", "redis", or "-" for the no-op baseline
    op: str
    concurrency: int
    calls: int
    wall_s: float  # the measured rounds took, settlements included
    per_s: float
    p50_us: float
    p99_us: float
    max_us: float
    cpu_s: dict[str, float]  # this process, redis-server, everything else
    errors: dict[str, int]

    def cpu_us_per_call(self, name: str) -> float:
        if name not in self.cpu_s or not self.calls:
            return math.nan
        return 1e6 * self.cpu_s[name] / self.calls

    @property
    def other_cpu_percent(self) -> float:
        return 100 * self.cpu_s.get("other", 0.0) / self.wall_s if self.wall_s > 0 else math.nan


@dataclass
class RequestResult:
    config: str
    role: str  # "baseline", "limited" or "control" (a baseline on the other gateway)
    counters: str  # the gateway's counter backend
    limited: bool
    target_rate: float
    requests: int
    ok: int
    errors: int
    achieved_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    late_p99_ms: float
    round_p50_ms: list[float]
    round_p99_ms: list[float]
    cpu_percent: dict[str, float]  # of one core: generator, gateway, shard, redis, other
    cpu_us_per_request: dict[str, float]  # the gateway's, and redis-server's
    error_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class Results:
    checks: list[CheckResult] = field(default_factory=list)
    requests: list[RequestResult] = field(default_factory=list)
    redis: dict[str, Any] | None = None
    redis_skipped: str | None = None
    redis_keys_deleted: int | None = None


def print_report(results: Results, args: argparse.Namespace) -> dict[str, Any]:
    cores, load1 = machine()
    print("\nshardgate rate-limit benchmark: RateLimiter on in-process counters and on Redis")
    where = "not measured"
    if results.redis:
        r = results.redis
        where = f"Redis {r['version']} at {r['url']}, namespace {r['namespace']}"
    print(f"{where}; {cores} CPU cores shared by everything (load average now {load1:.2f})")
    if results.redis_skipped:
        print(f"Redis was not measured: {results.redis_skipped}")
    print_checks(results.checks, args)
    print_requests(results.requests, args)
    added = added_latency(results.requests)
    print_added(added)
    target = check_target(added)
    print_target(target, args)
    if results.redis_keys_deleted is not None:
        print(f"\n(Redis: {results.redis_keys_deleted} keys of the run's namespace deleted)")
    warnings = disturbance_warnings(results)
    print_warnings(warnings)
    return {
        **run_info(args, cores, load1),
        "redis": results.redis,
        "redis_skipped": results.redis_skipped,
        "redis_keys_deleted": results.redis_keys_deleted,
        "checks": [
            asdict(c)
            | {
                "other_cpu_percent": c.other_cpu_percent,
                "bench_cpu_us_per_call": c.cpu_us_per_call("bench"),
                "redis_cpu_us_per_call": c.cpu_us_per_call("redis"),
            }
            for c in results.checks
        ],
        "requests": [asdict(r) for r in results.requests],
        "added_latency": added,
        "target": target,
        "warnings": warnings,
    }


def print_checks(checks: list[CheckResult], args: argparse.Namespace) -> None:
    if not checks:
        return
    print(
        f"\nLimiter checks in this process (one uvloop loop; {args.keys} keys round-robin, "
        f"{args.rounds} rounds of {args.check_seconds:g} s per case, interleaved)"
    )
    print_table(
        [
            "backend",
            "call",
            "in flight",
            "calls",
            "calls/s",
            "p50 us",
            "p99 us",
            "cpu us/call",
            "redis us/call",
            "other cpu %",
            "errors",
        ],
        [
            [
                c.backend,
                c.op,
                c.concurrency,
                c.calls,
                f"{c.per_s:,.0f}",
                c.p50_us,
                c.p99_us,
                c.cpu_us_per_call("bench"),
                c.cpu_us_per_call("redis"),
                f"{c.other_cpu_percent:.0f}",
                sum(c.errors.values()),
            ]
            for c in checks
        ],
    )
    print(
        "('admit + settle': RateLimiter.admit of a key and tenant with rpm and tpm limits "
        "(one counter-store call), then settle_later (one more, run after the call); "
        "calls/s counts finished calls with their settlements; the latency is the awaited "
        "call alone; 'one rate': a single rate check; 'no-op': the harness itself; "
        "'cpu': this process; 'redis': redis-server's CPU)"
    )


def print_requests(requests: list[RequestResult], args: argparse.Namespace) -> None:
    if not requests:
        return
    limited = "the key" if args.key_limits_only else "the key and its tenant"
    print(
        f"\nRequests through a gateway: {args.rate:g} req/s open loop, non-streaming "
        f"(max_tokens {args.max_tokens}), {args.rounds} rounds of {args.duration:g} s per "
        f"configuration, interleaved; limited: rpm and tpm on {limited}"
    )
    print_table(
        [
            "configuration",
            "counters",
            "achieved/s",
            "requests",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "late p99 ms",
            "gateway us/req",
            "redis us/req",
        ],
        [
            [
                r.config,
                r.counters,
                f"{r.achieved_rate:.1f}",
                r.requests,
                r.errors,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.late_p99_ms,
                _whole(r.cpu_us_per_request.get("gateway", math.nan)),
                _whole(r.cpu_us_per_request.get("redis", math.nan)),
            ]
            for r in requests
        ],
    )
    print(
        "(latency from the scheduled send to the full response; 'late': how far behind its "
        "schedule the generator sent; 'us/req': CPU time per request)"
    )
    for r in requests:
        if r.error_kinds:
            kinds = ", ".join(f"{k}: {n}" for k, n in r.error_kinds.items())
            print(f"errors in {r.config}: {kinds}")


def added_latency(requests: list[RequestResult]) -> list[dict[str, Any]]:
    """Each configuration minus the baseline, pooled and round by round."""
    base = next((r for r in requests if r.role == "baseline"), None)
    if base is None:
        return []
    rows = []
    for r in requests:
        if r is base:
            continue
        per_round = [
            mine - theirs for mine, theirs in zip(r.round_p99_ms, base.round_p99_ms, strict=False)
        ]
        rows.append(
            {
                "config": r.config,
                "role": r.role,
                "counters": r.counters,
                "added_p50_ms": r.p50_ms - base.p50_ms,
                "added_p99_ms": r.p99_ms - base.p99_ms,
                "added_p99_per_round_ms": per_round,
                "added_gateway_cpu_us": r.cpu_us_per_request.get("gateway", math.nan)
                - base.cpu_us_per_request.get("gateway", math.nan),
            }
        )
    return rows


def print_added(added: list[dict[str, Any]]) -> None:
    if not added:
        return
    print("\nLatency added: each configuration minus 'no limits' (in-process gateway)")
    print_table(
        ["configuration", "added p50 ms", "added p99 ms", "p99 per round", "gateway cpu us/req"],
        [
            [
                a["config"],
                a["added_p50_ms"],
                a["added_p99_ms"],
                " ".join(f"{v:+.2f}" for v in a["added_p99_per_round_ms"]),
                _whole(a["added_gateway_cpu_us"], "+"),
            ]
            for a in added
        ],
    )
    if any(a["role"] == "control" for a in added):
        print(
            "('no limits, Redis gateway': the same kind of key without limits, on the other "
            "gateway process: what it shows is noise between processes and rounds)"
        )


def _whole(value: float, sign: str = "") -> str:
    """A figure rounded to a whole number; "-" for none."""
    return "-" if math.isnan(value) else f"{round(value) or 0:{sign}d}"


def check_target(added: list[dict[str, Any]]) -> dict[str, Any] | None:
    row = next((a for a in added if a["role"] == "limited" and a["counters"] == "redis"), None)
    if row is None:
        return None
    control = next((a for a in added if a["role"] == "control"), None)
    return {
        "added_p99_ms": row["added_p99_ms"],
        "added_p50_ms": row["added_p50_ms"],
        "control_added_p99_ms": control["added_p99_ms"] if control else None,
        "target_ms": ADDED_P99_TARGET_MS,
        "pass": row["added_p99_ms"] <= ADDED_P99_TARGET_MS,
    }


def print_target(target: dict[str, Any] | None, args: argparse.Namespace) -> None:
    print(
        f"\nTarget: the Redis limiter adds at most {ADDED_P99_TARGET_MS:g} ms p99 per request "
        f"at {DEFAULT_RATE:g} req/s"
    )
    if target is None:
        print("not measured (no Redis)")
        return
    control = target["control_added_p99_ms"]
    noise = "" if control is None else f"; the two baselines differ by {control:+.2f} ms p99"
    print(
        f"{verdict(target['pass'])}  Redis counters: added p99 {target['added_p99_ms']:.2f} ms "
        f"(added p50 {target['added_p50_ms']:.2f} ms){noise}"
    )
    if args.rate != DEFAULT_RATE:
        print(f"(measured at {args.rate:g} req/s, not the {DEFAULT_RATE:g} the target is set for)")


def disturbance_warnings(results: Results) -> list[str]:
    lines = []
    for c in results.checks:
        if c.errors:
            lines.append(f"checks / {c.backend} {c.op} x{c.concurrency}: errors {c.errors}")
        if c.other_cpu_percent > OTHER_CPU_WARNING:
            lines.append(
                f"checks / {c.backend} {c.op} x{c.concurrency}: other processes used "
                f"{c.other_cpu_percent:.0f}% of a core meanwhile, which disturbs its figures"
            )
    for r in results.requests:
        if r.achieved_rate < 0.95 * r.target_rate:
            lines.append(
                f"requests / {r.config} reached {r.achieved_rate:.0f} of the target "
                f"{r.target_rate:.0f} req/s; its figures are for the rate reached"
            )
        if r.late_p99_ms > LATE_WARNING_MS:
            lines.append(
                f"requests / {r.config}: the generator fell up to {r.late_p99_ms:.0f} ms (p99) "
                f"behind its schedule; that lateness is counted in the latency"
            )
        if r.cpu_percent.get("other", 0.0) > OTHER_CPU_WARNING:
            lines.append(
                f"requests / {r.config}: other processes used {r.cpu_percent['other']:.0f}% "
                f"of a core, which disturbs the figures"
            )
    return lines
