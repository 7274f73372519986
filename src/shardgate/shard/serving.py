"""OpenAI chat, completion and embedding responses built from engine events."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shardgate.api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    GenerationOptions,
)
from shardgate.errors import InvalidRequest, ShardgateError
from shardgate.shard.engine import ChatEngine, EmbeddingEngine, GenerationEvent, SamplingParams
from shardgate.web import SSE_DONE, sse_event

__all__ = ["ChatServing"]

Indexed = tuple[int, GenerationEvent]


@dataclass
class _Call:
    """One API call: its prompts, how many choices each, and the response envelope."""

    kind: str  # "chat.completion" or "text_completion"
    model: str
    prompts: list[list[int]]
    options: GenerationOptions
    token_limit: int | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat.completion"

    def envelope(self, obj: str) -> dict[str, Any]:
        prefix = "chatcmpl-" if self.is_chat else "cmpl-"
        return {"id": prefix + self.id, "object": obj, "created": self.created, "model": self.model}

    def usage(self, completion_tokens: int, prompt_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }


class ChatServing:
    """Serves the generation endpoints for one chat engine."""

    def __init__(self, engine: ChatEngine) -> None:
        self.engine = engine

    def call(self, req: ChatCompletionRequest | CompletionRequest) -> _Call:
        """Tokenise a chat or text completion request into the call to generate."""
        if isinstance(req, ChatCompletionRequest):
            return self.chat_call(req)
        return self.completion_call(req)

    def chat_call(self, req: ChatCompletionRequest) -> _Call:
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            prompt = self.engine.encode_chat(messages)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="messages") from None
        return self._call("chat.completion", [prompt], req, req.token_limit, "messages")

    def completion_call(self, req: CompletionRequest) -> _Call:
        prompts = [self.engine.encode(p) for p in req.prompts()]
        return self._call("text_completion", prompts, req, req.token_limit, "prompt")

    def _call(
        self,
        kind: str,
        prompts: list[list[int]],
        options: GenerationOptions,
        limit: int | None,
        param: str,
    ) -> _Call:
        window = self.engine.context_length
        for prompt in prompts:
            if not prompt:
                raise InvalidRequest(f"{param}: the prompt is empty", param=param)
            if len(prompt) >= window:
                raise InvalidRequest(
                    f"the prompt is {len(prompt)} tokens; this model's context window is "
                    f"{window} tokens",
                    param=param,
                    code="context_length_exceeded",
                )
        return _Call(kind, self.engine.name, prompts, options, limit)

    def _events(self, call: _Call) -> AsyncIterator[Indexed]:
        opts = call.options
        streams: list[AsyncIterator[GenerationEvent]] = []
        for prompt in call.prompts:
            for j in range(opts.n):
                params = SamplingParams(
                    max_tokens=call.token_limit,
                    temperature=1.0 if opts.temperature is None else opts.temperature,
                    top_p=1.0 if opts.top_p is None else opts.top_p,
                    seed=None if opts.seed is None else opts.seed + j,
                    stop=opts.stop_list(),
                )
                rid = f"{call.id}-{len(streams)}"
                streams.append(self.engine.generate(rid, prompt, params))
        return _merged(streams)

    async def complete(self, call: _Call) -> dict[str, Any]:
        texts: dict[int, list[str]] = {}
        finals: dict[int, GenerationEvent] = {}
        async for index, event in self._events(call):
            texts.setdefault(index, []).append(event.text)
            if event.finish_reason is not None:
                finals[index] = event
        choices = []
        for index in sorted(finals):
            final = finals[index]
            if final.finish_reason == "error":
                raise ShardgateError(final.error or "generation failed")
            choices.append(self._choice(call, index, "".join(texts[index]), final.finish_reason))
        completion = sum(f.completion_tokens for f in finals.values())
        prompt = sum(len(p) for p in call.prompts)
        return {
            **call.envelope(call.kind),
            "choices": choices,
            "usage": call.usage(completion, prompt),
        }

    def _choice(self, call: _Call, index: int, text: str, reason: str | None) -> dict[str, Any]:
        if call.is_chat:
            message = {"role": "assistant", "content": text}
            return {"index": index, "message": message, "finish_reason": reason, "logprobs": None}
        return {"index": index, "text": text, "finish_reason": reason, "logprobs": None}

    async def stream(self, call: _Call) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if call.is_chat else "text_completion"
        head = call.envelope(obj)
        usage_field = {"usage": None} if call.options.include_usage else {}
        if call.is_chat:
            for index in range(len(call.prompts) * call.options.n):
                delta = {"role": "assistant", "content": ""}
                choice = {"index": index, "delta": delta, "finish_reason": None, "logprobs": None}
                yield sse_event({**head, "choices": [choice], **usage_field})
        completion = 0
        async for index, event in self._events(call):
            if event.finish_reason == "error":
                yield sse_event(ShardgateError(event.error or "generation failed").body())
                return
            if event.finish_reason is not None:
                completion += event.completion_tokens
            if not event.text and event.finish_reason is None:
                continue
            choice = self._delta(call, index, event)
            yield sse_event({**head, "choices": [choice], **usage_field})
        if call.options.include_usage:
            prompt = sum(len(p) for p in call.prompts)
            yield sse_event({**head, "choices": [], "usage": call.usage(completion, prompt)})
        yield SSE_DONE

    def _delta(self, call: _Call, index: int, event: GenerationEvent) -> dict[str, Any]:
        reason = event.finish_reason
        if call.is_chat:
            delta = {"content": event.text} if event.text else {}
            return {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
        return {"index": index, "text": event.text, "finish_reason": reason, "logprobs": None}


async def embeddings(engine: EmbeddingEngine, req: EmbeddingRequest) -> dict[str, Any]:
    raw = req.input
    inputs: list[str | list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif raw and isinstance(raw[0], int):
        inputs = [[int(x) for x in raw]]
    else:
        inputs = list(raw)  # type: ignore[arg-type]
    if any(isinstance(x, str) and not x for x in inputs):
        raise InvalidRequest("input: an input string is empty", param="input")
    try:
        vectors, tokens = await engine.embed(inputs)
    except (ValueError, IndexError, OverflowError, TypeError) as exc:
        raise InvalidRequest(f"input: cannot embed this input ({exc})", param="input") from None
    if req.dimensions is not None and req.dimensions != len(vectors[0]):
        raise InvalidRequest(
            f"dimensions: this model produces {len(vectors[0])}-dimensional vectors",
            param="dimensions",
        )
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": engine.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


async def _merged(streams: list[AsyncIterator[GenerationEvent]]) -> AsyncIterator[Indexed]:
    """Interleave several choices' events as they come; closing stops them all."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield 0, event
        return
    queue: asyncio.Queue[Indexed] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[GenerationEvent]) -> None:
        try:
            async for event in stream:
                await queue.put((index, event))
        except Exception as exc:
            await queue.put((index, GenerationEvent("", 0, 0, "error", str(exc))))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(streams)
    try:
        while remaining:
            index, event = await queue.get()
            remaining -= event.finish_reason is not None
            yield index, event
    finally:
        for task in tasks:
            task.cancel()
