"""Edge protection over HTTP: a fake-engine shard behind two gateways.

``guarded`` trusts X-Forwarded-For from 127.0.0.1, cuts bodies off after 1 s and sheds
requests when the shard has 2 of its requests in flight; ``plain`` trusts no proxy and
admits 2 requests at once. Both allow 5 failed requests per address per minute. Clients
take distinct loopback addresses (all of 127.0.0.0/8 is loopback on Linux), so that each
test starts with a clean count.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHAT_MODEL, Proc, fake_gateways

KEY = "sk-sg-edge-tests-key-0123456789"
FAILURES = 5  # per address per minute
CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
STREAM = {**CHAT, "max_tokens": 100_000, "stream": True}


COMMON_ENV = {
    "SHARDGATE_BOOTSTRAP_KEY": KEY,
    "SHARDGATE_EDGE__FAILED_PER_IP_PER_MINUTE": str(FAILURES),
    "SHARDGATE_SHARD_HEALTH_INTERVAL_S": "0.2",
}
GATEWAY_ENV = {
    "guarded": {
        "SHARDGATE_EDGE__TRUSTED_PROXIES": "127.0.0.1",
        "SHARDGATE_EDGE__BODY_TIMEOUT_S": "1",
        "SHARDGATE_EDGE__MAX_SHARD_QUEUE": "2",
        "SHARDGATE_MAX_BODY_BYTES": "65536",
    },
    "plain": {"SHARDGATE_MAX_CONCURRENT_REQUESTS": "2"},
}


@dataclass
class Stack:
    guarded: Proc
    plain: Proc


@pytest.fixture(scope="module")
def stack(module_tmp: Path) -> Iterator[Stack]:
    envs = [{**COMMON_ENV, **env} for env in GATEWAY_ENV.values()]
    shard_env = {"SHARDGATE_ENGINE__FAKE_TOKEN_DELAY_S": "0.005"}  # streams last, unread or not
    with fake_gateways(module_tmp, envs, shard_env) as (_, gateways):
        yield Stack(*gateways)


def client(source: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from ``source``."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)


def chat(
    http: httpx.Client, gateway: Proc, key: str | None = KEY, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return http.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=headers)


def list_models(http: httpx.Client, gateway: Proc) -> httpx.Response:
    return http.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})


def metric(gateway: Proc, sample: str) -> float:
    """A sample's value from the gateway's /metrics (0 when absent)."""
    with client() as http:
        text = http.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


@contextlib.contextmanager
def open_streams(gateway: Proc, count: int) -> Iterator[list[Iterator[str]]]:
    """``count`` streaming requests held open, each read to its first event."""
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(client())
        lines = []
        for _ in range(count):
            response = stack.enter_context(
                http.stream(
                    "POST",
                    gateway.url + "/v1/chat/completions",
                    json=STREAM,
                    headers={"Authorization": f"Bearer {KEY}"},
                )
            )
            assert response.status_code == 200
            line = response.iter_lines()
            assert next(line).startswith("data: ")
            lines.append(line)
        yield lines


def test_a_body_sent_too_slowly_is_cut_off_with_408(stack: Stack) -> None:
    gateway = stack.guarded
    before = metric(gateway, 'shardgate_rejections_total{reason="body_timeout"}')
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{"
    )
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        answer = b""
        with contextlib.suppress(ConnectionError):
            while time.monotonic() - started < 5:
                sock.settimeout(0.2)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    sock.sendall(b" ")  # one byte every 0.2 s: alive, but far too slow
                    continue
                if not chunk:
                    break  # closed by the gateway
                answer += chunk
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"connection: close" in answer.lower() and b'"request_timeout"' in answer
    assert metric(gateway, 'shardgate_rejections_total{reason="body_timeout"}') == before + 1


def test_an_oversize_body_gets_413_and_is_counted(stack: Stack) -> None:
    gateway = stack.guarded
    before = metric(gateway, 'shardgate_rejections_total{reason="body_too_large"}')
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 100_000}]}
    with client() as http:
        response = http.post(
            gateway.url + "/v1/chat/completions",
            json=big,
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert_error(response, 413, "payload_too_large")
    assert metric(gateway, 'shardgate_rejections_total{reason="body_too_large"}') == before + 1


def test_a_flood_of_bad_keys_is_throttled_per_address(stack: Stack) -> None:
    gateway = stack.guarded
    unknown = 'shardgate_auth_failures_total{reason="unknown"}'
    missing = 'shardgate_auth_failures_total{reason="missing"}'
    before = metric(gateway, unknown), metric(gateway, missing)
    with client("127.0.0.2") as flood, client("127.0.0.3") as other:
        first = [chat(flood, gateway, key=None)]
        first += [chat(flood, gateway, f"sk-sg-{i}") for i in range(FAILURES - 1)]
        assert [r.status_code for r in first] == [401] * FAILURES
        throttled = [chat(flood, gateway, f"sk-sg-more-{i}") for i in range(20)]
        throttled.append(chat(flood, gateway, key=None))
        assert {r.status_code for r in throttled} == {429}
        error = assert_error(throttled[0], 429, "ip_rate_limited")
        assert error["type"] == "requests"
        assert 1 <= int(throttled[0].headers["Retry-After"]) <= 60 // FAILURES
        # Only the first five reached authentication.
        after = metric(gateway, unknown), metric(gateway, missing)
        assert after == (before[0] + FAILURES - 1, before[1] + 1)
        # Another address with a valid key is served throughout.
        assert chat(other, gateway).status_code == 200
        assert chat(flood, gateway, "sk-sg-last").status_code == 429
        assert chat(other, gateway).status_code == 200
        # The flooding address is refused before its key is checked, a valid key included.
        assert chat(flood, gateway).status_code == 429
    assert metric(gateway, 'shardgate_rejections_total{reason="ip_rate"}') >= 23


def test_valid_requests_use_none_of_the_allowance(stack: Stack) -> None:
    with client("127.0.0.4") as http:
        for _ in range(3 * FAILURES):
            assert chat(http, stack.guarded).status_code == 200
        bad = [chat(http, stack.guarded, "sk-sg-bad").status_code for _ in range(FAILURES + 1)]
    assert bad == [401] * FAILURES + [429]


def test_clients_of_a_trusted_proxy_are_throttled_apart(stack: Stack) -> None:
    gateway = stack.guarded
    with client("127.0.0.1") as proxy:

        def bad(forwarded_for: str) -> int:
            return chat(proxy, gateway, "sk-sg-bad", forwarded_for).status_code

        assert [bad("198.51.100.1") for _ in range(FAILURES + 1)] == [401] * FAILURES + [429]
        assert bad("203.0.113.50, 198.51.100.1") == 429  # what the client wrote is ignored
        assert bad("198.51.100.2") == 401
        assert chat(proxy, gateway, forwarded_for="198.51.100.1").status_code == 429
        assert chat(proxy, gateway, forwarded_for="198.51.100.3").status_code == 200
        assert chat(proxy, gateway).status_code == 200  # the proxy's own address


@pytest.mark.parametrize(
    ("gateway_name", "source"),
    [("plain", "127.0.0.5"), ("guarded", "127.0.0.6")],  # guarded: a peer it does not trust
)
def test_forwarded_for_is_ignored_from_untrusted_peers(
    stack: Stack, gateway_name: str, source: str
) -> None:
    gateway = getattr(stack, gateway_name)
    with client(source) as http:
        statuses = [
            chat(http, gateway, "sk-sg-bad", f"198.51.100.{i}").status_code
            for i in range(FAILURES + 1)
        ]
    assert statuses == [401] * FAILURES + [429]


def test_overload_is_shed_with_503_and_the_gateway_recovers(stack: Stack) -> None:
    gateway = stack.plain
    with client() as http:
        with open_streams(gateway, 2) as streams:
            shed = chat(http, gateway)
            assert_error(shed, 503, "overloaded")
            assert shed.headers["Retry-After"] == "1"
            listing = list_models(http, gateway)
            assert listing.status_code == 503
            for stream in streams:  # the admitted requests go on
                for _ in range(20):
                    next(stream)
        deadline = time.monotonic() + 5
        while chat(http, gateway).status_code != 200:
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.05)
        assert [chat(http, gateway).status_code for _ in range(10)] == [200] * 10
    assert metric(gateway, 'shardgate_rejections_total{reason="overloaded"}') >= 2


def test_busy_shards_shed_new_requests_until_the_queue_drains(stack: Stack) -> None:
    gateway = stack.guarded
    with client() as http:
        with open_streams(gateway, 2) as streams:
            shed = chat(http, gateway)
            assert_error(shed, 503, "shards_busy")
            assert shed.headers["Retry-After"] == "1"
            # Requests that need no shard are served, and the admitted streams go on.
            listing = list_models(http, gateway)
            assert listing.status_code == 200
            for stream in streams:
                for _ in range(20):
                    next(stream)
        deadline = time.monotonic() + 5
        while chat(http, gateway).status_code != 200:
            assert time.monotonic() < deadline, "the shard queue did not drain"
            time.sleep(0.05)
    assert metric(gateway, 'shardgate_rejections_total{reason="shard_queue"}') >= 1
