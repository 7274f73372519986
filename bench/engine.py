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
import sys
import tempfile
import time
from dataclasses import dataclass
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
    add_limit_options,
    bench_key,
    bench_main,
    free_ports,
    listen_args,
    percentile,
    progress,
    wait_ready,
)
from _engine_report import BaselineResult, LevelResult, print_report

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
            # The engine is measured here; the content filter's models would share the two
            # cores with it (bench/safety.py measures the filter and the output monitor).
            env={"SHARDGATE_BOOTSTRAP_KEY": key, "SHARDGATE_SAFETY__ENABLED": "false"},
        )
        progress("waiting for the shard to load the model ...")
        loaded = wait_ready(shard, shard_url, args.ready_timeout)
        wait_ready(gateway, gateway_url, args.ready_timeout)
        progress(f"shard ready after {loaded:.1f}s")
        processes = {"client": psutil.Process(), "gateway": gateway.ps, "shard": shard.ps}
        server = Server(gateway_url, key, processes)
        return asyncio.run(measure_server(server, baseline_tps, args))


# -- the command line -------------------------------------------------------------------


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
    add_limit_options(p, 300.0, 600.0, "the shard to load the model")
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
    return bench_main(
        "engine", args.json, lambda: run(args), lambda r: print_report(r[0], r[1], args)
    )


if __name__ == "__main__":
    sys.exit(main())
