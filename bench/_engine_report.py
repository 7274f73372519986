"""What bench/engine.py found: its results, the targets, and how they are printed."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from _common import MODEL, machine, print_table, print_warnings, run_info, verdict

TARGET_CONCURRENCY = 16
TARGET_SPEEDUP = 5.0
TARGET_TTFT_P99_S = 2.0
OTHER_CPU_WARNING = 15.0


@dataclass
class BaselineResult:
    requests: int
    tokens: int
    seconds: float
    tokens_per_s: float
    per_request: list[dict[str, float]]
    cpu_percent: dict[str, float]


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    tokens: int
    seconds: float
    tokens_per_s: float
    speedup: float
    ttft_p50_s: float
    ttft_p99_s: float
    latency_p50_s: float
    tokens_per_request: float
    cpu_percent: dict[str, float]


def print_report(
    baseline: BaselineResult, levels: list[LevelResult], args: argparse.Namespace
) -> dict[str, Any]:
    cores, load1 = machine()
    sampling = f"temperature {args.temperature:g}" if args.temperature > 0 else "greedy"
    print(
        f"\nshardgate engine benchmark: {MODEL}, float32, {args.threads} torch threads, "
        f"{sampling}; {cores} CPU cores (load average now {load1:.2f})"
    )
    print_baseline(baseline, args)
    print_levels(levels, args)
    targets = check_targets(levels)
    print_targets(targets)
    warnings = disturbance_warnings(baseline, levels)
    print_warnings(warnings)
    return {
        **run_info(args, cores, load1),
        "baseline": asdict(baseline),
        "levels": [asdict(v) for v in levels],
        "targets": targets,
        "warnings": warnings,
    }


def print_baseline(baseline: BaselineResult, args: argparse.Namespace) -> None:
    print(
        f"\nBaseline: transformers model.generate in this process, one request at a time, "
        f"exactly {args.max_tokens} new tokens each"
    )
    rows: list[list[Any]] = [
        [str(i + 1), int(r["tokens"]), r["seconds"], r["tokens"] / r["seconds"]]
        for i, r in enumerate(baseline.per_request)
    ]
    rows.append(["total", baseline.tokens, baseline.seconds, baseline.tokens_per_s])
    print_table(["prompt", "new tokens", "seconds", "tokens/s"], rows)
    print(
        f"(CPU meanwhile: this process {baseline.cpu_percent['benchmark']:.0f}%, other "
        f"processes {baseline.cpu_percent['other']:.0f}% of one core)"
    )


def print_levels(levels: list[LevelResult], args: argparse.Namespace) -> None:
    print(
        f"\nShard through the gateway: streaming chat completions (openai AsyncOpenAI), "
        f"max_tokens {args.max_tokens}; per level {args.rounds} x concurrency requests, "
        f"concurrency of them in flight"
    )
    print_table(
        [
            "concurrency",
            "requests",
            "errors",
            "tokens",
            "tok/req",
            "wall s",
            "tokens/s",
            "x baseline",
            "TTFT p50 s",
            "TTFT p99 s",
            "latency p50 s",
            "shard cpu%",
            "other cpu%",
        ],
        [
            [
                str(v.concurrency),
                v.requests,
                v.errors,
                v.tokens,
                v.tokens_per_request,
                v.seconds,
                v.tokens_per_s,
                v.speedup,
                v.ttft_p50_s,
                v.ttft_p99_s,
                v.latency_p50_s,
                f"{v.cpu_percent['shard']:.0f}",
                f"{v.cpu_percent['other']:.0f}",
            ]
            for v in levels
        ],
    )
    print(
        "(a request may stop before max_tokens at an end-of-text token; tokens/s counts the "
        "tokens generated, from the stream's usage; TTFT is to the first chunk with content)"
    )


def check_targets(levels: list[LevelResult]) -> list[dict[str, Any]]:
    level = next((v for v in levels if v.concurrency == TARGET_CONCURRENCY), None)
    speedup = f"{level.speedup:.2f}x" if level else "-"
    ttft = f"{level.ttft_p99_s:.2f} s" if level else "-"
    return [
        {
            "target": f"at {TARGET_CONCURRENCY} concurrent: total throughput >= "
            f"{TARGET_SPEEDUP:g}x the sequential baseline",
            "value": speedup,
            "pass": None if level is None else level.speedup >= TARGET_SPEEDUP,
        },
        {
            "target": f"at {TARGET_CONCURRENCY} concurrent: TTFT p99 < {TARGET_TTFT_P99_S:g} s",
            "value": ttft,
            "pass": None if level is None else level.ttft_p99_s < TARGET_TTFT_P99_S,
        },
    ]


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\nTargets")
    print_table(
        ["target", "measured", "result"],
        [
            [t["target"], t["value"], "not measured" if t["pass"] is None else verdict(t["pass"])]
            for t in targets
        ],
    )


def disturbance_warnings(baseline: BaselineResult, levels: list[LevelResult]) -> list[str]:
    phases = [("the baseline", baseline.cpu_percent["other"])]
    phases += [(f"concurrency {v.concurrency}", v.cpu_percent["other"]) for v in levels]
    return [
        f"other processes used {other:.0f}% of a core during {name}; the figures (and so the "
        f"ratios to the baseline) are disturbed"
        for name, other in phases
        if other > OTHER_CPU_WARNING
    ]
