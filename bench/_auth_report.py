"""What bench/auth.py found: per-case latency, what each adds to the baseline, the target."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

from _common import machine, print_table, print_warnings, run_info, verdict

WARM_P50_TARGET_US = 100.0
OTHER_CPU_WARNING = 15.0
MIN_CPU_WALL_S = 1.0  # CPU times tick every 10 ms: shorter spans give no useful share
LEVELS = {
    "verifier": "KeyVerifier.verify(secret)",
    "stage": "the Authenticate stage: header to principal, then a fixed response",
}


@dataclass
class CaseResult:
    level: str
    case: str
    store: str
    calls: int
    p50_us: float
    p95_us: float
    p99_us: float
    max_us: float
    store_lookups_per_call: float
    wall_s: float  # the measured rounds took, CPU readings included
    cpu_s: dict[str, float]  # this process, the PostgreSQL backends, everything else

    @property
    def other_cpu_percent(self) -> float:
        """CPU used outside this benchmark (and its database server) meanwhile, in % of one
        core; NaN when the calls took too little time for the CPU clocks to tell."""
        if self.wall_s < MIN_CPU_WALL_S:
            return math.nan
        return 100 * self.cpu_s["other"] / self.wall_s


def added(results: list[CaseResult]) -> list[dict[str, Any]]:
    """Each case against the baseline of its level."""
    rows = []
    for level in LEVELS:
        cases = [r for r in results if r.level == level]
        base = next((r for r in cases if r.store == "-"), None)
        if base is None:
            continue
        for r in cases:
            rows.append(
                {
                    "level": level,
                    "case": r.case,
                    "store": r.store,
                    "added_p50_us": r.p50_us - base.p50_us,
                    "added_p99_us": r.p99_us - base.p99_us,
                    "p50_ratio": r.p50_us / base.p50_us if base.p50_us > 0 else math.nan,
                }
            )
    return rows


def print_report(
    results: list[CaseResult], postgres_skipped: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    cores, load1 = machine()
    print(
        f"\nshardgate authentication benchmark: {args.keys} keys round-robin, "
        f"{args.calls} measured calls per case after {args.warmup} warm-up calls, "
        f"in {args.rounds} interleaved rounds"
    )
    print(
        f"in-process, one uvloop event loop; {cores} CPU cores (load average now {load1:.2f}); "
        f"warm cache_ttl_s {args.warm_ttl:g}, cold cache_ttl_s 0"
    )
    extra = added(results)
    for level, what in LEVELS.items():
        print_level(level, what, results, extra)
    print(
        f"('added': minus the stub baseline of the same table; 'other cpu %': CPU used "
        f"outside this process and its PostgreSQL backends, in % of one core, '-' where the "
        f"calls took under {MIN_CPU_WALL_S:g} s; over all cases: "
        f"{overall_other_cpu(results):.0f}%)"
    )
    if postgres_skipped:
        print(f"\nPostgreSQL was not measured: {postgres_skipped}")
    targets = check_target(results)
    print_target(targets)
    warnings = disturbance_warnings(results)
    print_warnings(warnings)
    return {
        **run_info(args, cores, load1),
        "cases": [asdict(r) | {"other_cpu_percent": r.other_cpu_percent} for r in results],
        "added_latency": extra,
        "targets": targets,
        "postgres_skipped": postgres_skipped,
        "warnings": warnings,
    }


def print_level(
    level: str, what: str, results: list[CaseResult], extra: list[dict[str, Any]]
) -> None:
    rows = [r for r in results if r.level == level]
    if not rows:
        return
    by_case = {(a["case"], a["store"]): a for a in extra if a["level"] == level}
    print(f"\n{what}: microseconds per call")
    table = []
    for r in rows:
        a = by_case.get((r.case, r.store), {})
        table.append(
            [
                r.case,
                r.store,
                r.calls,
                r.p50_us,
                r.p95_us,
                r.p99_us,
                a.get("added_p50_us", math.nan),
                f"{a['p50_ratio']:.1f}x" if "p50_ratio" in a else "-",
                f"{r.store_lookups_per_call:.2f}",
                r.other_cpu_percent,
            ]
        )
    print_table(
        [
            "case",
            "store",
            "calls",
            "p50 us",
            "p95 us",
            "p99 us",
            "added p50",
            "p50 x base",
            "lookups/call",
            "other cpu %",
        ],
        table,
    )


def check_target(results: list[CaseResult]) -> list[dict[str, Any]]:
    """The warm p50 itself (not only what it adds to the stub) against the target."""
    return [
        {
            "level": r.level,
            "p50_us": r.p50_us,
            "target_us": WARM_P50_TARGET_US,
            "pass": r.p50_us < WARM_P50_TARGET_US,
        }
        for r in results
        if r.case == "warm cache"
    ]


def print_target(targets: list[dict[str, Any]]) -> None:
    if not targets:
        return
    print(f"\nTarget: authentication with a warm key cache under {WARM_P50_TARGET_US:g} us p50")
    for t in targets:
        print(
            f"{verdict(t['pass'])}  {t['level']}: warm p50 {t['p50_us']:.2f} us "
            f"(the whole call, so also an upper bound on what it adds)"
        )


def overall_other_cpu(results: list[CaseResult]) -> float:
    wall = sum(r.wall_s for r in results)
    return 100 * sum(r.cpu_s["other"] for r in results) / wall if wall > 0 else math.nan


def disturbance_warnings(results: list[CaseResult]) -> list[str]:
    lines = []
    for r in results:
        if r.other_cpu_percent > OTHER_CPU_WARNING:
            lines.append(
                f"{r.level} / {r.case} {r.store}: other processes used "
                f"{r.other_cpu_percent:.0f}% of a core meanwhile, which disturbs its figures"
            )
    overall = overall_other_cpu(results)
    if overall > OTHER_CPU_WARNING:
        lines.append(
            f"other processes used {overall:.0f}% of a core during the measured calls, "
            f"which disturbs the figures"
        )
    return lines
