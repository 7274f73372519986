"""Rate limits end to end: three gateway processes sharing Redis and PostgreSQL in front
of a fake-engine shard, as when gateways scale out behind a load balancer."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL, Proc, fake_gateways, start, wait_ready

ADMIN = "sk-sg-limits-admin-key-0123456789abcdef"


@pytest.fixture(scope="module")
def gateways(module_tmp: Path, new_postgres_database: Callable[[], str]) -> Iterator[list[Proc]]:
    env = {
        "SHARDGATE_DATABASE_URL": new_postgres_database(),
        "SHARDGATE_BOOTSTRAP_KEY": ADMIN,
        "SHARDGATE_GATEWAY_REPLICAS": "3",
        "SHARDGATE_COUNTERS__BACKEND": "redis",
        "SHARDGATE_COUNTERS__NAMESPACE": f"test-{secrets.token_hex(4)}",
        "SHARDGATE_AUTH__CACHE_TTL_S": "1",
    }
    with fake_gateways(module_tmp, [env] * 3) as (_, procs):
        yield procs


def admin(gateway: Proc, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method,
        gateway.url + "/admin/v1" + path,
        json=body,
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def limited_key(gateway: Proc, **limits: int) -> dict[str, Any]:
    tenant = f"t-{secrets.token_hex(3)}"
    admin(gateway, "POST", "/tenants", {"name": tenant})
    body = {"tenant": tenant, "endpoints": ["chat"], "models": ["*"], "limits": limits}
    key: dict[str, Any] = admin(gateway, "POST", "/keys", body)
    return key


def chat(gateway: Proc, key: str, max_tokens: int = 1) -> httpx.Response:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**body, "max_tokens": max_tokens},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_concurrent_burst_across_three_gateways_admits_exactly_the_limit(
    gateways: list[Proc],
) -> None:
    key = limited_key(gateways[0], rpm=10)["key"]
    with ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(lambda i: chat(gateways[i % 3], key), range(30)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    admitted = [r for r in responses if r.status_code == 200]
    assert all(r.headers["x-ratelimit-limit-requests"] == "10" for r in admitted)
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted)
    assert remaining == list(range(10))  # one count, shared by the three gateways


def test_every_response_of_a_limited_key_carries_the_headers(gateways: list[Proc]) -> None:
    key = limited_key(gateways[1], rpm=100, tpm=10_000)["key"]
    client = openai.OpenAI(base_url=gateways[1].url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    for name in ("requests", "tokens"):
        for part in ("limit", "remaining", "reset"):
            assert raw.headers.get(f"x-ratelimit-{part}-{name}"), (part, name)
    missing = httpx.post(  # refused after admission (no such model): the headers are there
        gateways[1].url + "/v1/chat/completions",
        json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert missing.status_code == 404 and "x-ratelimit-remaining-requests" in missing.headers


def test_an_exhausted_budget_is_a_hard_stop_until_it_is_raised(gateways: list[Proc]) -> None:
    key = limited_key(gateways[0], daily_tokens=30)
    client = openai.OpenAI(base_url=gateways[2].url + "/v1", api_key=key["key"], max_retries=0)
    for _ in range(2):  # 1 prompt + 20 completion tokens each: the second passes 30
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert caught.value.code == "insufficient_quota"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "insufficient_quota"
    admin(gateways[0], "PATCH", f"/keys/{key['id']}", {"limits": {"daily_tokens": 1000}})
    assert chat(gateways[0], key["key"]).status_code == 200  # at once where it was changed
    deadline = time.monotonic() + 2.0  # elsewhere within the key cache's TTL (1 s here)
    while chat(gateways[2], key["key"]).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_in_process_counters_refuse_several_replicas(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shardgate", "gateway", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SHARDGATE_GATEWAY_REPLICAS": "2"},
    )
    assert result.returncode == 2
    assert "counters.backend is 'memory'" in result.stderr


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_an_unreachable_redis_fails_as_configured(
    module_tmp: Path, gateways: list[Proc], mode: str
) -> None:
    from shardgate.serve import free_port

    shard_url = gateways[0].url  # any reachable gateway stands in; the request never gets far
    key = "sk-sg-redis-down-admin-0123456789abcdef"
    gateway = start(
        ["gateway", "--data-dir", str(module_tmp / f"down-{mode}"), "--shard", shard_url],
        module_tmp,
        free_port(),
        env={
            "SHARDGATE_BOOTSTRAP_KEY": key,
            "SHARDGATE_COUNTERS__BACKEND": "redis",
            "SHARDGATE_COUNTERS__REDIS_URL": "redis://127.0.0.1:1/0",
            "SHARDGATE_COUNTERS__ON_ERROR": mode,
            "SHARDGATE_KEY_LIMITS__RPM": "1000",  # every key is limited, the admin's too
        },
    )
    try:
        wait_ready(gateway, 60, path="/healthz")
        headers = {"Authorization": f"Bearer {key}"}
        statuses = [
            httpx.get(gateway.url + "/v1/models", headers=headers).status_code for _ in range(3)
        ]
        assert statuses == ([503] * 3 if mode == "closed" else [200] * 3)
        metrics = httpx.get(gateway.url + "/metrics", headers=headers).text
        assert f'shardgate_counter_store_switches_total{{to="fail_{mode}"}} 1.0' in metrics
        assert "shardgate_counter_store_errors_total 3.0" in metrics
    finally:
        gateway.stop()
    assert f"failing {mode}" in gateway.output()
