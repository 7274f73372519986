"""What bench/gateway.py found: phase results, the added latency, and how they print."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import MODEL, machine, print_table, print_warnings, run_info, verdict

ADDED_P50_TARGET_MS = 1.0
ADDED_P99_TARGET_MS = 5.0
DEFAULT_RATE = 500.0  # the rate the targets are set for
LATE_WARNING_MS = 10.0
OTHER_CPU_WARNING = 15.0


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
    cores, load1 = machine()
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
    print_warnings(warnings)
    return {
        **run_info(args, cores, load1),
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
