"""Real-model throughput: a shard's batched generation against plain transformers.

First a baseline: SmolLM2 loaded in this process with transformers, ``model.generate``
one request at a time. Then a real shard and a gateway on loopback ports, fed streaming
chat completions through the gateway by the official ``openai`` client at several
concurrencies. The table compares total generated tokens per second with the baseline
and shows time to first token. Run ``python bench/engine.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import openai
import psutil

from _common import (
    LOOPBACK,
    MODEL,
    REPO,
    BenchError,
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

TARGET_CONCURRENCY = 16
TARGET_SPEEDUP = 5.0
TARGET_TTFT_P99_S = 2.0
OTHER_CPU_WARNING = 15.0

PROMPTS = (
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a bicycle works, describing every part and what it does.",
    "Describe a week-long hiking trip through the mountains, day by day, in detail.",
    "Write a long letter to a friend about learning to cook, with many examples.",
    "Explain the water cycle to a curious ten-year-old, with plenty of examples.",
    "Write a detailed guide to starting a small vegetable garden on a balcony.",
    "Tell the history of a fictional city from its founding to the present day.",
    "Describe, in detail, how a library could be organised for a whole town.",
)


@dataclass
class BaselineResult:
    requests: int
    tokens: int
    seconds: float
    tokens_per_s: float
    per_request: list[dict[str, float]]
    cpu_percent: dict[str, float]


@dataclass(frozen=True)
class Server:
    """The gateway to send to, its key, and the processes whose CPU use is reported."""

    url: str
    key: str
    processes: dict[str, psutil.Process]


@dataclass
class RequestResult:
    ttft_s: float | None = None
    seconds: float = 0.0
    tokens: int = 0
    error: str | None = None


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


# -- phase a: the in-process baseline ---------------------------------------------------


def model_folder(data_dir: Path) -> Path:
    """The converted transformers folder of the model, made once (slowly) if missing."""
    from shardgate.settings import Settings
    from shardgate.shard.catalog import ModelUnavailable, find_source, prepare

    settings = Settings(data_dir=data_dir)
    spec = settings.model(MODEL)
    if spec is None:
        raise BenchError(f"the model {MODEL} is not in the catalogue")
    try:
        return prepare(find_source(spec), settings.models_dir)
    except ModelUnavailable as exc:
        raise BenchError(str(exc)) from None


def run_baseline(folder: Path, args: argparse.Namespace) -> BaselineResult:
    """Plain ``model.generate``, one prompt at a time; the model is freed on return."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    generate_once(model, tokenizer, PROMPTS[0], 8, args.temperature)  # warm-up
    per_request = []
    meter = CpuMeter({"benchmark": psutil.Process()})
    for i in range(args.baseline_prompts):
        tokens, seconds = generate_once(
            model, tokenizer, PROMPTS[i % len(PROMPTS)], args.max_tokens, args.temperature
        )
        per_request.append({"tokens": tokens, "seconds": seconds})
        progress(f"baseline {i + 1}/{args.baseline_prompts}: {tokens / seconds:.1f} tokens/s")
    _, cpu_percent = meter.stop()
    tokens = sum(int(r["tokens"]) for r in per_request)
    seconds = sum(r["seconds"] for r in per_request)
    return BaselineResult(
        len(per_request), tokens, seconds, tokens / seconds, per_request, cpu_percent
    )


def generate_once(
    model: Any, tokenizer: Any, prompt: str, new_tokens: int, temperature: float
) -> tuple[int, float]:
    """(tokens generated, seconds) for one prompt, forced to exactly ``new_tokens``."""
    import torch

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=tokenizer.eos_token_id,
            **sampling,
        )
    seconds = time.perf_counter() - started
    return int(output.shape[1] - inputs["input_ids"].shape[1]), seconds


# -- phase b: the shard through the gateway ---------------------------------------------


async def stream_chat(
    client: openai.AsyncOpenAI, prompt: str, args: argparse.Namespace
) -> RequestResult:
    """One streaming chat completion: time to first content, tokens and total time."""
    started = time.perf_counter()
    result = RequestResult()
    content_chunks = 0
    try:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                content_chunks += 1
                if result.ttft_s is None:
                    result.ttft_s = time.perf_counter() - started
            if chunk.usage is not None:
                result.tokens = chunk.usage.completion_tokens
    except openai.APIError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.tokens = result.tokens or content_chunks
    result.seconds = time.perf_counter() - started
    return result


async def run_level(
    client: openai.AsyncOpenAI,
    server: Server,
    concurrency: int,
    baseline_tps: float,
    args: argparse.Namespace,
) -> LevelResult:
    """``rounds x concurrency`` requests, ``concurrency`` of them in flight at any time."""
    total = args.rounds * concurrency
    pending = iter(range(total))
    results: list[RequestResult] = []

    async def worker() -> None:
        for i in pending:
            results.append(await stream_chat(client, PROMPTS[i % len(PROMPTS)], args))

    meter = CpuMeter(server.processes)
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    seconds = time.perf_counter() - started
    _, cpu_percent = meter.stop()
    return summarize_level(concurrency, results, seconds, baseline_tps, cpu_percent)


def summarize_level(
    concurrency: int,
    results: list[RequestResult],
    seconds: float,
    baseline_tps: float,
    cpu_percent: dict[str, float],
) -> LevelResult:
    ok = [r for r in results if r.error is None]
    tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    for r in results:
        if r.error is not None:
            print(f"  request failed: {r.error}", file=sys.stderr)
    rate = tokens / seconds if seconds > 0 else 0.0
    return LevelResult(
        concurrency=concurrency,
        requests=len(results),
        errors=len(results) - len(ok),
        tokens=tokens,
        seconds=seconds,
        tokens_per_s=rate,
        speedup=rate / baseline_tps if baseline_tps > 0 else float("nan"),
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p99_s=percentile(ttfts, 99),
        latency_p50_s=percentile([r.seconds for r in ok], 50),
        tokens_per_request=tokens / len(ok) if ok else float("nan"),
        cpu_percent=cpu_percent,
    )


async def measure_server(
    server: Server, baseline_tps: float, args: argparse.Namespace
) -> list[LevelResult]:
    client = openai.AsyncOpenAI(
        base_url=server.url + "/v1",
        api_key=server.key,
        max_retries=0,
        timeout=args.request_timeout,
    )
    async with client:
        warm = argparse.Namespace(**{**vars(args), "max_tokens": 4})
        await stream_chat(client, "Hello!", warm)  # opens a connection, and checks the path
        levels = []
        for concurrency in args.concurrency:
            progress(f"concurrency {concurrency}: {args.rounds * concurrency} requests ...")
            level = await run_level(client, server, concurrency, baseline_tps, args)
            progress(f"concurrency {concurrency}: {level.tokens_per_s:.1f} tokens/s")
            levels.append(level)
    return levels


def run_server(baseline_tps: float, args: argparse.Namespace) -> list[LevelResult]:
    key = bench_key()
    shard_port, gateway_port = free_ports(2)
    shard_url = f"http://{LOOPBACK}:{shard_port}"
    gateway_url = f"http://{LOOPBACK}:{gateway_port}"
    with (
        tempfile.TemporaryDirectory(prefix="shardgate-bench-engine-") as tmp,
        Processes(Path(tmp)) as procs,
    ):
        shard = procs.start(
            "shard",
            ["shard", "--models", MODEL, *listen_args(shard_port, args.data_dir)],
            env={"SHARDGATE_ENGINE__THREADS": str(args.threads)},
        )
        gateway = procs.start(
            "gateway",
            ["gateway", "--shard", shard_url, *listen_args(gateway_port, Path(tmp) / "gw")],
            env={"SHARDGATE_BOOTSTRAP_KEY": key},
        )
        progress("waiting for the shard to load the model ...")
        loaded = wait_ready(shard, shard_url, args.ready_timeout)
        wait_ready(gateway, gateway_url, args.ready_timeout)
        progress(f"shard ready after {loaded:.1f}s")
        processes = {"client": psutil.Process(), "gateway": gateway.ps, "shard": shard.ps}
        server = Server(gateway_url, key, processes)
        return asyncio.run(measure_server(server, baseline_tps, args))


# -- the report -------------------------------------------------------------------------


def print_report(
    baseline: BaselineResult, levels: list[LevelResult], args: argparse.Namespace
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    load1, _, _ = os.getloadavg()
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
    for line in warnings:
        print(f"WARNING: {line}")
    return {
        "machine": {"cpu_cores": cores, "load_average_1m": load1},
        "settings": {
            **vars(args),
            "data_dir": str(args.data_dir),
            "json": str(args.json) if args.json else None,
        },
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


# -- the command line -------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers separated by commas")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "var",
        help="the shard's data directory, holding the converted model under "
        "models/ (default: the repository's var/)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads, for the baseline and the shard alike (default 2)",
    )
    p.add_argument(
        "--max-tokens", type=int, default=128, help="new tokens per request (default 128)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.7,
        help="sampling temperature; 0 is greedy (default 0.7)",
    )
    p.add_argument(
        "--baseline-prompts",
        type=int,
        default=3,
        help="requests in the sequential baseline (default 3)",
    )
    p.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=[1, 4, 16],
        help="comma-separated concurrency levels (default 1,4,16)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="requests per level, as a multiple of its concurrency (default 2)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=300.0,
        help="seconds before a request fails (default 300)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the shard to load the model (default 600)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if min(args.threads, args.max_tokens, args.baseline_prompts, args.rounds) < 1:
        p.error("--threads, --max-tokens, --baseline-prompts and --rounds must be at least 1")
    args.data_dir = args.data_dir.resolve()
    return args


def run(args: argparse.Namespace) -> tuple[BaselineResult, list[LevelResult]]:
    progress("preparing the model folder ...")
    folder = model_folder(args.data_dir)
    progress(f"baseline: loading {folder} in-process ...")
    baseline = run_baseline(folder, args)
    gc.collect()  # the baseline model is gone before the shard loads its own copy
    levels = run_server(baseline.tokens_per_s, args)
    return baseline, levels


def main() -> int:
    args = parse_args()
    stop_on_sigterm()
    try:
        baseline, levels = run(args)
    except KeyboardInterrupt:
        print(
            "\ninterrupted; every process the benchmark started has been stopped", file=sys.stderr
        )
        return 130
    except BenchError as exc:
        print(f"engine benchmark failed: {exc}", file=sys.stderr)
        return 1
    figures = print_report(baseline, levels, args)
    if args.json:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
