"""What the content filter and the safety monitor cost, and the PII detector's recall.

Three parts, each against a baseline measured side by side in the same run:

1. Input filter (in process): the ContentFilter stage with the default policy on a 1 KB
   chat prompt (PII, secrets, injection, harmful, toxicity), against the same request
   with no filter, and with the pattern detectors only. Target: adds <= 15 ms p50.
2. PII recall on the generated set (bench/_pii_samples.py, realistic formats, every value
   valid). Target: >= 0.95 per category.
3. Output monitor (the real ``up`` stack, SmolLM2): the same streamed prompts for two
   tenants, alternately: one whose output policy is all ``allow`` (the baseline) and one
   with the default output policy. Time per token is (last text chunk - first text
   chunk) / (chunks - 1). Target: the monitored tenant's is <= 1.10x the baseline's.

Classifier quality (precision, recall, FPR on held-out data) is ``bench/safety_eval.py``.

    .venv/bin/python bench/safety.py [--rounds N] [--streams N] [--max-tokens N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from _common import (
    LOOPBACK,
    MODEL,
    Processes,
    bench_key,
    bench_main,
    free_ports,
    listen_args,
    machine,
    percentile,
    print_table,
    progress,
    run_info,
    verdict,
    wait_ready,
)
from _pii_samples import CATEGORIES, samples
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.contentfilter import ContentFilter, TenantPolicies
from shardgate.pipeline.context import RequestContext
from shardgate.safety.events import SafetyEventLog
from shardgate.safety.pii import PiiDetector
from shardgate.safety.policy import SafetyPolicy, merge_policy
from shardgate.safety.scanner import SafetyScanner
from shardgate.settings import SafetySettings
from shardgate.store import Principal, SqlStore, connect, upgrade

TARGET_FILTER_MS, TARGET_PII_RECALL, TARGET_MONITOR_RATIO = 15.0, 0.95, 1.10
NOTES = (
    "Our team is planning the quarterly review. Please read the notes below and write a "
    "short summary with action items, owners and deadlines. The notes mention the budget, "
    "the hiring plan, two customer escalations and the migration of the billing service. "
    "Contact maria.rossi@example.com or call +44 20 7946 0958 with questions. "
)
QUIET_OUTPUT = {"output": dict.fromkeys(("pii", "secrets", "harmful", "toxicity", "deny"), "allow")}
PROMPTS = (
    "Explain how a car engine works, step by step, in detail.",
    "Describe the history of Rome in detail.",
    "Explain photosynthesis to a high-school student.",
    "Write a short essay about the ocean.",
    "Explain how the internet works.",
    "Describe a day in the life of a lighthouse keeper.",
)


# 1. input filter


async def _filter_latency(rounds: int, cache: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(connect(f"sqlite:///{tmp}/store.db"))
        await upgrade(store.engine)
        await store.create_tenant("bench")
        metrics = GatewayMetrics()
        scanner = SafetyScanner(cache / "safety")
        await scanner.start()
        events = SafetyEventLog(store, metrics)
        quiet = {"input": dict.fromkeys(("injection", "harmful", "toxicity"), "allow")}
        variants = {
            "no filter": None,
            "patterns only": merge_policy(SafetyPolicy(), quiet),
            "default policy": SafetyPolicy(),
        }
        stages = {
            name: ContentFilter(
                scanner,
                TenantPolicies(store, policy, ttl_s=3600),
                events,
                SafetySettings(policy=policy),
                metrics,
            )
            for name, policy in variants.items()
            if policy is not None
        }

        async def terminal(ctx: RequestContext) -> Response:
            return Response(b"{}")

        prompts = [(f"Draft {i}. " + NOTES * 4)[:1024] for i in range(rounds)]
        times: dict[str, list[float]] = {name: [] for name in variants}
        for i, prompt in enumerate([*prompts[:5], *prompts]):  # the first five warm up
            for name in variants:  # interleaved: drift hits every variant alike
                ctx = _context(prompt)
                started = time.perf_counter()
                stage = stages.get(name)
                await (terminal(ctx) if stage is None else stage(ctx, terminal))
                if i >= 5:
                    times[name].append((time.perf_counter() - started) * 1000)
        throughput = {
            n: await _throughput(stages["default policy"], terminal, rounds, n) for n in (1, 8)
        }
        scanner.close()
        await store.close()
    base = statistics.median(times["no filter"])
    figures: dict[str, Any] = {
        name: {
            "p50_ms": statistics.median(t),
            "p95_ms": percentile(t, 95),
            "added_p50_ms": statistics.median(t) - base,
        }
        for name, t in times.items()
    }
    figures["throughput"] = throughput
    return figures


async def _throughput(
    stage: ContentFilter, terminal: Any, rounds: int, concurrency: int
) -> dict[str, float]:
    """Short, distinct prompts through the filter, ``concurrency`` at a time: requests a
    second (one worker thread; concurrent ones are judged in batches)."""
    prompts = iter(
        [f"Question {concurrency}-{i}: how do I water a plant number {i}?" for i in range(rounds)]
    )

    async def client() -> None:
        for prompt in prompts:
            await stage(_context(prompt), terminal)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"requests_per_s": rounds / (time.perf_counter() - started)}


def _context(prompt: str) -> RequestContext:
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    ctx = RequestContext(request, "chat.completions")
    ctx.payload = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt},
        ],
    }
    ctx.body = orjson.dumps(ctx.payload)
    ctx.principal = Principal("key_bench", "bench", "user", frozenset({"*"}), frozenset({"*"}))
    return ctx


# 2. PII recall


def _pii_recall(per_category: int) -> dict[str, dict[str, float]]:
    detector = PiiDetector()
    found: dict[str, list[bool]] = {c: [] for c in CATEGORIES}
    started = time.perf_counter()
    sample_set = samples(per_category=per_category)
    for s in sample_set:
        hits = detector.scan(s.text)
        found[s.category].append(
            any(f.category == s.category and f.start <= s.start and s.end <= f.end for f in hits)
        )
    per_text_us = (time.perf_counter() - started) / len(sample_set) * 1e6
    out = {c: {"recall": sum(v) / len(v), "n": len(v)} for c, v in found.items()}
    out["all"] = {"per_text_us": per_text_us}
    return out


# 3. output monitor


def _stream(client: httpx.Client, key: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(seconds per token after the first, text chunks) of one streamed answer."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    stamps: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                choices = orjson.loads(line[6:]).get("choices") or []
                if any((c.get("delta") or {}).get("content") for c in choices):
                    stamps.append(time.perf_counter())
    if len(stamps) < 2:
        return float("nan"), len(stamps)
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1), len(stamps)


def _monitor_overhead(streams: int, max_tokens: int, timeout: float) -> dict[str, Any]:
    gateway_port, shard_port = free_ports(2)
    admin = bench_key()
    url = f"http://{LOOPBACK}:{gateway_port}"
    with tempfile.TemporaryDirectory() as tmp, Processes(Path(tmp)) as procs:
        up = procs.start(
            "up",
            ["up", *listen_args(gateway_port, Path(tmp) / "data")],
            env={
                "SHARDGATE_BOOTSTRAP_KEY": admin,
                "SHARDGATE_UP_SHARDS": f"[{{models: [{MODEL}], port: {shard_port}}}]",
            },
        )
        wait_ready(up, url, timeout)
        client = httpx.Client(base_url=url, timeout=timeout)
        auth = {"Authorization": f"Bearer {admin}"}
        keys = {}
        for tenant in ("baseline", "monitored"):
            client.post("/admin/v1/tenants", json={"name": tenant}, headers=auth).raise_for_status()
            spec = {"tenant": tenant, "role": "user", "endpoints": ["chat"], "models": ["*"]}
            made = client.post("/admin/v1/keys", json=spec, headers=auth)
            made.raise_for_status()
            keys[tenant] = made.json()["key"]
        client.put(
            "/admin/v1/tenants/baseline/safety", json=QUIET_OUTPUT, headers=auth
        ).raise_for_status()
        per_token: dict[str, list[float]] = {t: [] for t in keys}
        chunks: dict[str, list[int]] = {t: [] for t in keys}
        _stream(client, keys["baseline"], PROMPTS[0], 8)  # warm up
        for i in range(streams):
            prompt = PROMPTS[i % len(PROMPTS)]
            order = list(keys) if i % 2 == 0 else list(reversed(keys))
            for tenant in order:
                seconds, n = _stream(client, keys[tenant], prompt, max_tokens)
                per_token[tenant].append(seconds * 1000)
                chunks[tenant].append(n)
            progress(f"stream pair {i + 1}/{streams}")
        checks = client.get("/metrics", headers=auth).text
    out: dict[str, Any] = {
        t: {
            "per_token_p50_ms": statistics.median(v),
            "per_token_mean_ms": statistics.fmean(v),
            "chunks_mean": statistics.fmean(chunks[t]),
        }
        for t, v in per_token.items()
    }
    out["ratio_p50"] = out["monitored"]["per_token_p50_ms"] / out["baseline"]["per_token_p50_ms"]
    out["output_checks"] = sum(
        float(line.rsplit(" ", 1)[1])
        for line in checks.splitlines()
        if line.startswith('shardgate_safety_duration_seconds_count{stage="output"}')
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=100, help="1 KB prompts through the filter")
    parser.add_argument("--pii-per-category", type=int, default=200)
    parser.add_argument("--streams", type=int, default=6, help="streamed answers per tenant")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args()
    cores, load1 = machine()
    cache = Path(__file__).resolve().parent.parent / "var" / "models"

    def measure() -> dict[str, Any]:
        progress("input filter, in process")
        filter_figures = asyncio.run(_filter_latency(args.rounds, cache))
        progress("PII recall")
        pii = _pii_recall(args.pii_per_category)
        progress("output monitor, real stack")
        monitor = _monitor_overhead(args.streams, args.max_tokens, args.timeout)
        return {"input_filter": filter_figures, "pii": pii, "output_monitor": monitor}

    def report(result: dict[str, Any]) -> dict[str, Any]:
        print(f"safety runtime costs ({cores} cores, load {load1:.2f})\n")
        f = result["input_filter"]
        print(f"1. input filter, one 1 KB chat prompt, {args.rounds} rounds")
        print_table(
            ["variant", "p50 ms", "p95 ms", "added p50 ms"],
            [
                [n, v["p50_ms"], v["p95_ms"], v["added_p50_ms"]]
                for n, v in f.items()
                if n != "throughput"
            ],
        )
        added = f["default policy"]["added_p50_ms"]
        ok = added <= TARGET_FILTER_MS
        print(f"  {verdict(ok)} adds <= {TARGET_FILTER_MS} ms p50 ({added:.1f})")
        rates = f["throughput"]
        print(
            f"  short prompts, default policy: {rates[1]['requests_per_s']:.1f} req/s one at a "
            f"time, {rates[8]['requests_per_s']:.1f} req/s with 8 concurrent (batched)"
        )
        p = result["pii"]
        print(f"\n2. PII recall, generated set ({args.pii_per_category} per category)")
        print_table(
            ["category", "n", "recall"], [[c, p[c]["n"], p[c]["recall"]] for c in CATEGORIES]
        )
        worst = min(p[c]["recall"] for c in CATEGORIES)
        print(f"  {verdict(worst >= TARGET_PII_RECALL)} every category >= {TARGET_PII_RECALL}")
        print(f"  {p['all']['per_text_us']:.0f} us per sentence")
        m = result["output_monitor"]
        print(f"\n3. output monitor, {args.streams} streams per tenant, {args.max_tokens} tokens")
        print_table(
            ["tenant", "ms/token p50", "ms/token mean", "chunks"],
            [
                [t, m[t]["per_token_p50_ms"], m[t]["per_token_mean_ms"], m[t]["chunks_mean"]]
                for t in ("baseline", "monitored")
            ],
        )
        ok = m["ratio_p50"] <= TARGET_MONITOR_RATIO
        print(
            f"  {verdict(ok)} monitored / baseline <= {TARGET_MONITOR_RATIO} ({m['ratio_p50']:.3f})"
        )
        checks = m["output_checks"]
        print(f"  output checks (patterns on every chunk, models every stride): {checks:.0f}")
        return {**run_info(args, cores, load1), **result}

    return bench_main("safety", args.json, measure, report)


if __name__ == "__main__":
    sys.exit(main())
