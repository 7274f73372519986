"""What authenticating an API key costs per request: warm key cache, and cold on each store.

Everything runs in this process, in one asyncio loop (uvloop, like the gateway). The same
few keys (100 by default, round-robin) are verified by ``KeyVerifier.verify`` with a warm
cache, and with the cache off (``cache_ttl_s=0``, every call asks the store) on SQLite (a
file in a temporary folder) and on PostgreSQL (a throwaway database, dropped afterwards).
The baseline is authentication with nothing to do: a stub verifier that returns a fixed
principal from a dict. The same four are then timed through the real ``Authenticate``
stage, with a ``RequestContext`` around a Starlette ``Request`` carrying the Bearer header.
Cases are interleaved in rounds, so that load from elsewhere falls on all of them alike.
Run ``python bench/auth.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import asyncpg
import psutil
import uvloop
from starlette.requests import Request
from starlette.responses import Response

from _auth_report import CaseResult, print_report
from _common import CpuMeter, bench_main, percentile, progress
from shardgate.admin.service import OPERATOR, AdminService
from shardgate.identity import KeyVerifier
from shardgate.pipeline.auth import Authenticate
from shardgate.pipeline.context import RequestContext
from shardgate.store import ALL, KeyStore, Principal, SecretMatch, SqlStore, open_store

DEFAULT_POSTGRES = os.environ.get(
    "SHARDGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
TENANT = "bench"
RESPONSE = Response(status_code=204)


class CountingStore:
    """The two store calls ``KeyVerifier`` makes, passed on and counted."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.lookups = 0

    async def find_secret(self, digest: str) -> SecretMatch | None:
        self.lookups += 1
        return await self._store.find_secret(digest)

    async def touch_keys(self, last_used: Mapping[str, float]) -> None:
        await self._store.touch_keys(last_used)


class FixedVerifier:
    """The baseline: a verifier with nothing to do but a dict lookup."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self._principals = principals

    async def verify(self, secret: str) -> Principal:
        return self._principals[secret]


@dataclass
class Case:
    level: str  # "verifier" (KeyVerifier.verify) or "stage" (the Authenticate stage)
    name: str
    store: str
    make_arg: Callable[[int], Any]  # built before the clock starts
    call: Callable[[Any], Awaitable[object]]
    counter: CountingStore | None = None  # None: the stub, which has no store
    samples_us: list[float] = field(default_factory=list)
    wall_s: float = 0.0  # of the measured rounds, CPU readings included
    cpu_s: dict[str, float] = field(
        default_factory=lambda: {"bench": 0.0, "db server": 0.0, "other": 0.0}
    )
    lookups: int = 0


@dataclass(frozen=True)
class Keyring:
    """Where the keys live and their secrets."""

    store: CountingStore
    secrets: list[str]
    database: str  # the last part of its URL: for PostgreSQL, its name


# -- the stores -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_store(url: str, keys: int) -> AsyncIterator[Keyring]:
    """A migrated store at ``url`` holding one tenant and ``keys`` user keys."""
    store = await open_store(url)
    try:
        service = AdminService(store)
        await service.create_tenant(OPERATOR, TENANT)
        issued = [
            await service.create_key(
                OPERATOR, tenant=TENANT, role="user", endpoints=[ALL], models=[ALL]
            )
            for _ in range(keys)
        ]
        yield Keyring(CountingStore(store), [k.secret for k in issued], url.rsplit("/", 1)[-1])
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def postgres_store(admin_url: str, keys: int) -> AsyncIterator[Keyring]:
    """``bench_store`` in a new PostgreSQL database, dropped on the way out."""
    name = f"shardgate_bench_{secrets.token_hex(4)}"
    await _postgres_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        async with bench_store(admin_url.rsplit("/", 1)[0] + "/" + name, keys) as keyring:
            yield keyring
    finally:
        await _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _postgres_admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- the cases --------------------------------------------------------------------------


def verifier_cases(
    sqlite: Keyring, postgres: Keyring | None, warm_ttl_s: float
) -> list[tuple[str, str, Keyring, FixedVerifier | KeyVerifier]]:
    principal = Principal("bench-key", TENANT, "user", frozenset({ALL}), frozenset({ALL}))
    stub = FixedVerifier(dict.fromkeys(sqlite.secrets, principal))
    # KeyVerifier needs only find_secret and touch_keys of its store.
    cases = [
        ("baseline (stub)", "-", sqlite, stub),
        ("warm cache", "sqlite", sqlite, KeyVerifier(cast(KeyStore, sqlite.store), warm_ttl_s)),
        ("cold", "sqlite", sqlite, KeyVerifier(cast(KeyStore, sqlite.store), 0)),
    ]
    if postgres is not None:
        cases.append(
            ("cold", "postgresql", postgres, KeyVerifier(cast(KeyStore, postgres.store), 0))
        )
    return cases


def build_cases(sqlite: Keyring, postgres: Keyring | None, warm_ttl_s: float) -> list[Case]:
    cases = []
    for name, store, keyring, verifier in verifier_cases(sqlite, postgres, warm_ttl_s):
        keys = keyring.secrets
        counter = keyring.store if store != "-" else None
        cases.append(
            Case("verifier", name, store, lambda i, k=keys: k[i % len(k)], verifier.verify, counter)
        )
    # New verifiers, each with a cache of its own, for the same cases through the stage.
    for name, store, keyring, verifier in verifier_cases(sqlite, postgres, warm_ttl_s):
        scopes = [_scope(secret) for secret in keyring.secrets]
        stage = Authenticate(cast(KeyVerifier, verifier))
        counter = keyring.store if store != "-" else None
        cases.append(
            Case(
                "stage",
                name,
                store,
                lambda i, s=scopes: RequestContext(Request(s[i % len(s)]), "chat.completions"),
                lambda ctx, stage=stage: stage(ctx, _respond),
                counter,
            )
        )
    return cases


def _scope(secret: str) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {secret}".encode()),
    ]
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": headers,
    }


async def _respond(ctx: RequestContext) -> Response:
    return RESPONSE


# -- timing -----------------------------------------------------------------------------


async def time_calls(case: Case, first: int, count: int) -> list[float]:
    """Microseconds per call; only the awaited call is inside the clock."""
    took = []
    for i in range(first, first + count):
        arg = case.make_arg(i)
        start = time.perf_counter_ns()
        await case.call(arg)
        took.append((time.perf_counter_ns() - start) / 1000)
    return took


async def warm_up(cases: list[Case], calls: int) -> None:
    for case in cases:
        progress(f"warm-up: {case.level} / {case.name} {case.store} ({calls} calls) ...")
        await time_calls(case, 0, calls)


async def run_rounds(
    cases: list[Case], args: argparse.Namespace, db_servers: dict[str, psutil.Process]
) -> None:
    """Measure the cases in interleaved rounds, and the CPU used meanwhile."""
    calls, rounds = args.calls, args.rounds
    per_round = [calls // rounds + (r < calls % rounds) for r in range(rounds)]
    done = 0
    for number, count in enumerate(per_round, 1):
        progress(f"round {number}/{rounds}: {count} calls per case ...")
        for case in cases:
            lookups_before = case.counter.lookups if case.counter else 0
            started = time.perf_counter()
            meter = CpuMeter({"bench": psutil.Process(), **db_servers})
            case.samples_us += await time_calls(case, args.warmup + done, count)
            used, _ = meter.stop()
            case.wall_s += time.perf_counter() - started
            case.cpu_s["bench"] += used["bench"]
            case.cpu_s["db server"] += sum(used[name] for name in db_servers)
            case.cpu_s["other"] += used["other"]
            case.lookups += (case.counter.lookups if case.counter else 0) - lookups_before
        done += count


def summarize(case: Case) -> CaseResult:
    samples = case.samples_us
    return CaseResult(
        level=case.level,
        case=case.name,
        store=case.store,
        calls=len(samples),
        p50_us=percentile(samples, 50),
        p95_us=percentile(samples, 95),
        p99_us=percentile(samples, 99),
        max_us=max(samples, default=math.nan),
        store_lookups_per_call=case.lookups / len(samples) if samples else math.nan,
        wall_s=case.wall_s,
        cpu_s=dict(case.cpu_s),
    )


async def postgres_backends(admin_url: str, database: str) -> dict[str, psutil.Process]:
    """The server processes serving ``database``, so that their CPU is not counted as
    "other" (the server is on this machine)."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await conn.close()
    backends = {}
    for row in rows:
        with contextlib.suppress(psutil.Error):
            backends[f"postgres {row['pid']}"] = psutil.Process(row["pid"])
    return backends


async def measure(args: argparse.Namespace, workdir: Path) -> tuple[list[CaseResult], str | None]:
    # SIGTERM cancels the run at its next await, as Ctrl-C does under asyncio.Runner: a
    # query is never cut off halfway, and the databases are still closed and dropped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    postgres_skipped = None
    async with contextlib.AsyncExitStack() as stack:
        progress(f"SQLite: a new database in {workdir}, {args.keys} keys ...")
        sqlite = await stack.enter_async_context(
            bench_store(f"sqlite:///{workdir / 'auth.db'}", args.keys)
        )
        postgres = None
        if args.postgres:
            progress(
                f"PostgreSQL: a throwaway database beside {args.postgres}, {args.keys} keys ..."
            )
            try:
                postgres = await stack.enter_async_context(postgres_store(args.postgres, args.keys))
            except (OSError, asyncpg.PostgresError) as exc:
                postgres_skipped = f"{type(exc).__name__}: {exc}"
                progress(f"PostgreSQL skipped: {postgres_skipped}")
        else:
            postgres_skipped = "--postgres was empty"
        cases = build_cases(sqlite, postgres, args.warm_ttl)
        await warm_up(cases, args.warmup)
        db_servers = {}
        if postgres is not None:
            db_servers = await postgres_backends(args.postgres, postgres.database)
        await run_rounds(cases, args, db_servers)
        progress("closing and dropping the databases ...")
    return [summarize(case) for case in cases], postgres_skipped


def run(args: argparse.Namespace) -> tuple[list[CaseResult], str | None]:
    with (
        tempfile.TemporaryDirectory(prefix="shardgate-bench-auth-") as tmp,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        try:
            return runner.run(measure(args, Path(tmp)))
        except asyncio.CancelledError:  # SIGTERM (see measure)
            raise KeyboardInterrupt from None


# -- the command line -------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--calls", type=int, default=5000, help="measured calls per case (default 5000)")
    p.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="unmeasured calls per case first; at least --keys (default 1000)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the measured calls are split into this many rounds, cases interleaved (default 5)",
    )
    p.add_argument(
        "--keys", type=int, default=100, help="distinct keys, used round-robin (default 100)"
    )
    p.add_argument(
        "--warm-ttl",
        type=float,
        default=3600.0,
        help="cache_ttl_s of the warm case, longer than the run (default 3600)",
    )
    p.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help="an existing PostgreSQL database to connect to while creating and dropping the "
        "throwaway one; '' skips PostgreSQL (default $SHARDGATE_TEST_POSTGRES or "
        "postgresql://postgres@127.0.0.1:5432/test)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.keys < 1 or args.rounds < 1 or args.calls < args.rounds:
        p.error("--keys and --rounds must be at least 1, and --calls at least --rounds")
    if args.warmup < args.keys:
        p.error("--warmup must be at least --keys, so that the warm case starts warm")
    return args


def main() -> int:
    args = parse_args()
    return bench_main("auth", args.json, lambda: run(args), lambda r: print_report(*r, args))


if __name__ == "__main__":
    sys.exit(main())
