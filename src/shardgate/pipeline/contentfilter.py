"""Content filter: the tenant's safety policy applied to a request before it reaches a shard.

Every text of the request (chat messages and their text parts, completion prompts) is
scanned for personal data, secrets and the tenant's deny-list; the most recent user and
tool messages are also judged by the injection, harmful-request and toxicity models (a
system prompt is the developer's, not the user's, and reads like instructions). Per
detector, the policy's action decides: ``flag`` records an event, ``redact`` replaces the
spans with placeholders in the forwarded body, ``block`` refuses with 400
``content_filtered`` naming the categories. Events carry scores and categories, never text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableMapping, MutableSequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from shardgate.errors import ContentFiltered, SafetyUnavailable, ServiceUnavailable
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler
from shardgate.pipeline.context import RequestContext
from shardgate.safety.denylist import DenyList, deny_list
from shardgate.safety.events import Record, SafetyEventLog
from shardgate.safety.policy import (
    InputPolicy,
    OutputPolicy,
    PolicyError,
    SafetyPolicy,
    merge_policy,
)
from shardgate.safety.redact import Redaction
from shardgate.safety.scanner import Hit, SafetyScanner, Scan
from shardgate.settings import SafetySettings
from shardgate.store import STORE_ERRORS, TenantStore

__all__ = [
    "FILTERED_ROUTES",
    "ContentFilter",
    "TenantPolicies",
    "active_detectors",
    "fail_or_count",
]

log = logging.getLogger(__name__)

FILTERED_ROUTES = frozenset({"chat.completions", "completions"})
JUDGED_ROLES = frozenset({"user", "tool", "function"})


class TenantPolicies:
    """Each tenant's effective policy (the default with its override merged over it), cached
    for ``ttl_s``, like keys: a change made on another gateway applies within that bound."""

    def __init__(
        self,
        store: TenantStore,
        default: SafetyPolicy,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._default = default
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[SafetyPolicy, float]] = {}

    @property
    def default(self) -> SafetyPolicy:
        return self._default

    async def get(self, tenant: str) -> SafetyPolicy:
        now = self._clock()
        cached = self._cache.get(tenant)
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            record = await self._store.get_tenant(tenant)
        except STORE_ERRORS:
            raise ServiceUnavailable(
                "cannot read the safety policy now: the store is unavailable",
                code="store_unavailable",
            ) from None
        policy = self._default
        if record is not None and record.safety_policy:
            try:
                policy = merge_policy(self._default, record.safety_policy)
            except PolicyError as exc:  # written by an older version, say: fail safe
                log.error("tenant %s: stored safety policy is invalid (%s)", tenant, exc)
        self._cache[tenant] = (policy, now + self._ttl)
        return policy

    def forget(self, tenant: str) -> None:
        self._cache.pop(tenant, None)


@dataclass
class _Slot:
    """Where a text sits in the payload, so a redacted version can be put back."""

    container: MutableMapping[str, Any] | MutableSequence[Any]
    key: Any
    judged: bool

    @property
    def text(self) -> str:
        value: str = self.container[self.key]
        return value

    def replace(self, text: str) -> None:
        self.container[self.key] = text


class ContentFilter:
    def __init__(
        self,
        scanner: SafetyScanner,
        policies: TenantPolicies,
        events: SafetyEventLog,
        settings: SafetySettings,
        metrics: GatewayMetrics,
    ) -> None:
        self._scanner = scanner
        self._policies = policies
        self._events = events
        self._settings = settings
        self._metrics = metrics

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        if ctx.route not in FILTERED_ROUTES or ctx.principal is None:
            return await call_next(ctx)
        started = time.perf_counter()
        policy = await self._policies.get(ctx.principal.tenant)
        ctx.safety_policy = policy
        detectors, deny = active_detectors(policy, policy.input)
        slots = list(_slots(ctx.route, ctx.payload, self._settings.judged_messages))
        if detectors and slots:
            texts = [s.text for s in slots]
            judged = [i for i, s in enumerate(slots) if s.judged]
            scan = await self._scanner.scan(texts, detectors, deny, judged)
            record = self._events.recorder(ctx.principal, ctx.request_id, ctx.route)
            fail_or_count(scan, self._settings, self._metrics, "input", record)
            self._apply(ctx, policy, scan, slots, record)
        self._metrics.safety_latency.labels("input").observe(time.perf_counter() - started)
        return await call_next(ctx)

    def _apply(
        self,
        ctx: RequestContext,
        policy: SafetyPolicy,
        scan: Scan,
        slots: list[_Slot],
        record: Record,
    ) -> None:
        blocked: list[Hit] = []
        to_redact: dict[int, list[Hit]] = {}
        for hit in scan.hits:
            action = getattr(policy.input, hit.detector)
            record("input", hit.detector, hit.category, hit.score, action)
            if action == "block":
                blocked.append(hit)
            elif action == "redact":
                to_redact.setdefault(hit.text, []).append(hit)
        if blocked:
            categories = sorted({h.category for h in blocked})
            raise ContentFiltered(
                "the request was refused by the content filter: " + ", ".join(categories),
                param="messages" if ctx.route == "chat.completions" else "prompt",
            )
        if to_redact:
            redaction = Redaction()
            for i, hits in to_redact.items():
                slots[i].replace(redaction.apply(slots[i].text, (f for h in hits for f in h.spans)))
            if policy.restore:
                ctx.redaction = redaction


def active_detectors(
    policy: SafetyPolicy, stage: InputPolicy | OutputPolicy
) -> tuple[frozenset[str], DenyList | None]:
    """The detectors whose action in ``stage`` (``policy.input`` or ``policy.output``) is
    not ``allow``, and the tenant's deny-list: None, and ``deny`` left out, if it is empty."""
    deny: DenyList | None = deny_list(policy.deny_terms, policy.deny_patterns)
    names = {name for name in type(stage).model_fields if getattr(stage, name) != "allow"}
    if not deny:
        deny = None
        names.discard("deny")
    return frozenset(names), deny


def fail_or_count(
    scan: Scan,
    settings: SafetySettings,
    metrics: GatewayMetrics,
    stage: str,
    record: Record,
) -> list[str]:
    """Count and record failed detectors; raise ``SafetyUnavailable`` if one fails closed,
    else return the names of those that failed open."""
    closed = []
    for detector, reason in sorted(scan.failed.items()):
        mode = getattr(settings.on_error, detector)
        metrics.safety_detector_errors.labels(detector, mode).inc()
        record(stage, detector, "error", 0.0, "error")
        log.warning("safety detector %s failed (%s): %s", detector, mode, reason)
        if mode == "closed":
            closed.append(detector)
    if closed:
        raise SafetyUnavailable(
            f"the content filter cannot check this request now ({', '.join(closed)} "
            "unavailable); retry later",
            headers={"retry-after": "5"},
        )
    return sorted(scan.failed)


def _slots(route: str, payload: dict[str, Any], judged_messages: int) -> Iterator[_Slot]:
    """The request's texts, newest judged ones marked, in payload order."""
    if route == "completions":
        prompt = payload.get("prompt")
        if isinstance(prompt, str):
            yield _Slot(payload, "prompt", True)
        elif isinstance(prompt, list):
            for i, item in enumerate(prompt):  # token-id prompts cannot be read: skipped
                if isinstance(item, str):
                    yield _Slot(prompt, i, i >= len(prompt) - judged_messages)
        return
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return
    judged_left = judged_messages
    judged_at: set[int] = set()
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if judged_left and isinstance(message, dict) and message.get("role") in JUDGED_ROLES:
            judged_at.add(i)
            judged_left -= 1
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield _Slot(message, "content", i in judged_at)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield _Slot(part, "text", i in judged_at)
