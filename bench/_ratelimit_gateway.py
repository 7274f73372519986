"""The requests part of bench/ratelimit.py: what the limiter adds to a request through a
real gateway.

One fake shard and two gateways routed to it: one counting in process (``memory``), one in
Redis under the run's namespace. Each gets, through its admin API, a tenant with a key that
has no limits and a tenant with a key whose limits never refuse (the tenant limited too,
unless ``--key-limits-only``). The configurations take turns at the same open-loop load of
non-streaming chat completions, in rounds, each after a short unmeasured warm-up.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

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
    progress,
    wait_ready,
)
from _load import Endpoint, Sample, call, chat_body, open_loop
from _ratelimit_report import RequestResult

CHAT_PATH = "/v1/chat/completions"
# Never refuse: 500 req/s of ~40 tokens each is 30,000 requests and 1.2M tokens a minute.
LIMITS = {"rpm": 1_000_000, "tpm": 1_000_000_000}
LIMIT_HEADER = "x-ratelimit-limit-requests"
# Per gateway (its counter backend): name, role, and whether the key is limited.
CONFIGS = {
    "memory": [("no limits", "baseline", False), ("in-process counters", "limited", True)],
    "redis": [("no limits, Redis gateway", "control", False), ("Redis counters", "limited", True)],
}


@dataclass(frozen=True)
class RedisTarget:
    """Where the Redis counters go: this run's own namespace of the server at ``url``."""

    url: str
    namespace: str
    server: psutil.Process | None  # the redis-server process, when it runs on this machine
    version: str

    def describe(self) -> dict[str, Any]:
        pid = self.server.pid if self.server else None
        return {"url": self.url, "namespace": self.namespace, "version": self.version, "pid": pid}


@dataclass(frozen=True)
class Stack:
    shard: Child
    gateways: dict[str, tuple[Child, str]]  # counter backend -> (process, base URL)
    admin_key: str
    redis: RedisTarget | None


@dataclass(frozen=True)
class Config:
    name: str
    role: str  # "baseline", "limited" or "control" (a baseline on the other gateway)
    counters: str  # the gateway's counter backend
    limited: bool
    gateway: Child
    endpoint: Endpoint


@dataclass
class Tally:
    rounds: list[list[Sample]] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: Counter[str] = field(default_factory=Counter)


def start_stack(
    procs: Processes, workdir: Path, args: argparse.Namespace, target: RedisTarget | None
) -> Stack:
    admin_key = bench_key()
    backends = ["memory", "redis"] if target else ["memory"]
    shard_port, *ports = free_ports(1 + len(backends))
    shard_url = f"http://{LOOPBACK}:{shard_port}"
    shard_args = ["shard", "--engine", "fake", "--models", MODEL]
    shard = procs.start("shard", [*shard_args, *listen_args(shard_port, workdir / "shard")])
    gateways = {}
    for backend, port in zip(backends, ports, strict=True):
        env = {
            "SHARDGATE_BOOTSTRAP_KEY": admin_key,
            "SHARDGATE_COUNTERS__BACKEND": backend,
            "SHARDGATE_SAFETY__ENABLED": "false",  # its cost is bench/safety.py's
        }
        if target is not None and backend == "redis":
            env["SHARDGATE_COUNTERS__REDIS_URL"] = target.url
            env["SHARDGATE_COUNTERS__NAMESPACE"] = target.namespace
        name = f"gateway ({backend} counters)"
        data_dir = workdir / f"gateway-{backend}"
        argv = ["gateway", "--shard", shard_url, *listen_args(port, data_dir)]
        gateways[backend] = (procs.start(name, argv, env=env), f"http://{LOOPBACK}:{port}")
    wait_ready(shard, shard_url, args.ready_timeout)
    for child, url in gateways.values():
        wait_ready(child, url, args.ready_timeout)
    return Stack(shard, gateways, admin_key, target)


# -- keys, through the admin API --------------------------------------------------------


async def _post(
    session: aiohttp.ClientSession, url: str, admin_key: str, body: dict[str, Any]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with session.post(url, json=body, headers=headers) as response:
        payload: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise BenchError(f"POST {url}: HTTP {response.status}: {payload}")
    return payload


async def issue_key(
    session: aiohttp.ClientSession, base_url: str, admin_key: str, tenant: str, limits: str
) -> str:
    """A new tenant and a user key in it; ``limits``: "none", "key" or "key+tenant"."""
    tenant_body: dict[str, Any] = {"name": tenant}
    if limits == "key+tenant":
        tenant_body["limits"] = LIMITS
    await _post(session, base_url + "/admin/v1/tenants", admin_key, tenant_body)
    key_body: dict[str, Any] = {"tenant": tenant, "endpoints": ["*"], "models": ["*"]}
    if limits != "none":
        key_body["limits"] = LIMITS
    created = await _post(session, base_url + "/admin/v1/keys", admin_key, key_body)
    return str(created["key"])


async def make_configs(
    session: aiohttp.ClientSession, stack: Stack, args: argparse.Namespace
) -> list[Config]:
    limits = "key" if args.key_limits_only else "key+tenant"
    configs = []
    for backend, (child, base_url) in stack.gateways.items():
        for name, role, limited in CONFIGS[backend]:
            tenant = "bench-limited" if limited else "bench-open"
            key = await issue_key(
                session, base_url, stack.admin_key, tenant, limits if limited else "none"
            )
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
            endpoint = Endpoint(name, base_url + CHAT_PATH, headers)
            configs.append(Config(name, role, backend, limited, child, endpoint))
    return configs


async def check_config(session: aiohttp.ClientSession, config: Config, body: bytes) -> None:
    """One request first: it must succeed, and carry rate-limit headers if and only if its
    key is limited (so the limiter ran for it, and only for it)."""
    endpoint = config.endpoint
    async with session.post(endpoint.url, data=body, headers=endpoint.headers) as response:
        await response.read()
        advertised = LIMIT_HEADER in response.headers
    if response.status != 200:
        raise BenchError(f"{config.name}: a first request got HTTP {response.status}")
    if advertised != config.limited:
        said = "carried" if advertised else "lacked"
        raise BenchError(f"{config.name}: a first request {said} the {LIMIT_HEADER} header")


# -- the measurement --------------------------------------------------------------------


async def measure_requests(stack: Stack, args: argparse.Namespace) -> list[RequestResult]:
    connector = aiohttp.TCPConnector(limit=args.max_connections, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    body = chat_body(False, args.max_tokens)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        configs = await make_configs(session, stack, args)
        for config in configs:
            await check_config(session, config, body)
        tallies = {config.name: Tally() for config in configs}
        for number in range(args.rounds):
            shift = number % len(configs)  # each round starts with the next configuration
            progress(
                f"requests: round {number + 1}/{args.rounds}, {args.duration:g} s for each of "
                f"{len(configs)} configurations at {args.rate:g} req/s ..."
            )
            for config in configs[shift:] + configs[:shift]:
                await measure_one(session, stack, config, body, args, tallies[config.name])
    return [summarize(config, tallies[config.name], args.rate) for config in configs]


async def measure_one(
    session: aiohttp.ClientSession,
    stack: Stack,
    config: Config,
    body: bytes,
    args: argparse.Namespace,
    tally: Tally,
) -> None:
    def send() -> Any:
        return call(session, config.endpoint, body, False)

    if args.warmup > 0:
        await open_loop(send, args.rate, args.warmup)
    processes = {
        "generator": psutil.Process(),
        "gateway": config.gateway.ps,
        "shard": stack.shard.ps,
    }
    if stack.redis is not None and stack.redis.server is not None:
        processes["redis"] = stack.redis.server
    meter = CpuMeter(processes)
    started = time.perf_counter()
    tally.rounds.append(await open_loop(send, args.rate, args.duration))
    tally.wall_s += time.perf_counter() - started
    used, _ = meter.stop()
    tally.cpu_s.update(used)


def summarize(config: Config, tally: Tally, rate: float) -> RequestResult:
    samples = [s for round_ in tally.rounds for s in round_]
    ok = [s for s in samples if s.error is None]
    span = sum(max(s.done for s in r) - min(s.due for s in r) for r in tally.rounds if r)
    per_round = [[1000 * (s.done - s.due) for s in r if s.error is None] for r in tally.rounds]
    latencies = [ms for r in per_round for ms in r]
    wall = tally.wall_s or 1.0
    return RequestResult(
        config=config.name,
        role=config.role,
        counters=config.counters,
        limited=config.limited,
        target_rate=rate,
        requests=len(samples),
        ok=len(ok),
        errors=len(samples) - len(ok),
        achieved_rate=len(ok) / span if span > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        late_p99_ms=percentile([1000 * (s.sent - s.due) for s in samples], 99),
        round_p50_ms=[percentile(r, 50) for r in per_round],
        round_p99_ms=[percentile(r, 99) for r in per_round],
        cpu_percent={name: round(100 * s / wall, 1) for name, s in tally.cpu_s.items()},
        cpu_us_per_request={
            name: 1e6 * tally.cpu_s[name] / len(samples) if samples else 0.0
            for name in ("gateway", "redis")
            if name in tally.cpu_s
        },
        error_kinds=dict(Counter(s.error for s in samples if s.error is not None)),
    )
