"""Shards, the models they serve, and whether they are up.

A background task asks every shard for ``/readyz`` and ``/v1/models`` each interval; a
failed call during a request marks the shard down at once, so the next request skips it
instead of waiting for the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from shardgate.metrics import GatewayMetrics
from shardgate.routing.client import ShardClient
from shardgate.settings import ShardEndpoint

__all__ = ["Shard", "ShardRegistry"]

log = logging.getLogger(__name__)


@dataclass
class Shard:
    url: str
    models: set[str] = field(default_factory=set)
    ready: bool = False
    in_flight: int = 0


class ShardRegistry:
    def __init__(
        self,
        endpoints: Iterable[ShardEndpoint],
        client: ShardClient,
        metrics: GatewayMetrics,
        interval_s: float = 1.0,
    ) -> None:
        self.shards = [Shard(e.url, set(e.models)) for e in endpoints]
        self._client = client
        self._metrics = metrics
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._known: list[str] = []
        self._update_known()

    def known_models(self) -> list[str]:
        return self._known

    def _update_known(self) -> None:
        self._known = sorted({m for s in self.shards for m in s.models})

    def candidates(self, model: str) -> list[Shard]:
        """Ready shards serving ``model``, least busy first."""
        ready = [s for s in self.shards if s.ready and model in s.models]
        return sorted(ready, key=lambda s: s.in_flight)

    def all_ready(self) -> bool:
        models = self.known_models()
        return bool(models) and all(self.candidates(m) for m in models)

    def mark_down(self, shard: Shard, reason: str) -> None:
        if shard.ready:
            log.warning("shard %s is down: %s", shard.url, reason)
        shard.ready = False
        self._metrics.shard_up.labels(shard.url).set(0)
        self._metrics.shard_errors.labels(shard.url).inc()

    async def check(self, shard: Shard) -> None:
        info = await self._client.probe(shard.url)
        was = shard.ready
        if info is None:
            shard.ready = False
        else:
            shard.ready, models = info
            if models and set(models) != shard.models:
                shard.models = set(models)
                self._update_known()
        if shard.ready != was:
            log.info("shard %s is %s", shard.url, "ready" if shard.ready else "not ready")
        self._metrics.shard_up.labels(shard.url).set(1 if shard.ready else 0)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(s) for s in self.shards))

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:  # a probe bug must not stop health checking
                log.exception("shard health check failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
