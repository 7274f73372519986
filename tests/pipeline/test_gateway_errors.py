"""The gateway's answers to bad input, over HTTP, in front of a fake-engine shard."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL, Proc

Stack = tuple[Proc, Proc, str]


def post(
    stack: Stack,
    path: str,
    content: bytes | None = None,
    json: Any = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    gateway, _, good_key = stack
    all_headers = {"Authorization": f"Bearer {key or good_key}", **(headers or {})}
    return httpx.post(
        gateway.url + path, content=content, json=json, headers=all_headers, timeout=10
    )


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_fake_chat_roundtrip_with_openai_client(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key)
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.choices[0].message.content == "fake fake fake "
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_missing_and_bad_keys_get_401(fake_stack: Stack) -> None:
    gateway, _, _ = fake_stack
    missing = httpx.post(gateway.url + "/v1/chat/completions", json=chat_body())
    assert_error(missing, 401)
    assert_error(post(fake_stack, "/v1/chat/completions", json=chat_body(), key="sk-sg-nope"), 401)
    listing = httpx.get(gateway.url + "/v1/models", headers={"Authorization": "Basic abc"})
    assert_error(listing, 401)


def test_bad_key_message_does_not_reveal_existence(fake_stack: Stack) -> None:
    unknown = post(fake_stack, "/v1/models", key="sk-sg-unknown")
    garbage = post(fake_stack, "/v1/models", key="x" * 600)
    assert unknown.json() == garbage.json()


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b"null"])
def test_malformed_json_gets_400(fake_stack: Stack, body: bytes) -> None:
    assert_error(
        post(
            fake_stack,
            "/v1/chat/completions",
            content=body,
            headers={"Content-Type": "application/json"},
        ),
        400,
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 100}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": "hello"}, "messages"),
        ({"model": 7}, "model"),
        ({"seed": 2**70}, "seed"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, None),
        ({"tools": [{"type": "function"}]}, None),
    ],
)
def test_invalid_fields_get_400_with_param(
    fake_stack: Stack, extra: dict[str, Any], param: str | None
) -> None:
    assert_error(post(fake_stack, "/v1/chat/completions", json=chat_body(**extra)), 400, param)


def test_missing_model_field_gets_400(fake_stack: Stack) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert_error(post(fake_stack, "/v1/chat/completions", json=body), 400, "model")


def test_unknown_model_gets_404(fake_stack: Stack) -> None:
    response = post(fake_stack, "/v1/chat/completions", json=chat_body(model="gpt-17"))
    assert_error(response, 404, "model")
    assert response.json()["error"]["code"] == "model_not_found"


def test_unknown_route_and_wrong_method(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    assert_error(post(fake_stack, "/v1/nothing-here", json={}), 404)
    wrong = httpx.get(
        gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}
    )
    assert_error(wrong, 405)


def test_oversize_body_gets_413(fake_stack: Stack) -> None:
    big = chat_body(messages=[{"role": "user", "content": "x" * 100_000}])
    assert_error(post(fake_stack, "/v1/chat/completions", json=big), 413)


def test_oversize_body_without_content_length_gets_413(fake_stack: Stack) -> None:
    def chunks() -> Any:
        yield b'{"model": "' + b"x" * 70_000 + b'"}'

    gateway, _, key = fake_stack
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=chunks(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert_error(response, 413)


def test_embeddings_input_types(fake_stack: Stack) -> None:
    bad = post(fake_stack, "/v1/embeddings", json={"model": CHAT_MODEL, "input": {"a": 1}})
    assert_error(bad, 400, "input")
    fmt = post(
        fake_stack,
        "/v1/embeddings",
        json={"model": CHAT_MODEL, "input": "x", "encoding_format": "hex"},
    )
    assert_error(fmt, 400, "encoding_format")


def test_streaming_through_gateway_honours_include_usage(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key)

    def stream(**options: Any) -> list[Any]:
        return list(
            client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=4,
                stream=True,
                **options,
            )
        )

    with_usage = stream(stream_options={"include_usage": True})
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 4
    text = "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices)
    assert text == "fake " * 4
    without = stream()
    assert all(c.usage is None for c in without)
    assert without[-1].choices[0].finish_reason == "length"


def test_metrics_count_requests_and_rejections(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    post(fake_stack, "/v1/chat/completions", json=chat_body(max_tokens=2))
    post(fake_stack, "/v1/chat/completions", json=chat_body(), key="sk-sg-wrong")
    text = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {key}"}).text
    assert (
        f'shardgate_requests_total{{model="{CHAT_MODEL}",route="chat.completions",'
        f'status="200"}}' in text
    )
    assert 'status="401"' in text
    assert 'shardgate_auth_failures_total{reason="unknown"}' in text
    assert "shardgate_time_to_first_token_seconds_bucket" in text
    assert f'shardgate_tokens_total{{direction="out",model="{CHAT_MODEL}"}}' in text


def test_in_flight_returns_to_zero_after_streams_and_disconnects(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    body = chat_body(max_tokens=5000, stream=True)
    for _ in range(5):
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ) as response:
            next(response.iter_lines())  # leave after the first event
    gauge = 'shardgate_requests_in_flight{route="chat.completions"}'
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {key}"}).text
        value = next(line for line in text.splitlines() if line.startswith(gauge))
        if value.endswith(" 0.0"):
            break
        assert time.monotonic() < deadline, value
        time.sleep(0.1)
