"""End to end: tenants, keys, roles and scopes through the admin API and the CLI, against
real gateway processes in front of a fake-engine shard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL, Proc, fake_gateways

ADMIN = "sk-sg-identity-admin-key-0123456789abcdef"
TTL_S = 1.0  # the gateways' key cache: the bound on revocation delay across processes


@pytest.fixture(scope="module")
def stack(module_tmp: Path) -> Iterator[tuple[Proc, Path]]:
    env = {
        "SHARDGATE_BOOTSTRAP_KEY": ADMIN,
        "SHARDGATE_AUTH__CACHE_TTL_S": str(TTL_S),
        "SHARDGATE_AUTH__LAST_USED_FLUSH_S": "0.2",
    }
    with fake_gateways(module_tmp, [env]) as (_, (gateway,)):
        yield gateway, module_tmp / "g0"


@pytest.fixture(scope="module")
def gateway(stack: tuple[Proc, Path]) -> Proc:
    return stack[0]


def call(
    gateway: Proc, method: str, path: str, key: str = ADMIN, body: Any = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.request(method, gateway.url + path, json=body, headers=headers, timeout=10)


def admin(gateway: Proc, method: str, path: str, body: Any = None, key: str = ADMIN) -> Any:
    response = call(gateway, method, "/admin/v1" + path, key, body)
    assert response.status_code == 200, response.text
    return response.json()


def new_key(gateway: Proc, tenant: str, role: str = "user", **fields: Any) -> dict[str, Any]:
    body = {"tenant": tenant, "role": role, **fields}
    created: dict[str, Any] = admin(gateway, "POST", "/keys", body)
    return created


def ensure_tenant(gateway: Proc, name: str) -> None:
    response = call(gateway, "POST", "/admin/v1/tenants", body={"name": name})
    assert response.status_code in (200, 409), response.text


def chat(gateway: Proc, key: str, model: str = CHAT_MODEL) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return call(gateway, "POST", "/v1/chat/completions", key, body)


def shardgate(data: Path, *args: str) -> Any:
    """Run the CLI against the gateway's database, --json; the parsed output."""
    result = subprocess.run(
        [sys.executable, "-m", "shardgate", *args, "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for_status(gateway: Proc, key: str, status: int, limit_s: float) -> float:
    started = time.monotonic()
    while (code := chat(gateway, key).status_code) != status:
        assert time.monotonic() - started < limit_s, f"still {code} after {limit_s}s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_admin_api_creates_a_tenant_and_a_working_scoped_key(gateway: Proc) -> None:
    tenant = admin(gateway, "POST", "/tenants", {"name": "acme"})
    assert tenant["object"] == "tenant" and tenant["name"] == "acme"
    created = new_key(gateway, "acme", endpoints=["chat", "models"], models=[CHAT_MODEL])
    secret = created["key"]
    assert secret.startswith("sk-sg-") and len(secret) >= 6 + 43  # 32 random bytes
    assert created["prefix"] == secret[:10] and created["tenant"] == "acme"
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].message.content == "fake fake "
    assert [m.id for m in client.models.list()] == [CHAT_MODEL]
    record = admin(gateway, "GET", f"/keys/{created['id']}")
    assert "key" not in record and record["endpoints"] == ["chat", "models"]
    assert call(gateway, "POST", "/admin/v1/tenants", body={"name": "acme"}).status_code == 409


def test_a_new_key_gets_only_what_it_is_given(gateway: Proc) -> None:
    ensure_tenant(gateway, "acme")
    bare = new_key(gateway, "acme")["key"]
    assert bare and chat(gateway, bare).status_code == 403
    assert call(gateway, "GET", "/v1/models", bare).status_code == 403
    listed = new_key(gateway, "acme", endpoints=["models"])["key"]
    assert call(gateway, "GET", "/v1/models", listed).json()["data"] == []  # no model scopes


def test_a_model_or_endpoint_outside_the_scopes_is_403(gateway: Proc) -> None:
    ensure_tenant(gateway, "acme")
    secret = new_key(gateway, "acme", endpoints=["chat"], models=["another-model"])["key"]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    error = denied.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"], error["param"]) == (
        "permission_error",
        "model_not_permitted",
        "model",
    )
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="another-model", input="hi")


def test_metrics_need_the_metrics_scope(gateway: Proc) -> None:
    ensure_tenant(gateway, "acme")
    user = new_key(gateway, "acme", endpoints=["*"], models=["*"])["key"]
    assert httpx.get(gateway.url + "/metrics").status_code == 401
    assert call(gateway, "GET", "/metrics", user).status_code == 403  # "*" does not include it
    watcher = new_key(gateway, "acme", role="auditor", endpoints=["metrics"])["key"]
    assert call(gateway, "GET", "/metrics", watcher).status_code == 200


def test_revoked_expired_and_unknown_keys_get_the_same_401(gateway: Proc) -> None:
    ensure_tenant(gateway, "acme")
    revoked = new_key(gateway, "acme", endpoints=["chat"], models=["*"])
    assert chat(gateway, revoked["key"]).status_code == 200
    admin(gateway, "POST", f"/keys/{revoked['id']}/revoke")
    expiring = new_key(gateway, "acme", endpoints=["chat"], models=["*"], expires_in=1)
    assert chat(gateway, expiring["key"]).status_code == 200
    time.sleep(1.1)
    bodies = [chat(gateway, k) for k in (revoked["key"], expiring["key"], "sk-sg-never-issued")]
    assert [r.status_code for r in bodies] == [401, 401, 401]
    assert bodies[0].json() == bodies[1].json() == bodies[2].json()
    assert bodies[0].json()["error"]["type"] == "authentication_error"


def test_rotation_keeps_the_old_secret_for_the_grace_period(gateway: Proc) -> None:
    ensure_tenant(gateway, "acme")
    key = new_key(gateway, "acme", endpoints=["chat"], models=["*"])
    rotated = admin(gateway, "POST", f"/keys/{key['id']}/rotate", {"grace_period": 2})
    assert rotated["id"] == key["id"] and rotated["key"] != key["key"]
    assert rotated["previous_key_expires_at"] >= int(time.time()) + 1
    assert chat(gateway, key["key"]).status_code == 200
    assert chat(gateway, rotated["key"]).status_code == 200
    time.sleep(2.1)
    assert chat(gateway, key["key"]).status_code == 401
    assert chat(gateway, rotated["key"]).status_code == 200
    # Without a grace period the old secret stops at once.
    again = admin(gateway, "POST", f"/keys/{key['id']}/rotate")
    assert chat(gateway, rotated["key"]).status_code == 401
    assert chat(gateway, again["key"]).status_code == 200


def test_cli_manages_keys_while_the_gateway_runs(stack: tuple[Proc, Path]) -> None:
    gateway, data = stack
    tenant = shardgate(data, "tenants", "create", "initech")
    assert tenant["name"] == "initech"
    created = shardgate(
        data,
        "keys",
        "create",
        "--tenant",
        "initech",
        "--role",
        "user",
        "--models",
        CHAT_MODEL,
        "--endpoints",
        "chat",
        "--expires-in",
        "30d",
    )
    assert set(created) >= {"id", "key"} and created["key"].startswith("sk-sg-")
    assert created["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=60)
    assert chat(gateway, created["key"]).status_code == 200  # a new key works at once
    listed = shardgate(data, "keys", "list", "--tenant", "initech")
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert [t["name"] for t in shardgate(data, "tenants", "list")].count("initech") == 1
    rotated = shardgate(data, "keys", "rotate", created["id"], "--grace", "1h")
    assert rotated["id"] == created["id"] and rotated["key"] != created["key"]
    assert rotated["previous_key_expires_at"] == pytest.approx(time.time() + 3600, abs=60)
    assert chat(gateway, rotated["key"]).status_code == 200
    assert chat(gateway, created["key"]).status_code == 200  # within its grace period
    revoked = shardgate(data, "keys", "revoke", created["id"])
    assert revoked["revoked_at"] is not None
    for secret in (created["key"], rotated["key"]):
        delay = wait_for_status(gateway, secret, 401, TTL_S + 1.0)
        assert delay <= TTL_S + 1.0


def test_last_used_is_recorded(gateway: Proc) -> None:
    ensure_tenant(gateway, "acme")
    key = new_key(gateway, "acme", endpoints=["chat"], models=["*"])
    assert key["last_used_at"] is None
    assert chat(gateway, key["key"]).status_code == 200
    deadline = time.monotonic() + 3
    while admin(gateway, "GET", f"/keys/{key['id']}")["last_used_at"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_auth_failures_are_counted_and_keys_never_logged(gateway: Proc) -> None:
    def failures() -> float:
        text = call(gateway, "GET", "/metrics").text
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith('shardgate_auth_failures_total{reason="unknown"}')
            ),
            " 0",
        )
        return float(line.rsplit(" ", 1)[1])

    before = failures()
    wrong = "sk-sg-this-key-was-never-issued-0123456789"
    for _ in range(3):
        assert chat(gateway, wrong).status_code == 401
    assert failures() == before + 3
    ensure_tenant(gateway, "acme")
    issued = new_key(gateway, "acme", endpoints=["chat"], models=["*"])["key"]
    chat(gateway, issued)
    log = gateway.output()
    for secret in (wrong, issued, ADMIN):
        assert secret not in log and secret[10:] not in log


def test_openapi_document_lists_the_admin_api(gateway: Proc) -> None:
    document = httpx.get(gateway.url + "/openapi.json").json()
    paths = document["paths"]
    assert set(paths["/admin/v1/keys"]) == {"get", "post"}
    assert "post" in paths["/admin/v1/keys/{key_id}/rotate"]
    assert "post" in paths["/v1/chat/completions"]
    schemas = document["components"]["schemas"]
    assert {"KeyCreateRequest", "ApiKeyCreated", "TenantObject"} <= set(schemas)
    create = paths["/admin/v1/keys"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyCreateRequest"
    }


def test_tenant_isolation_matrix(gateway: Proc) -> None:
    """Every admin read and write, by each non-platform role of tenant A, on A and on B."""
    for name in ("tenant-a", "tenant-b"):
        ensure_tenant(gateway, name)
    scopes = {"endpoints": ["chat", "models"], "models": [CHAT_MODEL]}
    actors = {
        "tenant-admin": new_key(gateway, "tenant-a", "tenant-admin", **scopes)["key"],
        "auditor": new_key(gateway, "tenant-a", "auditor", endpoints=["models"])["key"],
        "user": new_key(gateway, "tenant-a", "user", **scopes)["key"],
    }
    own = {t: new_key(gateway, t, "user", **scopes)["id"] for t in ("tenant-a", "tenant-b")}
    reads = {"tenant-admin": 200, "auditor": 200, "user": 403}
    writes = {"tenant-admin": 200, "auditor": 403, "user": 403}
    hidden = {"tenant-admin": 404, "auditor": 404, "user": 403}  # B: as if it did not exist
    hidden_write = {"tenant-admin": 404, "auditor": 403, "user": 403}
    key_body = {"role": "user", **scopes}
    cases: list[tuple[str, str, Any, dict[str, int]]] = [
        ("GET", "/tenants/tenant-a", None, reads),
        ("GET", "/tenants/tenant-b", None, hidden),
        ("GET", "/keys?tenant=tenant-a", None, reads),
        ("GET", "/keys?tenant=tenant-b", None, hidden),
        ("GET", f"/keys/{own['tenant-a']}", None, reads),
        ("GET", f"/keys/{own['tenant-b']}", None, hidden),
        ("POST", "/keys", {"tenant": "tenant-a", **key_body}, writes),
        ("POST", "/keys", {"tenant": "tenant-b", **key_body}, hidden_write),
        ("POST", f"/keys/{own['tenant-b']}/rotate", {}, hidden_write),
        ("POST", f"/keys/{own['tenant-b']}/revoke", None, hidden_write),
        ("POST", "/tenants", {"name": "tenant-c"}, dict.fromkeys(reads, 403)),
        ("GET", "/roles", None, reads),
    ]
    wrong = []
    for role, key in actors.items():
        for method, path, body, expected in cases:
            status = call(gateway, method, "/admin/v1" + path, key, body).status_code
            if status != expected[role]:
                wrong.append(f"{role} {method} {path}: {status}, expected {expected[role]}")
    assert wrong == []

    # What A's tenant-admin and auditor can list is A's alone.
    for role in ("tenant-admin", "auditor"):
        tenants = admin(gateway, "GET", "/tenants", key=actors[role])["data"]
        assert [t["name"] for t in tenants] == ["tenant-a"]
        keys = admin(gateway, "GET", "/keys", key=actors[role])["data"]
        assert keys and {k["tenant"] for k in keys} == {"tenant-a"}
    # B's key was not touched by any of the refused writes.
    b_key = admin(gateway, "GET", f"/keys/{own['tenant-b']}")
    assert b_key["revoked_at"] is None and b_key["prefix"] != ""

    # A tenant-admin cannot escalate: no admin keys, no scopes beyond its own.
    escalations = [
        {"tenant": "tenant-a", "role": "admin"},
        {"tenant": "tenant-a", "role": "user", "models": ["*"]},
        {"tenant": "tenant-a", "role": "user", "endpoints": ["embeddings"]},
        {"tenant": "tenant-a", "role": "user", "endpoints": ["metrics"]},
    ]
    for body in escalations:
        response = call(gateway, "POST", "/admin/v1/keys", actors["tenant-admin"], body)
        assert response.status_code == 403, (body, response.text)
    # And it can revoke its own tenant's keys.
    admin(gateway, "POST", f"/keys/{own['tenant-a']}/revoke", key=actors["tenant-admin"])


def test_bad_admin_input_gets_clear_400s(gateway: Proc) -> None:
    bad = [
        ("/tenants", {"name": "Not A Valid Name!"}),
        ("/tenants", {"name": 5}),
        ("/tenants", {}),
        ("/keys", {"tenant": "acme", "role": "root"}),
        ("/keys", {"tenant": "acme", "endpoints": ["teleport"]}),
        ("/keys", {"tenant": "acme", "expires_in": "soon"}),
        ("/keys", {"tenant": "acme", "expires_in": -5}),
        ("/keys", {"tenant": "acme", "role": "auditor", "endpoints": ["chat"]}),
        ("/keys", {"tenant": "acme", "unexpected": True}),
    ]
    ensure_tenant(gateway, "acme")
    for path, body in bad:
        response = call(gateway, "POST", "/admin/v1" + path, body=body)
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    garbage = httpx.post(
        gateway.url + "/admin/v1/keys",
        content=b"{not json",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert garbage.status_code == 400
    assert call(gateway, "POST", "/admin/v1/keys/key_nope/revoke").status_code == 404
    assert call(gateway, "DELETE", "/admin/v1/tenants").status_code == 405
