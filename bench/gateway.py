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
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import uvloop

from _common import (
    LOOPBACK,
    MODEL,
    Child,
    CpuMeter,
    Processes,
    add_limit_options,
    bench_key,
    bench_main,
    free_ports,
    listen_args,
    percentile,
    progress,
    wait_ready,
)
from _gateway_report import DEFAULT_RATE, PhaseResult, print_report
from _load import Endpoint, Sample, call, chat_body, closed_loop, open_loop

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Stack:
    shard: Child
    gateway: Child
    direct: Endpoint
    through_gateway: Endpoint


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
        # Without the content filter: its models cost tens of ms per prompt and are measured
        # by bench/safety.py; this measures every other stage (and the fake engine's
        # "fake fake" would read as harmful to the output monitor).
        env={"SHARDGATE_BOOTSTRAP_KEY": key, "SHARDGATE_SAFETY__ENABLED": "false"},
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


# -- the command line -------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
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
    add_limit_options(p, 30.0, 60.0, "the shard and gateway to be ready")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.stream_rate <= 0 or args.concurrency < 1:
        p.error("rates must be positive and --concurrency at least 1")
    args.max_connections = max(args.max_connections, args.concurrency)
    return args


def main() -> int:
    args = parse_args()
    return bench_main("gateway", args.json, lambda: run(args), lambda r: print_report(r, args))


if __name__ == "__main__":
    sys.exit(main())
