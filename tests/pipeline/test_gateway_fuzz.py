"""Hostile and random bodies never get a 500 or a non-OpenAI error from the gateway."""

from __future__ import annotations

import random
from typing import Any

import httpx

from tests.conftest import CHAT_MODEL, Proc

Stack = tuple[Proc, Proc, str]
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    1e308,
    -0.5,
    "",
    "x",
    "\u0000",
    "\ud7ff" * 3,
    [],
    {},
    [1, "a"],
    {"role": "user"},
    [{"role": "user", "content": "hi"}],
    [[1, 2], [3]],
    "a" * 5000,
]
FIELDS = [
    "model",
    "messages",
    "prompt",
    "input",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "encoding_format",
    "dimensions",
    "logprobs",
    "tools",
    "echo",
    "user",
]


def random_body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"model": CHAT_MODEL}
    for field in rng.sample(FIELDS, rng.randint(1, 6)):
        body[field] = rng.choice(VALUES)
    return body


def test_random_bodies_get_clean_answers(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    rng = random.Random(20261130)
    headers = {"Authorization": f"Bearer {key}"}
    seen: set[int] = set()
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        for _ in range(300):
            path = rng.choice(PATHS)
            response = client.post(path, json=random_body(rng))
            seen.add(response.status_code)
            assert response.status_code in {200, 400, 404, 413}, (path, response.text)
            if response.status_code != 200:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
    assert 400 in seen and 200 in seen


def test_deeply_nested_and_odd_encodings(fake_stack: Stack) -> None:
    gateway, _, key = fake_stack
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [
        b"[" * 5000 + b"]" * 5000,
        b'{"model": "'
        + CHAT_MODEL.encode()
        + b'", "messages": '
        + b"[" * 3000
        + b"]" * 3000
        + b"}",
        b'{"model": "\\ud800"}',
        '{"model": "ü"}'.encode("utf-16"),
        b'{"model": 1e999}',
    ]
    for body in bodies:
        response = httpx.post(
            gateway.url + "/v1/chat/completions", content=body, headers=headers, timeout=10
        )
        assert response.status_code in {400, 404}, (body[:40], response.text)
        assert "error" in response.json()
