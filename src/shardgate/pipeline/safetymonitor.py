"""Safety monitor: the tenant's output policy applied to the answer, also while it streams.

A stream is relayed as it comes, with two kinds of checks on a sliding window (the last
``output_window_chars`` of each choice):

- the pattern detectors (PII, secrets, the deny-list) take well under a millisecond, so
  they read the window before each chunk is relayed: a chunk that completes a blocked span
  is never sent;
- the models (harm, toxicity) take tens of milliseconds, so every ``output_stride_chars``
  of new text one check starts in the background while the stream goes on (one at a
  time). What reaches the caller past a violation they find is bounded by a stride plus
  one check's time; the end of the answer is checked before its finishing chunk is sent.

On a violation the stream ends with a final chunk whose ``finish_reason`` is
``"content_filter"`` and the shard stops generating. A whole (non-streamed) answer is
checked in overlapping windows at once; a violation withholds the answer from where it was
found, with the same finish reason. Placeholders the content filter put into the prompt are
restored here, after the checks, so that the detectors read what the model wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from shardgate.errors import SafetyUnavailable
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.base import Handler, streaming_body
from shardgate.pipeline.contentfilter import active_detectors, fail_or_count
from shardgate.pipeline.context import RequestContext
from shardgate.safety.denylist import DenyList
from shardgate.safety.events import SafetyEventLog
from shardgate.safety.policy import SPAN_DETECTORS, SafetyPolicy
from shardgate.safety.redact import StreamRestorer
from shardgate.safety.scanner import Hit, SafetyScanner
from shardgate.settings import SafetySettings
from shardgate.web import SSE_DONE, sse_event

__all__ = ["SafetyMonitor"]


class SafetyMonitor:
    def __init__(
        self,
        scanner: SafetyScanner,
        events: SafetyEventLog,
        settings: SafetySettings,
        metrics: GatewayMetrics,
    ) -> None:
        self._scanner = scanner
        self._events = events
        self._settings = settings
        self._metrics = metrics

    async def __call__(self, ctx: RequestContext, call_next: Handler) -> Response:
        response = await call_next(ctx)
        policy = ctx.safety_policy
        if policy is None or response.status_code != 200:
            return response
        detectors, deny = active_detectors(policy, policy.output)
        if not detectors and ctx.redaction is None:
            return response
        watch = _Watch(self, ctx, policy, detectors, deny)
        stream = streaming_body(response)
        if stream is not None:
            stream.body_iterator = watch.stream(stream.body_iterator)
            return response
        body = await watch.whole(bytes(response.body))
        return Response(body, response.status_code, media_type="application/json")


@dataclass
class _Answer:
    """One choice's text so far, and how much of it a check has read."""

    text: str = ""
    checked: int = 0
    events: int = 0
    done: bool = False
    restorer: StreamRestorer | None = None


class _Watch:
    """The monitor's state for one response."""

    def __init__(
        self,
        monitor: SafetyMonitor,
        ctx: RequestContext,
        policy: SafetyPolicy,
        detectors: frozenset[str],
        deny: DenyList | None,
    ) -> None:
        self._m = monitor
        self._ctx = ctx
        self._policy = policy
        self._patterns = detectors & SPAN_DETECTORS
        self._models = detectors - SPAN_DETECTORS
        self._deny = deny
        self._flagged: set[tuple[str, str]] = set()
        assert ctx.principal is not None  # the content filter ran
        self._record = monitor._events.recorder(ctx.principal, ctx.request_id, ctx.route)
        settings = monitor._settings
        self._window = settings.output_window_chars
        self._stride = settings.output_stride_chars

    # checks

    async def _check(self, windows: list[str], detectors: frozenset[str]) -> list[tuple[int, Hit]]:
        """The blocking hits in ``windows``, as (window index, hit); flags are recorded."""
        if not windows or not detectors:
            return []
        started = time.perf_counter()
        scan = await self._m._scanner.scan(windows, detectors, self._deny)
        self._m._metrics.safety_latency.labels("output").observe(time.perf_counter() - started)
        try:
            fail_or_count(scan, self._m._settings, self._m._metrics, "output", self._record)
        except SafetyUnavailable:  # failing closed on output: stop the answer here
            return [(0, Hit("error", "error", 0.0, 0))]
        blocking = []
        for hit in scan.hits:
            action = getattr(self._policy.output, hit.detector)
            if action == "block":
                blocking.append((hit.text, hit))
            if (hit.detector, hit.category) not in self._flagged:
                self._flagged.add((hit.detector, hit.category))
                self._record("output", hit.detector, hit.category, hit.score, action)
        return blocking

    async def _check_tails(self, answers: dict[int, _Answer]) -> bool:
        """Run the models over the last window of every answer with text they have not
        read; True to cut."""
        fresh = [a for a in answers.values() if len(a.text) > a.checked]
        windows = [a.text[-self._window :] for a in fresh]
        for a in fresh:
            a.checked = len(a.text)
        return bool(await self._check(windows, self._models))

    async def _check_patterns(self, changed: list[_Answer]) -> bool:
        windows = [a.text[-self._window :] for a in changed]
        return bool(await self._check(windows, self._patterns))

    # streams

    async def stream(self, events: AsyncIterable[str | bytes | memoryview]) -> AsyncIterator[bytes]:
        answers: dict[int, _Answer] = {}
        pending: asyncio.Task[bool] | None = None
        head: dict[str, Any] = {}
        try:
            async for part in events:
                event = part.encode() if isinstance(part, str) else bytes(part)
                obj = _chunk(event)
                if obj is None:  # [DONE], an error event, a usage-only chunk
                    yield event
                    continue
                head = {k: obj.get(k) for k in ("id", "object", "created", "model")}
                changed, finishing = self._take(obj["choices"], answers)
                cut = await self._check_patterns(changed)
                if (
                    not cut
                    and pending is not None
                    and (finishing or pending.done() or self._due(answers))
                ):
                    cut, pending = await pending, None
                if not cut and finishing:
                    cut = await self._check_tails(answers)
                elif not cut and self._due(answers):
                    pending = asyncio.create_task(self._check_tails(answers))
                if cut:
                    yield sse_event(_cut_chunk(head, answers))
                    yield SSE_DONE
                    self._count_cut(answers)
                    return
                yield self._restored(event, obj, answers)
        finally:
            if pending is not None:
                pending.cancel()
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    def _take(self, choices: list[Any], answers: dict[int, _Answer]) -> tuple[list[_Answer], bool]:
        """Add a chunk's text to its answers: those with new text, and whether one of them
        finishes with it."""
        changed: list[_Answer] = []
        finishing = False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            answer = answers.get(choice.get("index", 0))
            if answer is None:
                answer = answers[choice.get("index", 0)] = _Answer()
                if self._ctx.redaction is not None:
                    answer.restorer = self._ctx.redaction.stream_restorer()
            text = _text_of(choice)
            if text:
                answer.text += text
                changed.append(answer)
            answer.events += 1
            if choice.get("finish_reason"):
                answer.done = finishing = True
        return changed, finishing

    def _due(self, answers: dict[int, _Answer]) -> bool:
        return any(len(a.text) - a.checked >= self._stride for a in answers.values())

    def _restored(self, event: bytes, obj: dict[str, Any], answers: dict[int, _Answer]) -> bytes:
        if self._ctx.redaction is None:
            return event
        for choice in obj["choices"]:
            answer = answers[choice.get("index", 0)]
            assert answer.restorer is not None
            text = answer.restorer.feed(_text_of(choice))
            if choice.get("finish_reason"):
                text += answer.restorer.flush()
            _set_text(choice, text)
        return sse_event(obj)

    def _count_cut(self, answers: dict[int, _Answer]) -> None:
        """The shard's usage chunk never comes: estimate the tokens for the budgets."""
        ctx = self._ctx
        ctx.prompt_tokens = ctx.prompt_tokens or len(ctx.body) // 4 + 1
        ctx.completion_tokens = sum(a.events for a in answers.values())

    # whole answers

    async def whole(self, body: bytes) -> bytes:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return body
        texts = [_text_of(c) if isinstance(c, dict) else "" for c in choices]
        windows: list[str] = []
        where: list[tuple[int, int]] = []  # (choice, start of the window in its text)
        step = max(self._window // 2, 1)
        for i, text in enumerate(texts):
            for start in range(0, max(len(text) - self._window, 0) + step, step):
                windows.append(text[start : start + self._window])
                where.append((i, start))
        cuts: dict[int, int] = {}
        for w, hit in await self._check(windows, self._patterns | self._models):
            choice, start = where[w] if hit.detector != "error" else (-1, 0)
            at = start + (hit.spans[0].start if hit.spans else 0)
            for i in range(len(choices)) if choice == -1 else (choice,):
                cuts[i] = min(cuts.get(i, len(texts[i])), 0 if choice == -1 else at)
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            text = texts[i][: cuts[i]] if i in cuts else texts[i]
            if self._ctx.redaction is not None:
                text = self._ctx.redaction.restore(text)
            if i in cuts:
                choice["finish_reason"] = "content_filter"
            if i in cuts or self._ctx.redaction is not None:
                _set_text(choice, text)
        return orjson.dumps(obj)


def _chunk(event: bytes) -> dict[str, Any] | None:
    """The parsed chunk of an SSE event that carries choices, else None."""
    if not event.startswith(b"data: {"):
        return None
    try:
        obj = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list) or not obj["choices"]:
        return None
    return obj


def _text_of(choice: dict[str, Any]) -> str:
    delta = choice.get("delta") or choice.get("message")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


def _set_text(choice: dict[str, Any], text: str) -> None:
    holder = choice.get("delta") or choice.get("message")
    if isinstance(holder, dict):
        holder["content"] = text
    elif "text" in choice:
        choice["text"] = text


def _cut_chunk(head: dict[str, Any], answers: dict[int, _Answer]) -> dict[str, Any]:
    chat = head.get("object") == "chat.completion.chunk"
    choices = []
    for index in sorted(answers):
        choice: dict[str, Any] = {"index": index}
        if chat:
            choice["delta"] = {}
        else:
            choice["text"] = ""
        choice |= {"logprobs": None, "finish_reason": "content_filter"}
        choices.append(choice)
    return {**head, "choices": choices}
