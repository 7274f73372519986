"""What rate limiting costs: limiter checks per second, and latency added per request.

Two parts, in one run, each with in-process counters and with Redis:

- **checks**: in this process, in one uvloop event loop, ``RateLimiter.admit`` followed by
  ``settle_later`` for keys whose limits never refuse, and the bare counter operation
  (one rate check), in a closed loop at a few concurrencies;
- **requests**: a fake shard and two gateways, one counting in process and one in Redis,
  get the same open-loop load of non-streaming chat completions, with a key that has no
  limits (the baseline: the limiter does nothing for it) and a key with limits that never
  refuse (see ``_ratelimit_gateway``).

Cases are interleaved in rounds, so that load from elsewhere falls on all of them alike.
Redis keys go under a namespace of this run's own, deleted at the end. Run
``python bench/ratelimit.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis.asyncio as redis
import uvloop
from redis.exceptions import RedisError

from _common import (
    CpuMeter,
    Processes,
    add_limit_options,
    bench_main,
    percentile,
    progress,
    stop_on_sigterm,
)
from _ratelimit_gateway import RedisTarget, measure_requests, start_stack
from _ratelimit_report import DEFAULT_RATE, CheckResult, Results, print_report
from shardgate.errors import ShardgateError
from shardgate.limits import (
    Check,
    CounterStore,
    CounterStoreError,
    MemoryCounters,
    RateLimiter,
    RedisCounters,
)
from shardgate.metrics import GatewayMetrics
from shardgate.settings import CounterSettings
from shardgate.store import ALL, NO_LIMITS, Limits, Principal

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
TENANT = "bench"
# Limits far above anything a run reaches (a GCRA limit of N admits a burst of N), so that
# every check does the whole work of an admitted request and none is refused.
NEVER = Limits(rpm=10**9, tpm=10**12)
ESTIMATE_TOKENS = 40  # what a check reserves, about what the gateway reserves per request
USED_TOKENS = 20  # what it settles: not the estimate, so that settling has work to do
T = TypeVar("T")


@dataclass
class CheckCase:
    backend: str  # "memory", "redis", or "-" for the no-op baseline
    op: str
    concurrency: int
    call: Callable[[int], Awaitable[object]]
    finish: Callable[[], Awaitable[None]]  # inside the clock: waits for the settlements
    samples_us: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)


# -- the checks, in this process --------------------------------------------------------


async def _nothing(_: int = 0) -> None:
    return None


def check_cases(backends: dict[str, CounterStore], levels: list[int], keys: int) -> list[CheckCase]:
    """The no-op baseline, then per backend: admit + settle, and a single rate check."""
    principals = [
        Principal(
            f"bench-key-{i}",
            TENANT,
            "user",
            frozenset({ALL}),
            frozenset({ALL}),
            key_limits=NEVER,
            tenant_limits=NEVER,
        )
        for i in range(keys)
    ]
    cases = [CheckCase("-", "no-op", c, _nothing, _nothing) for c in levels]
    for backend, counters in backends.items():
        limiter = RateLimiter(counters, NO_LIMITS, NO_LIMITS, GatewayMetrics())

        async def check(i: int, limiter: RateLimiter = limiter) -> None:
            admission = await limiter.admit(principals[i % keys], ESTIMATE_TOKENS)
            limiter.settle_later(admission, USED_TOKENS)

        async def take(i: int, counters: CounterStore = counters) -> None:
            await counters.admit([Check("rate", f"bench:take:{i % keys}", NEVER.rpm or 1, 60.0)])

        cases += [CheckCase(backend, "admit + settle", c, check, limiter.drain) for c in levels]
        cases += [CheckCase(backend, "one rate", c, take, _nothing) for c in levels]
    return cases


async def closed_loop(case: CheckCase, seconds: float, numbers: Iterator[int]) -> list[float]:
    """``case.concurrency`` workers calling back to back for ``seconds``; microseconds per
    call. Each worker yields to the loop between calls, as a server's requests would, so
    that the settlements and the other workers run meanwhile."""
    deadline = time.perf_counter() + seconds
    took: list[float] = []

    async def worker() -> None:
        while time.perf_counter() < deadline:
            i = next(numbers)
            start = time.perf_counter_ns()
            try:
                await case.call(i)
            except (ShardgateError, CounterStoreError) as exc:
                case.errors[type(exc).__name__] += 1
            took.append((time.perf_counter_ns() - start) / 1000)
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for _ in range(case.concurrency):
            group.create_task(worker())
    await case.finish()
    return took


async def run_checks(
    cases: list[CheckCase], args: argparse.Namespace, processes: dict[str, psutil.Process]
) -> None:
    numbers = itertools.count()
    progress(f"checks: warm-up, {args.check_warmup:g} s for each of {len(cases)} cases ...")
    for case in cases:
        await closed_loop(case, args.check_warmup, numbers)
        case.errors.clear()
    for number in range(1, args.rounds + 1):
        progress(f"checks: round {number}/{args.rounds}, {args.check_seconds:g} s per case ...")
        for case in cases:
            meter = CpuMeter(processes)
            started = time.perf_counter()
            case.samples_us += await closed_loop(case, args.check_seconds, numbers)
            case.wall_s += time.perf_counter() - started
            used, _ = meter.stop()
            for name, seconds in used.items():
                case.cpu_s[name] = case.cpu_s.get(name, 0.0) + seconds


def summarize_check(case: CheckCase) -> CheckResult:
    samples = case.samples_us
    return CheckResult(
        backend=case.backend,
        op=case.op,
        concurrency=case.concurrency,
        calls=len(samples),
        wall_s=case.wall_s,
        per_s=len(samples) / case.wall_s if case.wall_s > 0 else math.nan,
        p50_us=percentile(samples, 50),
        p99_us=percentile(samples, 99),
        max_us=max(samples, default=math.nan),
        cpu_s=dict(case.cpu_s),
        errors=dict(case.errors),
    )


async def measure_checks(args: argparse.Namespace, target: RedisTarget | None) -> list[CheckResult]:
    backends: dict[str, CounterStore] = {"memory": MemoryCounters()}
    processes = {"bench": psutil.Process()}
    if target is not None:
        timeout_s = CounterSettings().timeout_s  # the gateway's default
        backends["redis"] = RedisCounters(target.url, target.namespace, timeout_s)
        if target.server is not None:
            processes["redis"] = target.server
    try:
        cases = check_cases(backends, args.concurrency, args.keys)
        await run_checks(cases, args, processes)
    finally:
        for counters in backends.values():
            await counters.close()
    return [summarize_check(case) for case in cases]


# -- Redis: reaching it, and leaving nothing behind -------------------------------------


async def find_redis(url: str) -> tuple[RedisTarget | None, str | None]:
    """A namespace of this run's own on the Redis at ``url``; or None and why not."""
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = await client.info("server")
    except (RedisError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    server = None
    with contextlib.suppress(psutil.Error, KeyError, ValueError):
        process = psutil.Process(int(info["process_id"]))
        if "redis" in process.name():  # not another process that has its number here
            server = process
    namespace = f"shardgate-bench-{secrets.token_hex(4)}"
    return RedisTarget(url, namespace, server, str(info.get("redis_version", "?"))), None


async def forget_namespace(target: RedisTarget) -> int:
    """Delete every key of the run's namespace; how many there were."""
    client = redis.Redis.from_url(target.url, socket_timeout=5, socket_connect_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{target.namespace}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


def clean_up(runner: asyncio.Runner, target: RedisTarget) -> int | None:
    try:
        deleted = run_async(runner, forget_namespace(target))
    except (RedisError, OSError) as exc:
        progress(f"Redis: could not delete the keys under {target.namespace}:* ({exc})")
        return None
    progress(f"Redis: deleted the {deleted} keys left under {target.namespace}:*")
    return deleted


# -- the run ----------------------------------------------------------------------------


def run_async(runner: asyncio.Runner, coro: Coroutine[Any, Any, T]) -> T:
    """``runner.run``, with SIGTERM cancelling the coroutine at its next await as Ctrl-C
    does (a Redis call is never cut off halfway); afterwards SIGTERM raises
    KeyboardInterrupt again, so that the started processes are still stopped."""

    async def cancellable() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            stop_on_sigterm()

    try:
        return runner.run(cancellable())
    except asyncio.CancelledError:  # SIGTERM
        raise KeyboardInterrupt from None


def run(args: argparse.Namespace) -> Results:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        target, skipped = None, "--redis was empty"
        if args.redis:
            target, skipped = run_async(runner, find_redis(args.redis))
        if skipped:
            progress(f"Redis skipped: {skipped}")
        results = Results(redis_skipped=skipped, redis=target.describe() if target else None)
        try:
            results.checks = run_async(runner, measure_checks(args, target))
            with (
                tempfile.TemporaryDirectory(prefix="shardgate-bench-ratelimit-") as tmp,
                Processes(Path(tmp)) as procs,
            ):
                progress("requests: starting a fake shard and the gateways ...")
                stack = start_stack(procs, Path(tmp), args, target)
                results.requests = run_async(runner, measure_requests(stack, args))
        finally:
            if target is not None:  # after the gateways have stopped: none writes any more
                results.redis_keys_deleted = clean_up(runner, target)
        return results


# -- the command line -------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--redis",
        default=DEFAULT_REDIS,
        metavar="URL",
        help=f"the Redis to count in; '' measures in-process counters only "
        f"(default {DEFAULT_REDIS})",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="both parts are measured in this many rounds, cases interleaved (default 3)",
    )
    p.add_argument(
        "--concurrency",
        default="1,32",
        help="checks: calls in flight at once, comma-separated (default 1,32)",
    )
    p.add_argument(
        "--check-seconds",
        type=float,
        default=1.0,
        help="checks: seconds per case per round (default 1)",
    )
    p.add_argument(
        "--check-warmup",
        type=float,
        default=0.3,
        help="checks: unmeasured seconds per case first (default 0.3)",
    )
    p.add_argument(
        "--keys", type=int, default=100, help="checks: distinct keys, round-robin (default 100)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help="requests: open-loop rate, per second (default 500)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=6.0,
        help="requests: measured seconds per configuration per round (default 6)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="requests: unmeasured seconds of the same load before each (default 1)",
    )
    p.add_argument(
        "--key-limits-only",
        action="store_true",
        help="requests: limit only the key, not its tenant too (half the counter operations)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=8, help="requests: max_tokens of each (default 8)"
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="requests: the generator's connection pool size (default 256)",
    )
    add_limit_options(p, 30.0, 60.0, "the shard and gateways to be ready")
    args = p.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        p.error("--concurrency takes whole numbers separated by commas")
    if min(args.concurrency) < 1 or args.keys < 1 or args.rounds < 1:
        p.error("--concurrency, --keys and --rounds must be at least 1")
    if args.rate <= 0 or args.duration <= 0 or args.check_seconds <= 0:
        p.error("--rate, --duration and --check-seconds must be positive")
    return args


def main() -> int:
    args = parse_args()
    return bench_main("ratelimit", args.json, lambda: run(args), lambda r: print_report(r, args))


if __name__ == "__main__":
    sys.exit(main())
