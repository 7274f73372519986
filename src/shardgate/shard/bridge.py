"""Carry events from the model thread into an asyncio stream, aborting on early exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from shardgate.shard.engine import GenerationEvent

__all__ = ["stream_events"]

Sink = Callable[[GenerationEvent], None]


async def stream_events(
    submit: Callable[[Sink], None], abort: Callable[[], None]
) -> AsyncIterator[GenerationEvent]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[GenerationEvent] = asyncio.Queue()

    def sink(event: GenerationEvent) -> None:
        # RuntimeError: the loop has closed, so nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, event)

    submit(sink)
    finished = False
    try:
        while not finished:
            event = await queue.get()
            finished = event.finish_reason is not None
            yield event
    finally:
        if not finished:
            abort()
