"""A coroutine run every few seconds in the background, and once more when stopped.

For work written in batches (keys' last-used times, safety events): ``stop`` cancels the
loop and then runs the work a last time, so what was collected before shutdown is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["Periodic"]


class Periodic:
    def __init__(self, run: Callable[[], Awaitable[None]], interval_s: float) -> None:
        self._run = run
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._run()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._run()
