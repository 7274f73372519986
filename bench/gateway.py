"""The gateway's own cost: the latency it adds and the throughput it keeps.

One fake shard (a zero-cost engine) and one gateway routed to it run on loopback ports.
The same load goes first straight to the shard, then through the gateway; the difference
is what the gateway adds. Open-loop phases send at a fixed rate whatever the responses do,
so a slow server shows as queueing in the latency; closed-loop phases find the maximum
rate. Run ``python bench/gateway.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import uvloop

from _common import (
    LOOPBACK,
    MODEL,
    BenchError,
    Child,
    CpuMeter,
    Processes,
    bench_key,
    free_ports,
    listen_args,
    percentile,
    print_table,
    stop_on_sigterm,
    verdict,
    wait_ready,
    write_json,
)

ADDED_P50_TARGET_MS = 1.0
ADDED_P99_TARGET_MS = 5.0
DEFAULT_RATE = 500.0
LATE_WARNING_MS = 10.0
OTHER_CPU_WARNING = 15.0
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Endpoint:
    """Where a phase sends its requests: straight to the shard, or through the gateway."""

    name: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Stack:
    shard: Child
    gateway: Child
    direct: Endpoint
    through_gateway: Endpoint


@dataclass(frozen=True)
class Sample:
    """One request: when it should have gone, when it went and when it was done."""

    due: float
    sent: float
    done: float
    error: str | None


@dataclass
class PhaseResult:
    phase: str
    path: str
    mode: str  # "open" (fixed rate) or "closed" (fixed concurrency)
    target_rate: float | None
    concurrency: int | None
    duration_s: float
    requests: int
    ok: int
    errors: int
    achieved_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    late_p99_ms: float
    cpu_percent: dict[str, float]
    gateway_cpu_us_per_request: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)


# -- the load generator -----------------------------------------------------------------


def chat_body(stream: bool, max_tokens: int) -> bytes:
    payload: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": max_tokens,
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


async def call(
    session: aiohttp.ClientSession, endpoint: Endpoint, body: bytes, stream: bool
) -> str | None:
    """Send one request and read the whole response; None if it went well, else why not."""
    try:
        async with session.post(endpoint.url, data=body, headers=endpoint.headers) as response:
            content = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__
    if response.status != 200:
        return f"HTTP {response.status}"
    if stream and not content.rstrip().endswith(b"data: [DONE]"):
        return "stream cut"
    return None


Send = Callable[[], Awaitable[str | None]]


async def timed(send: Send, due: float) -> Sample:
    sent = time.perf_counter()
    error = await send()
    return Sample(due, sent, time.perf_counter(), error)


async def open_loop(send: Send, rate: float, duration_s: float) -> list[Sample]:
    """Start a request every 1/rate seconds, on a fixed schedule that never waits for answers.

    When the generator falls behind it sends the overdue requests at once, and their
    latency counts from when they were due, so its own lateness is not hidden.
    """
    count = max(1, round(rate * duration_s))
    start = time.perf_counter()
    tasks = []
    async with asyncio.TaskGroup() as group:  # on Ctrl-C, cancels what is in flight
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(group.create_task(timed(send, due)))
    return [task.result() for task in tasks]


async def closed_loop(send: Send, concurrency: int, duration_s: float) -> list[Sample]:
    """``concurrency`` workers, each sending its next request as soon as the last is done."""
    deadline = time.perf_counter() + duration_s

    async def worker() -> list[Sample]:
        samples = []
        while time.perf_counter() < deadline:
            samples.append(await timed(send, time.perf_counter()))
        return samples

    async with asyncio.TaskGroup() as group:
        workers = [group.create_task(worker()) for _ in range(concurrency)]
    return [s for w in workers for s in w.result()]


# -- phases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    phase: str
    stream: bool
    max_tokens: int
    rate: float | None = None  # open loop when set
    concurrency: int | None = None  # closed loop otherwise
    duration_s: float = 10.0


async def run_phase(
    session: aiohttp.ClientSession, stack: Stack, endpoint: Endpoint, load: Load
) -> PhaseResult:
    body = chat_body(load.stream, load.max_tokens)

    def send() -> Awaitable[str | None]:
        return call(session, endpoint, body, load.stream)

    meter = CpuMeter(
        {"generator": psutil.Process(), "gateway": stack.gateway.ps, "shard": stack.shard.ps}
    )
    if load.rate is not None:
        samples = await open_loop(send, load.rate, load.duration_s)
    else:
        samples = await closed_loop(send, load.concurrency or 1, load.duration_s)
    cpu_used, cpu_percent = meter.stop()
    return summarize(load, endpoint.name, samples, cpu_used, cpu_percent)


def summarize(
    load: Load,
    path: str,
    samples: list[Sample],
    cpu_used: dict[str, float],
    cpu_percent: dict[str, float],
) -> PhaseResult:
    ok = [s for s in samples if s.error is None]
    start = min(s.due for s in samples)
    span = max(s.done for s in samples) - start
    latencies = [1000 * (s.done - s.due) for s in ok]
    per_request = None
    if path == "gateway":
        per_request = 1e6 * cpu_used["gateway"] / len(samples)
    return PhaseResult(
        phase=load.phase,
        path=path,
        mode="open" if load.rate is not None else "closed",
        target_rate=load.rate,
        concurrency=load.concurrency,
        duration_s=round(span, 3),
        requests=len(samples),
        ok=len(ok),
        errors=len(samples) - len(ok),
        achieved_rate=len(ok) / span if span > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        late_p99_ms=percentile([1000 * (s.sent - s.due) for s in samples], 99),
        cpu_percent=cpu_percent,
        gateway_cpu_us_per_request=per_request,
        error_kinds=dict(Counter(s.error for s in samples if s.error is not None)),
    )


async def measure(stack: Stack, args: argparse.Namespace) -> list[PhaseResult]:
    connector = aiohttp.TCPConnector(limit=args.max_connections, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    endpoints = (stack.direct, stack.through_gateway)
    results = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for load in planned_loads(args):
            for endpoint in endpoints:
                if load.rate is not None and args.warmup > 0:
                    warm = Load(
                        "warm-up",
                        load.stream,
                        load.max_tokens,
                        rate=load.rate,
                        duration_s=args.warmup,
                    )
                    await run_phase(session, stack, endpoint, warm)
                progress(f"{load.phase}: {endpoint.name} ...")
                results.append(await run_phase(session, stack, endpoint, load))
    return results


def planned_loads(args: argparse.Namespace) -> list[Load]:
    loads = [
        Load("non-streaming", False, args.max_tokens, rate=args.rate, duration_s=args.duration),
        Load(
            "streaming",
            True,
            args.stream_max_tokens,
            rate=args.stream_rate,
            duration_s=args.stream_duration,
        ),
        Load(
            "max throughput",
            False,
            args.max_tokens,
            concurrency=args.concurrency,
            duration_s=args.throughput_duration,
        ),
    ]
    return [load for load in loads if load.duration_s > 0]


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# -- the processes ----------------------------------------------------------------------


def start_stack(procs: Processes, workdir: Path, timeout_s: float) -> Stack:
    key = bench_key()
    shard_port, gateway_port = free_ports(2)
    shard_url = f"http://{LOOPBACK}:{shard_port}"
    gateway_url = f"http://{LOOPBACK}:{gateway_port}"
    shard_args = ["shard", "--engine", "fake", "--models", MODEL]
    shard = procs.start("shard", [*shard_args, *listen_args(shard_port, workdir / "shard")])
    gateway = procs.start(
        "gateway",
        ["gateway", "--shard", shard_url, *listen_args(gateway_port, workdir / "gateway")],
        env={"SHARDGATE_BOOTSTRAP_KEY": key},
    )
    wait_ready(shard, shard_url, timeout_s)
    wait_ready(gateway, gateway_url, timeout_s)
    json_headers = {"Content-Type": "application/json"}
    return Stack(
        shard=shard,
        gateway=gateway,
        direct=Endpoint("direct", shard_url + CHAT_PATH, json_headers),
        through_gateway=Endpoint(
            "gateway", gateway_url + CHAT_PATH, {**json_headers, "Authorization": f"Bearer {key}"}
        ),
    )


def run(args: argparse.Namespace) -> list[PhaseResult]:
    with (
        tempfile.TemporaryDirectory(prefix="shardgate-bench-gateway-") as tmp,
        Processes(Path(tmp)) as procs,
    ):
        progress("starting a fake shard and a gateway ...")
        stack = start_stack(procs, Path(tmp), args.ready_timeout)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(measure(stack, args))


# -- the report -------------------------------------------------------------------------


def added_latency(results: list[PhaseResult]) -> list[dict[str, Any]]:
    """Gateway minus direct, per open-loop phase; the targets apply to non-streaming."""
    rows: list[dict[str, Any]] = []
    for phase in dict.fromkeys(r.phase for r in results if r.mode == "open"):
        pair = {r.path: r for r in results if r.phase == phase}
        if "direct" not in pair or "gateway" not in pair:
            continue
        d, g = pair["direct"], pair["gateway"]
        p50, p99 = g.p50_ms - d.p50_ms, g.p99_ms - d.p99_ms
        row: dict[str, Any] = {
            "phase": phase,
            "rate": g.target_rate,
            "added_p50_ms": p50,
            "added_p99_ms": p99,
        }
        if phase == "non-streaming":
            row["p50_pass"] = p50 <= ADDED_P50_TARGET_MS
            row["p99_pass"] = p99 <= ADDED_P99_TARGET_MS
        rows.append(row)
    return rows


def print_report(results: list[PhaseResult], args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    load1, _, _ = os.getloadavg()
    print(f"\nshardgate gateway benchmark: a fake shard ({MODEL}) and one gateway, on loopback")
    print(
        f"load generator: aiohttp + uvloop, one process, at most {args.max_connections} "
        f"pooled connections"
    )
    print(
        f"note: the generator, the gateway and the shard share {cores} CPU cores and nothing "
        f"is pinned, so every figure includes their contention (load average now {load1:.2f})"
    )
    print_open_loop(results)
    added = added_latency(results)
    print_added(added)
    print_closed_loop(results)
    print_cpu(results)
    warnings = load_warnings(results)
    for line in warnings:
        print(f"WARNING: {line}")
    return {
        "machine": {"cpu_cores": cores, "load_average_1m": load1},
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "phases": [asdict(r) for r in results],
        "added_latency": added,
        "warnings": warnings,
    }


def print_open_loop(results: list[PhaseResult]) -> None:
    rows = [r for r in results if r.mode == "open"]
    if not rows:
        return
    print("\nOpen loop: a fixed request rate; latency from the scheduled send to the full response")
    print_table(
        [
            "phase",
            "path",
            "target/s",
            "achieved/s",
            "requests",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "late p99 ms",
        ],
        [
            [
                r.phase,
                r.path,
                f"{r.target_rate:.0f}",
                f"{r.achieved_rate:.1f}",
                r.requests,
                r.errors,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.late_p99_ms,
            ]
            for r in rows
        ],
    )
    print("('late': how far behind its schedule the generator sent; it is part of the latency)")
    print_errors(rows)


def print_added(added: list[dict[str, Any]]) -> None:
    if not added:
        return
    print("\nLatency added by the gateway (gateway minus direct)")
    rows = []
    for row in added:
        p50_result = p99_result = "(no target)"
        if "p50_pass" in row:
            p50_result = f"{verdict(row['p50_pass'])} (target <= {ADDED_P50_TARGET_MS:g} ms)"
            p99_result = f"{verdict(row['p99_pass'])} (target <= {ADDED_P99_TARGET_MS:g} ms)"
        rows.append(
            [
                row["phase"],
                f"{row['rate']:.0f}",
                row["added_p50_ms"],
                p50_result,
                row["added_p99_ms"],
                p99_result,
            ]
        )
    print_table(
        ["phase", "rate/s", "added p50 ms", "p50 result", "added p99 ms", "p99 result"], rows
    )
    print(f"(the targets are set for {DEFAULT_RATE:g} req/s of non-streaming requests)")


def print_closed_loop(results: list[PhaseResult]) -> None:
    rows = [r for r in results if r.mode == "closed"]
    if not rows:
        return
    print(f"\nMax throughput: closed loop, {rows[0].concurrency} connections, non-streaming")
    print_table(
        ["path", "req/s", "requests", "errors", "p50 ms", "p99 ms"],
        [
            [r.path, f"{r.achieved_rate:.0f}", r.requests, r.errors, r.p50_ms, r.p99_ms]
            for r in rows
        ],
    )
    pair = {r.path: r for r in rows}
    if "direct" in pair and "gateway" in pair and pair["direct"].achieved_rate > 0:
        share = pair["gateway"].achieved_rate / pair["direct"].achieved_rate
        print(f"through the gateway: {100 * share:.0f}% of the direct rate")
    print_errors(rows)


def print_cpu(results: list[PhaseResult]) -> None:
    print("\nCPU per phase, in % of one core ('other': processes outside the benchmark)")
    print_table(
        ["phase", "path", "generator", "gateway", "shard", "other", "gateway us/request"],
        [
            [
                r.phase,
                r.path,
                *(f"{r.cpu_percent[k]:.0f}" for k in ("generator", "gateway", "shard", "other")),
                "-"
                if r.gateway_cpu_us_per_request is None
                else f"{r.gateway_cpu_us_per_request:.0f}",
            ]
            for r in results
        ],
    )


def print_errors(rows: list[PhaseResult]) -> None:
    for r in rows:
        if r.error_kinds:
            kinds = ", ".join(f"{k}: {n}" for k, n in r.error_kinds.items())
            print(f"errors in {r.phase} / {r.path}: {kinds}")


def load_warnings(results: list[PhaseResult]) -> list[str]:
    """Where the generator or the machine, not the gateway, may have shaped the figures."""
    lines = []
    for r in results:
        where = f"{r.phase} / {r.path}"
        if r.mode == "open" and r.target_rate and r.achieved_rate < 0.95 * r.target_rate:
            who = (
                "the load generator (sharing the cores with the shard) cannot sustain it"
                if r.path == "direct"
                else "the gateway path cannot sustain it here"
            )
            lines.append(
                f"{where} reached {r.achieved_rate:.0f} of the target "
                f"{r.target_rate:.0f} req/s: {who}; its figures are for the rate reached"
            )
        if r.mode == "open" and r.late_p99_ms > LATE_WARNING_MS:
            lines.append(
                f"{where}: the generator fell up to {r.late_p99_ms:.0f} ms (p99) behind "
                f"its schedule; that lateness is counted in the latency"
            )
        if r.cpu_percent["generator"] > 90:
            lines.append(
                f"{where}: the generator used {r.cpu_percent['generator']:.0f}% of a "
                f"core and may itself be the limit"
            )
        if r.cpu_percent["other"] > OTHER_CPU_WARNING:
            lines.append(
                f"{where}: other processes used {r.cpu_percent['other']:.0f}% of a "
                f"core, which disturbs the figures"
            )
    return lines


# -- the command line -------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="open-loop rate of non-streaming requests, per second (default 500)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds of each non-streaming open-loop phase (default 20)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=8, help="max_tokens of non-streaming requests (default 8)"
    )
    p.add_argument(
        "--stream-rate",
        type=float,
        default=200.0,
        help="open-loop rate of streaming requests, per second (default 200)",
    )
    p.add_argument(
        "--stream-duration",
        type=float,
        default=10.0,
        help="seconds of each streaming phase; 0 skips them (default 10)",
    )
    p.add_argument(
        "--stream-max-tokens",
        type=int,
        default=16,
        help="max_tokens of streaming requests (default 16)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="connections of the closed-loop max-throughput phases (default 32)",
    )
    p.add_argument(
        "--throughput-duration",
        type=float,
        default=10.0,
        help="seconds of each max-throughput phase; 0 skips them (default 10)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of unmeasured load before each open-loop phase (default 2)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="the generator's connection pool size (default 256)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds before a request counts as an error (default 30)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the shard and gateway to be ready (default 60)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.stream_rate <= 0 or args.concurrency < 1:
        p.error("rates must be positive and --concurrency at least 1")
    args.max_connections = max(args.max_connections, args.concurrency)
    return args


def main() -> int:
    args = parse_args()
    stop_on_sigterm()
    try:
        results = run(args)
    except KeyboardInterrupt:
        print(
            "\ninterrupted; every process the benchmark started has been stopped", file=sys.stderr
        )
        return 130
    except BenchError as exc:
        print(f"gateway benchmark failed: {exc}", file=sys.stderr)
        return 1
    figures = print_report(results, args)
    if args.json:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
