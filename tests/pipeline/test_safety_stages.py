"""The content filter and safety monitor stages, in process, with a real SQLite store and the
real pattern and toxicity detectors. The MiniLM classifiers are exercised end to end
(tests/e2e/test_safety.py); here their loader fails on purpose, to test fail-open/closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shardgate.errors import ContentFiltered, SafetyUnavailable
from shardgate.metrics import GatewayMetrics
from shardgate.pipeline.contentfilter import ContentFilter, TenantPolicies
from shardgate.pipeline.context import RequestContext
from shardgate.pipeline.safetymonitor import SafetyMonitor
from shardgate.safety.events import SafetyEventLog
from shardgate.safety.policy import SafetyPolicy, merge_policy
from shardgate.safety.scanner import SafetyScanner
from shardgate.settings import SafetySettings
from shardgate.store import Principal, SqlStore, connect, upgrade
from tests.conftest import MODEL_CACHE

EMAIL = "jane.doe@example.com"
# The classifiers' verdicts are tested end to end; here they are left out of the policy.
NO_CLASSIFIERS: dict[str, Any] = {
    "input": {"injection": "allow", "harmful": "allow", "toxicity": "allow"},
    "output": {"harmful": "allow", "toxicity": "allow"},
}


def broken_classifier(weights: Path) -> Any:
    raise OSError(f"cannot read {weights}/injection.npz")


class Gateway:
    """The two stages around a terminal handler that plays the shard."""

    def __init__(self, store: SqlStore, settings: SafetySettings) -> None:
        self.store = store
        self.metrics = GatewayMetrics()
        self.scanner = SafetyScanner(MODEL_CACHE / "safety", load_classifier=broken_classifier)
        self.events = SafetyEventLog(store, self.metrics)
        policies = TenantPolicies(store, settings.policy, ttl_s=60)
        self.filter = ContentFilter(self.scanner, policies, self.events, settings, self.metrics)
        self.monitor = SafetyMonitor(self.scanner, self.events, settings, self.metrics)
        self.forwarded: dict[str, Any] = {}

    async def call(
        self, payload: dict[str, Any], reply: Response, tenant: str = "acme"
    ) -> tuple[RequestContext, Response]:
        ctx = context(payload, tenant)

        async def shard(ctx: RequestContext) -> Response:
            self.forwarded = orjson.loads(orjson.dumps(ctx.payload))
            return reply

        async def monitored(ctx: RequestContext) -> Response:
            return await self.monitor(ctx, shard)

        return ctx, await self.filter(ctx, monitored)

    async def saved_events(self) -> list[tuple[str, str, str, str]]:
        await self.events.flush()
        return [
            (e.stage, e.detector, e.category, e.action)
            for e in reversed(await self.store.list_safety_events())
        ]


def context(payload: dict[str, Any], tenant: str) -> RequestContext:
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    ctx = RequestContext(request, "chat.completions")
    ctx.payload, ctx.body = payload, orjson.dumps(payload)
    ctx.stream = bool(payload.get("stream"))
    ctx.principal = Principal("key_1", tenant, "user", frozenset({"*"}), frozenset({"*"}))
    return ctx


def chat(*messages: tuple[str, str], stream: bool = False) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": r, "content": c} for r, c in messages],
        "stream": stream,
    }


def answer(text: str) -> Response:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }
    return Response(orjson.dumps(body), media_type="application/json")


def streamed(*pieces: str) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": piece},
                        "finish_reason": "stop" if last else None,
                    }
                ],
            }
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def read_stream(response: Response) -> tuple[str, list[str | None], bool]:
    """(the text, the finish reasons, whether [DONE] came) of a relayed stream."""
    assert isinstance(response, StreamingResponse)
    text, reasons, done = "", [], False
    async for event in response.body_iterator:
        assert isinstance(event, bytes)
        if event == b"data: [DONE]\n\n":
            done = True
            continue
        for choice in orjson.loads(event[6:])["choices"]:
            text += choice["delta"].get("content") or ""
            reasons.append(choice["finish_reason"])
    return text, reasons, done


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")
    await upgrade(engine)
    store = SqlStore(engine)
    await store.create_tenant("acme")
    await store.create_tenant("strict")
    yield store
    await store.close()


def settings(**override: Any) -> SafetySettings:
    quiet = merge_policy(SafetyPolicy(), NO_CLASSIFIERS)
    policy = merge_policy(quiet, override.pop("policy", {}))
    return SafetySettings(policy=policy, **override)


@pytest.fixture
async def gateway(store: SqlStore) -> AsyncIterator[Gateway]:
    gw = Gateway(store, settings(output_stride_chars=16, output_window_chars=64))
    await gw.scanner.start()
    yield gw
    gw.scanner.close()


async def test_pii_is_redacted_for_the_model_and_restored_for_the_caller(gateway: Gateway) -> None:
    payload = chat(("system", "Be brief."), ("user", f"Write to {EMAIL} and {EMAIL} today"))
    _, response = await gateway.call(payload, answer("Sent to [EMAIL_1]. Not [EMAIL_9]."))
    assert gateway.forwarded["messages"][1]["content"] == "Write to [EMAIL_1] and [EMAIL_1] today"
    body = orjson.loads(bytes(response.body))
    assert body["choices"][0]["message"]["content"] == f"Sent to {EMAIL}. Not [EMAIL_9]."
    events = await gateway.saved_events()
    assert events == [("input", "pii", "pii.email", "redact")]
    assert EMAIL not in repr(await gateway.store.list_safety_events())


async def test_placeholders_split_across_stream_chunks_are_restored(gateway: Gateway) -> None:
    payload = chat(("user", f"My address is {EMAIL}"), stream=True)
    _, response = await gateway.call(payload, streamed("Your address: [EMA", "IL_", "1]", " ok"))
    text, reasons, done = await read_stream(response)
    assert text == f"Your address: {EMAIL} ok"
    assert reasons[-1] == "stop" and done


async def test_without_restore_the_caller_sees_the_placeholders(store: SqlStore) -> None:
    gw = Gateway(store, settings(policy={"restore": False}))
    await gw.scanner.start()
    _, response = await gw.call(chat(("user", f"mail {EMAIL}")), answer("ok [EMAIL_1]"))
    assert orjson.loads(bytes(response.body))["choices"][0]["message"]["content"] == "ok [EMAIL_1]"


async def test_a_blocked_request_names_its_category_and_never_reaches_the_shard(
    store: SqlStore,
) -> None:
    gw = Gateway(store, settings(policy={"deny_terms": ["project zeus"]}))
    await gw.scanner.start()
    with pytest.raises(ContentFiltered) as caught:
        await gw.call(chat(("user", "Tell me about Project Zeus")), answer("never"))
    assert caught.value.status_code == 400 and caught.value.code == "content_filtered"
    assert "deny" in caught.value.message and caught.value.param == "messages"
    assert gw.forwarded == {}
    assert await gw.saved_events() == [("input", "deny", "deny", "block")]


async def test_two_tenants_get_their_own_policies(store: SqlStore, gateway: Gateway) -> None:
    await store.set_tenant_safety_policy("strict", {"input": {"pii": "block"}})
    _, response = await gateway.call(chat(("user", f"mail {EMAIL}")), answer("ok"), "acme")
    assert response.status_code == 200 and "[EMAIL_1]" in str(gateway.forwarded)
    with pytest.raises(ContentFiltered) as caught:
        await gateway.call(chat(("user", f"mail {EMAIL}")), answer("ok"), "strict")
    assert "pii.email" in caught.value.message


async def test_a_failed_detector_refuses_when_closed_and_is_skipped_when_open(
    store: SqlStore,
) -> None:
    strict = settings(policy={"input": {"injection": "block"}})
    gw = Gateway(store, strict)
    await gw.scanner.start()
    with pytest.raises(SafetyUnavailable) as caught:
        await gw.call(chat(("user", "hello")), answer("hi"))
    assert caught.value.status_code == 503 and "injection" in caught.value.message

    lenient = settings(policy={"input": {"injection": "block"}}, on_error={"injection": "open"})
    gw = Gateway(store, lenient)
    await gw.scanner.start()
    _, response = await gw.call(chat(("user", "hello")), answer("hi"))
    assert response.status_code == 200
    errors = gw.metrics.safety_detector_errors.labels("injection", "open")._value.get()
    assert errors == 1
    assert ("input", "injection", "error", "error") in await gw.saved_events()


async def test_a_blocked_span_in_a_stream_is_never_sent(store: SqlStore) -> None:
    gw = Gateway(store, settings(policy={"deny_terms": ["zeus"]}, output_stride_chars=16))
    await gw.scanner.start()
    pieces = ["The ", "secret ", "project ", "is ", "called ", "Zeus ", *["and more. "] * 30]
    _, response = await gw.call(chat(("user", "what is it?"), stream=True), streamed(*pieces))
    text, reasons, done = await read_stream(response)
    # The pattern detectors read the window before each chunk goes out.
    assert text == "The secret project is called "
    assert reasons[-1] == "content_filter" and "stop" not in reasons and done
    assert ("output", "deny", "deny", "block") in await gw.saved_events()


async def test_the_toxicity_model_cuts_a_stream_within_a_stride(store: SqlStore) -> None:
    gw = Gateway(
        store,
        settings(policy={"output": {"toxicity": "block"}}, output_stride_chars=16),
    )
    await gw.scanner.start()
    calm = ["The weather ", "is mild ", "today. "]
    rude = ["You are ", "a stupid, ", "worthless idiot ", "and I hate you. "]
    pieces = [*calm, *rude, *["We walked along the quiet river. "] * 40]
    _, response = await gw.call(chat(("user", "hi"), stream=True), streamed(*pieces))
    text, reasons, done = await read_stream(response)
    assert reasons[-1] == "content_filter" and done
    # Model checks run in the background, one per 16 new characters: the cut comes a few
    # chunks after the insult, not at the end of the answer.
    assert text.startswith("".join(calm)) and len(text) < len("".join(pieces[:12]))
    assert any(e[1] == "toxicity" and e[3] == "block" for e in await gw.saved_events())


async def test_the_last_words_are_checked_before_the_stream_finishes(store: SqlStore) -> None:
    gw = Gateway(store, settings(policy={"deny_terms": ["zeus"]}, output_stride_chars=512))
    await gw.scanner.start()
    _, response = await gw.call(chat(("user", "hi"), stream=True), streamed("It is ", "Zeus"))
    text, reasons, done = await read_stream(response)
    assert text == "It is " and reasons[-1] == "content_filter" and done


async def test_a_whole_answer_is_withheld_from_the_violation(store: SqlStore) -> None:
    gw = Gateway(store, settings(policy={"output": {"pii": "block"}}, output_window_chars=64))
    await gw.scanner.start()
    text = "Here is a long and friendly answer. " * 4 + f"Write to {EMAIL} for more."
    _, response = await gw.call(chat(("user", "hi")), answer(text))
    choice = orjson.loads(bytes(response.body))["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert EMAIL not in choice["message"]["content"]
    assert choice["message"]["content"] and text.startswith(choice["message"]["content"])


async def test_a_completion_stream_with_two_choices_is_cut_for_both(store: SqlStore) -> None:
    gw = Gateway(store, settings(policy={"deny_terms": ["zeus"]}))
    await gw.scanner.start()

    async def events() -> AsyncIterator[bytes]:
        for index, text in ((0, "All fine "), (1, "Also fine "), (0, "until Zeus "), (1, "x")):
            chunk = {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": index, "text": text, "finish_reason": None}],
            }
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"

    ctx = context({"model": "m", "prompt": "go", "stream": True, "n": 2}, "acme")
    ctx.route = "completions"

    async def shard(ctx: RequestContext) -> Response:
        return StreamingResponse(events(), media_type="text/event-stream")

    async def monitored(ctx: RequestContext) -> Response:
        return await gw.monitor(ctx, shard)

    response = await gw.filter(ctx, monitored)
    assert isinstance(response, StreamingResponse)
    chunks = [c async for c in response.body_iterator]
    assert chunks[-1] == b"data: [DONE]\n\n"
    last = orjson.loads(chunks[-2][6:])
    assert last["object"] == "text_completion"
    assert last["choices"] == [
        {"index": 0, "text": "", "logprobs": None, "finish_reason": "content_filter"},
        {"index": 1, "text": "", "logprobs": None, "finish_reason": "content_filter"},
    ]
    assert b"Zeus" not in b"".join(chunks)
