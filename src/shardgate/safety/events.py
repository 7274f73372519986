"""Safety events: counted at once, written to the store in batches.

An event holds the detector, category, score and action with the tenant, key and request
id: never the text. Writes are batched (``flush_interval_s``) so that a flagged request
does not wait for the database; a failed write keeps the batch for the next try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shardgate.metrics import GatewayMetrics
from shardgate.periodic import Periodic
from shardgate.store import Principal, SafetyEvent, SafetyEventStore

__all__ = ["Record", "SafetyEventLog"]

log = logging.getLogger(__name__)

# record(stage, detector, category, score, action)
Record = Callable[[str, str, str, float, str], None]
MAX_PENDING = 100_000  # beyond this (a long store outage), the oldest unsaved events go


class SafetyEventLog:
    def __init__(
        self,
        store: SafetyEventStore,
        metrics: GatewayMetrics,
        flush_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._pending: list[SafetyEvent] = []
        self._flusher = Periodic(self.flush, flush_interval_s)

    def recorder(self, principal: Principal, request_id: str, route: str) -> Record:
        """Records events of one request: ``record(stage, detector, category, score,
        action)``. Counted at once, saved with the next batch."""

        def record(stage: str, detector: str, category: str, score: float, action: str) -> None:
            self._metrics.safety_events.labels(stage, detector, action).inc()
            event = SafetyEvent(
                self._clock(),
                principal.tenant,
                principal.key_id,
                request_id,
                route,
                stage,
                detector,
                category[:64],
                round(float(score), 4),
                action,
            )
            self._pending.append(event)
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]

        return record

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._store.add_safety_events(batch)
        except Exception:
            log.warning("could not save %d safety events; will retry", len(batch), exc_info=True)
            self._pending[:0] = batch

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
