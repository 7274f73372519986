"""An HTTP load generator for the benchmarks: open loop at a fixed rate, or closed loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from _common import MODEL


@dataclass(frozen=True)
class Endpoint:
    """Where a phase sends its requests: straight to the shard, or through the gateway."""

    name: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Sample:
    """One request: when it should have gone, when it went and when it was done."""

    due: float
    sent: float
    done: float
    error: str | None


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
