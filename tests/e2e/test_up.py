"""End to end: the real ``shardgate up`` stack, driven with the official openai client."""

from __future__ import annotations

import base64
import os
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.conftest import CHAT_MODEL, EMBEDDING_MODEL, QUESTIONS, Proc, start, wait_ready

KEY = "sk-sg-e2e-admin-key-0123456789abcdef"
# A prompt with a long answer. Not "Write a very long story.": the default content filter
# blocks that one (a known false positive of the harmful-request head, in the README).
LONG_ANSWER = "Explain how a car engine works, step by step, in detail."


@pytest.fixture(scope="module")
def stack(module_tmp: Path, chat_model_dir: Path) -> Iterator[Proc]:
    from shardgate.serve import free_port

    up = start(
        ["up", "--data-dir", str(module_tmp / "data")],
        module_tmp,
        free_port(),
        # Rate-limit counters in the real Redis, as several gateways would share them.
        env={
            "SHARDGATE_BOOTSTRAP_KEY": KEY,
            "SHARDGATE_COUNTERS__BACKEND": "redis",
            "SHARDGATE_COUNTERS__NAMESPACE": f"test-up-{os.getpid()}-{time.time_ns()}",
        },
    )
    try:
        wait_ready(up, 240)
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def client(stack: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def ask(client: openai.OpenAI, question: str, model: str = CHAT_MODEL, max_tokens: int = 24) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=max_tokens,
    )
    return reply.choices[0].message.content or ""


def ask_streaming(client: openai.OpenAI, question: str) -> tuple[str, str | None]:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=24,
        stream=True,
    )
    text, reason = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            reason = chunk.choices[0].finish_reason or reason
    return text, reason


def test_models_are_listed(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == {CHAT_MODEL, EMBEDDING_MODEL}


def test_chat_answers_with_real_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": QUESTIONS[0]}],
        temperature=0,
        max_completion_tokens=20,
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 10
    assert 0 < reply.usage.completion_tokens <= 20


def test_max_tokens_gives_finish_reason_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=CHAT_MODEL,
        # Not "Tell me a long story.": the default content filter blocks that one (a known
        # false positive of the harmful-request head, listed in the README).
        messages=[{"role": "user", "content": "Describe the history of Rome in detail."}],
        max_tokens=5,
        seed=1,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 5


def test_streaming_chat_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": QUESTIONS[0]}],
            temperature=0,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ask(client, QUESTIONS[0], max_tokens=20)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2


def test_n_and_seed(client: openai.OpenAI) -> None:
    def sample() -> list[str]:
        reply = client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Invent a name."}],
            n=2,
            seed=42,
            temperature=1.0,
            max_tokens=8,
        )
        assert [c.index for c in reply.choices] == [0, 1]
        return [c.message.content or "" for c in reply.choices]

    assert sample() == sample()


def test_completion_plain_streaming_and_stop(client: openai.OpenAI) -> None:
    plain = client.completions.create(
        model=CHAT_MODEL, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    text = plain.choices[0].text
    assert text and plain.usage is not None and plain.usage.completion_tokens > 0
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=CHAT_MODEL,
            prompt="The capital of France is",
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        if c.choices
    )
    assert streamed == text
    word = text.split()[0]
    stopped = client.completions.create(
        model=CHAT_MODEL,
        prompt="The capital of France is",
        max_tokens=8,
        temperature=0,
        stop=[word],
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert word not in stopped.choices[0].text


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(
        model=EMBEDDING_MODEL, input=["a cat", "a kitten", "tax"], encoding_format="float"
    )
    vectors = [d.embedding for d in floats.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    raw = httpx.post(
        client.base_url.join("embeddings").__str__(),
        json={"model": EMBEDDING_MODEL, "input": "a cat", "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    decoded = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(vectors[0], abs=1e-5)
    assert raw["usage"]["prompt_tokens"] > 0


def test_eight_concurrent_streams_match_their_solo_answers(client: openai.OpenAI) -> None:
    solo = [ask(client, q) for q in QUESTIONS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        streamed = list(pool.map(lambda q: ask_streaming(client, q), QUESTIONS))
    for (text, reason), expected in zip(streamed, solo, strict=True):
        assert reason in {"stop", "length"}
        assert text == expected


def test_tokens_per_minute_settle_to_the_real_usage(stack: Proc) -> None:
    admin = {"Authorization": f"Bearer {KEY}"}
    httpx.post(stack.url + "/admin/v1/tenants", json={"name": "tpm-test"}, headers=admin)
    created = httpx.post(
        stack.url + "/admin/v1/keys",
        json={"tenant": "tpm-test", "endpoints": ["chat"], "models": ["*"], "limits": {"tpm": 400}},
        headers=admin,
    ).json()
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key=created["key"], max_retries=0)

    def ask_raw() -> tuple[int, int]:
        """(real tokens used, remaining tokens the gateway advertised)."""
        raw = client.chat.completions.with_raw_response.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": QUESTIONS[3]}],
            temperature=0,
            max_tokens=200,
        )
        usage = raw.parse().usage
        assert usage is not None
        return usage.total_tokens, int(raw.headers["x-ratelimit-remaining-tokens"])

    used, first_remaining = ask_raw()
    estimate = 400 - first_remaining  # the prompt's size and max_tokens: about 230
    assert estimate > 200 and used < 100  # the model stops long before 200 tokens
    # Without settling, 400 - 2 x estimate < 0 and this would be refused.
    _, second_remaining = ask_raw()
    assert abs(second_remaining - (400 - used - estimate)) <= 20  # what refills meanwhile


def test_bad_key_and_bad_input(stack: Proc, client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=stack.url + "/v1", api_key="sk-sg-wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        ask(client, "hi", model="no-such-model")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=CHAT_MODEL, messages=[], max_tokens=5)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = stack.url + "/v1/chat/completions"
    assert httpx.post(url, content=b'{"model":', headers=headers).status_code == 400
    wrong_type = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": 5}]}
    assert httpx.post(url, json=wrong_type, headers=headers).status_code == 400
    huge = b'{"model": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    response = httpx.post(url, content=huge, headers=headers)
    assert response.status_code == 413 and "error" in response.json()
    empty = {"model": CHAT_MODEL, "prompt": ""}
    response = httpx.post(stack.url + "/v1/completions", json=empty, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
    ids = {"model": EMBEDDING_MODEL, "input": [[1, 2, 10**9]]}
    response = httpx.post(stack.url + "/v1/embeddings", json=ids, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"
    filler = "The quick brown fox jumps over the lazy dog. " * 700  # ~6,300 tokens
    long_prompt = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": filler}]}
    response = httpx.post(url, json=long_prompt, headers=headers, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def chat_shard(stack: Proc) -> psutil.Process:
    return next(
        p
        for p in psutil.Process(stack.process.pid).children()
        if "shard" in p.cmdline() and CHAT_MODEL in " ".join(p.cmdline())
    )


def running_sequences(stack: Proc) -> float:
    argv = chat_shard(stack).cmdline()
    port = argv[argv.index("--port") + 1]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    line = next(
        x for x in metrics.splitlines() if x.startswith("shardgate_shard_running_sequences{")
    )
    return float(line.rsplit(" ", 1)[1])


def test_client_disconnect_aborts_and_frees_the_slot(stack: Proc) -> None:
    body = {
        "model": CHAT_MODEL,
        "max_tokens": 400,
        "stream": True,
        "temperature": 0.8,
        "messages": [{"role": "user", "content": LONG_ANSWER}],
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", stack.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert running_sequences(stack) == 1
    deadline = time.monotonic() + 5
    while running_sequences(stack) != 0:
        assert time.monotonic() < deadline, "the sequence kept its slot after the client left"
        time.sleep(0.1)


def test_shard_death_mid_stream_then_503_then_recovery(stack: Proc, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": LONG_ANSWER}],
        max_tokens=400,
        temperature=0.8,
        stream=True,
    )
    received = 0
    with pytest.raises(openai.APIError, match="shard"):
        for _chunk in stream:
            received += 1
            if received == 3:
                chat_shard(stack).kill()
    assert received >= 3
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, QUESTIONS[0])
    assert caught.value.status_code == 503
    assert caught.value.body is not None and "shard" in str(caught.value.body)
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 120
    while httpx.get(stack.url + "/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the supervisor did not bring the shard back"
        time.sleep(0.5)
    assert "Paris" in ask(client, QUESTIONS[0])
    assert "restarting" in stack.output()
