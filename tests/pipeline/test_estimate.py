"""The token estimate the rate limiter reserves before a request reaches a shard."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from shardgate.pipeline.context import RequestContext
from shardgate.pipeline.ratelimit import estimate_tokens


def context(route: str, payload: dict[str, Any]) -> RequestContext:
    ctx = RequestContext(Request({"type": "http", "headers": []}), route)
    ctx.payload = payload
    ctx.body = orjson.dumps(payload)
    return ctx


def test_prompt_size_plus_max_tokens_for_each_choice() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    for extra, completion in (({"max_tokens": 50}, 50), ({"max_completion_tokens": 9, "n": 2}, 18)):
        body = {**payload, **extra}
        prompt = len(orjson.dumps(body)) // 4 + 1
        assert estimate_tokens(context("chat.completions", body), 256) == prompt + completion


def test_defaults_when_max_tokens_is_missing_and_n_still_counts() -> None:
    payload = {"model": "m", "prompt": "hi", "n": 3}
    prompt = len(orjson.dumps(payload)) // 4 + 1
    assert estimate_tokens(context("completions", payload), 256) == prompt + 256 * 3
    bad = {"model": "m", "prompt": "hi", "n": "x", "max_tokens": -1}
    assert (
        estimate_tokens(context("completions", bad), 100) == len(orjson.dumps(bad)) // 4 + 1 + 100
    )


def test_embeddings_count_the_input_only_and_other_routes_nothing() -> None:
    payload = {"model": "e", "input": "y" * 800}
    assert (
        estimate_tokens(context("embeddings", payload), 256) == len(orjson.dumps(payload)) // 4 + 1
    )
    assert estimate_tokens(context("models", {}), 256) == 0
