"""Two gateway processes on one PostgreSQL database, as when gateways scale out: keys made
by the CLI work on both, and a revocation on one reaches the other within the cache TTL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHAT_MODEL, Proc, fake_gateways

ADMIN = "sk-sg-postgres-admin-key-0123456789abcdef"
TTL_S = 1.0


@pytest.fixture(scope="module")
def gateways(
    module_tmp: Path, new_postgres_database: Callable[[], str]
) -> Iterator[tuple[Proc, Proc, str]]:
    url = new_postgres_database()
    env = {
        "SHARDGATE_DATABASE_URL": url,
        "SHARDGATE_BOOTSTRAP_KEY": ADMIN,
        "SHARDGATE_AUTH__CACHE_TTL_S": str(TTL_S),
    }
    with fake_gateways(module_tmp, [env] * 2) as (_, (first, second)):
        yield first, second, url


def chat(gateway: Proc, key: str) -> int:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers).status_code


def cli(url: str, *args: str) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "shardgate", *args, "--database-url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


def test_revocation_reaches_every_gateway_within_the_ttl(gateways: tuple[Proc, Proc, str]) -> None:
    first, second, url = gateways
    cli(url, "tenants", "create", "shared")
    key = cli(url, "keys", "create", "--tenant", "shared", "--endpoints", "chat", "--models", "*")
    assert chat(first, key["key"]) == 200 and chat(second, key["key"]) == 200  # both cached now
    revoke = httpx.post(
        f"{first.url}/admin/v1/keys/{key['id']}/revoke",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert revoke.status_code == 200
    revoked_at = time.monotonic()
    assert chat(first, key["key"]) == 401  # the gateway that revoked it forgets it at once
    while chat(second, key["key"]) != 401:
        assert time.monotonic() - revoked_at < TTL_S + 1.0, "revocation did not arrive in time"
        time.sleep(0.02)
    delay = time.monotonic() - revoked_at
    print(f"revocation reached the second gateway after {delay:.2f}s (TTL {TTL_S}s)")
    assert delay <= TTL_S + 1.0
